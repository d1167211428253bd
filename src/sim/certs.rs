//! The simulator's certificates: self-signed Ed25519 ones generated with rcgen, their
//! keys derived from the seed so the same seed gives the same fingerprints on every
//! start (a pinned fingerprint survives a restart of the simulator). In the per-node
//! layout every node has its own certificate, naming it and its address, and a second
//! one that the `wrong-cert` fault presents instead; each with its own TLS server
//! configuration, so no session cache or ticket is shared between two nodes. The keys
//! are predictable by design: this is a loopback test fixture, not a server to trust.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::fleet::hash;
use super::server::SimError;
use crate::remote::tls::{provider, Fingerprint};

/// A certificate and an acceptor presenting it.
#[derive(Clone)]
pub(crate) struct Certified {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) fingerprint: Fingerprint,
}

impl fmt::Debug for Certified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certified")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The two certificates of one node: the genuine one, and the one the `wrong-cert`
/// fault presents instead.
#[derive(Clone, Debug)]
pub(crate) struct NodeCerts {
    pub(crate) genuine: Certified,
    pub(crate) wrong: Certified,
}

impl NodeCerts {
    /// The certificates of node `node` of the remote at `index`, named `names` (its
    /// host name and address).
    pub(crate) fn generate(
        seed: u64,
        index: usize,
        node: usize,
        names: &[String],
    ) -> Result<NodeCerts, SimError> {
        let key = |wrong: u64| hash(&[seed, index as u64, node as u64, wrong, 0x40DE]);
        Ok(NodeCerts {
            genuine: self_signed(key(0), names)?,
            wrong: self_signed(key(1), names)?,
        })
    }

    /// The one to present when `wrong_cert` is in force.
    pub(crate) fn presented(&self, wrong_cert: bool) -> &Certified {
        if wrong_cert {
            &self.wrong
        } else {
            &self.genuine
        }
    }
}

/// A self-signed Ed25519 certificate for `names` whose key derives from `key`. Ed25519
/// signatures and rcgen's defaults (serial from the key, fixed validity) are
/// deterministic, so the same key and names give the same fingerprint.
pub(crate) fn self_signed(key: u64, names: &[String]) -> Result<Certified, SimError> {
    let tls = |e: &dyn fmt::Display| SimError::Tls(e.to_string());
    // PKCS#8 v1 for Ed25519: the fixed header, then the 32-byte private key.
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    for word in 0..4 {
        pkcs8.extend_from_slice(&hash(&[key, word, 0xCE27]).to_le_bytes());
    }
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(|e| tls(&e))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| tls(&e))?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    let cert = params.self_signed(&key_pair).map_err(|e| tls(&e))?;
    let der: CertificateDer<'static> = cert.der().clone();
    let fingerprint = Fingerprint::of_der(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certified {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_own_certificates_the_same_on_every_start() {
        let names = |n: &str| vec![n.to_string(), "127.1.0.1".to_string()];
        let a = NodeCerts::generate(1, 0, 0, &names("pve-1-n1")).unwrap();
        let again = NodeCerts::generate(1, 0, 0, &names("pve-1-n1")).unwrap();
        let b = NodeCerts::generate(1, 0, 1, &names("pve-1-n2")).unwrap();
        let other_seed = NodeCerts::generate(2, 0, 0, &names("pve-1-n1")).unwrap();
        assert_eq!(a.genuine.fingerprint, again.genuine.fingerprint);
        assert_ne!(a.genuine.fingerprint, a.wrong.fingerprint);
        assert_ne!(a.genuine.fingerprint, b.genuine.fingerprint);
        assert_ne!(a.genuine.fingerprint, other_seed.genuine.fingerprint);
        assert_eq!(a.presented(true).fingerprint, a.wrong.fingerprint);
    }
}

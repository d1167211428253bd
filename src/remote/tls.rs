//! TLS trust for remotes: a certificate is accepted when it validates against the
//! system's trust store, otherwise only when the SHA-256 fingerprint of the leaf equals
//! the fingerprint pinned for that node.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// The SHA-256 fingerprint of a certificate (DER), written as `AA:BB:…` hex pairs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

/// Why a text is not a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid certificate fingerprint {text:?}: expected 32 hex pairs separated by ':' (AA:BB:…)"
)]
pub struct FingerprintError {
    /// The rejected text.
    pub text: String,
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || FingerprintError {
            text: text.to_string(),
        };
        let mut bytes = [0u8; 32];
        let mut parts = text.trim().split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(fail)?;
            if part.len() != 2 {
                return Err(fail());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| fail())?;
        }
        if parts.next().is_some() {
            return Err(fail());
        }
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The crypto provider fleetpoll uses everywhere (ring), independent of any
/// process-wide default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots of the system trust store; unreadable certificates are skipped.
pub fn system_roots() -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A single bad root in the system store must not disable the others.
        let _ = roots.add(cert);
    }
    Arc::new(roots)
}

/// Trusts what the roots trust, else exactly the pinned certificate.
#[derive(Debug)]
struct PinningVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain_error = match &self.webpki {
            Some(webpki) => match webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => return Ok(verified),
                Err(err) => err,
            },
            None => rustls::Error::General("no trusted roots".into()),
        };
        let presented = Fingerprint::of_der(end_entity);
        match self.pinned {
            Some(expected) if expected == presented => Ok(ServerCertVerified::assertion()),
            Some(expected) => Err(rustls::Error::General(format!(
                "certificate fingerprint mismatch: expected {expected}, presented {presented}"
            ))),
            None => Err(rustls::Error::General(format!(
                "certificate not trusted ({chain_error}) and no fingerprint pinned; presented {presented}"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS sessions kept for resumption (a reconnect within a cycle skips the full
/// handshake). Share one among all remotes: a cache per remote costs ≈ 14 KB each.
#[derive(Clone)]
pub struct TlsSessions(Arc<dyn rustls::client::ClientSessionStore>);

impl TlsSessions {
    /// A cache of at most `sessions` sessions over all servers.
    pub fn new(sessions: usize) -> Self {
        Self(Arc::new(rustls::client::ClientSessionMemoryCache::new(
            sessions,
        )))
    }
}

impl Default for TlsSessions {
    fn default() -> Self {
        Self::new(256)
    }
}

impl std::fmt::Debug for TlsSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSessions")
    }
}

/// A client TLS configuration for one node: `roots` first, then the pinned fingerprint;
/// sessions resumed from `sessions`.
pub fn client_config(
    roots: Arc<RootCertStore>,
    pinned: Option<Fingerprint>,
    sessions: &TlsSessions,
) -> Result<ClientConfig, rustls::Error> {
    let provider = provider();
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?,
        )
    };
    let verifier = PinningVerifier {
        webpki,
        pinned,
        provider: provider.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::store(sessions.0.clone());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_text_round_trips() {
        let fp = Fingerprint::of_der(b"certificate");
        let text = fp.to_string();
        assert_eq!(text.len(), 32 * 3 - 1);
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            text.to_lowercase().parse::<Fingerprint>().unwrap(),
            fp,
            "lower-case hex is accepted"
        );
    }

    #[test]
    fn malformed_fingerprints_are_rejected() {
        let good = Fingerprint::of_der(b"x").to_string();
        for bad in [
            "",
            "AA:BB",
            &good[3..],
            &format!("{good}:00"),
            &good.replace(':', ""),
            &format!("G{}", &good[1..]),
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad:?}");
        }
    }
}

//! TLS trust for remotes: a certificate is accepted when it validates against the
//! system's trust store, otherwise only when the SHA-256 fingerprint of the leaf equals
//! the fingerprint pinned for that node.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};

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

/// TLS sessions kept for resumption (a reconnect skips the full handshake), one
/// shared bounded cache for every remote, kept apart per node: each node's client looks
/// its sessions up under its own key (remote, address, pin), never under the server name
/// it connects to. Two remotes answering to the same name — or one address reached with
/// two different pins — therefore never resume each other's sessions: a resumed session
/// skips the certificate check, so sharing it would bypass the pin.
///
/// rustls resumes a session only under the verifier that made it, so the node's whole
/// client configuration is kept here too while a client uses it: a client built again
/// for the same node (a reload) gets the same configuration and resumes.
#[derive(Clone)]
pub struct TlsSessions {
    cache: Arc<rustls::client::ClientSessionMemoryCache>,
    configs: Arc<Mutex<HashMap<String, NodeConfig>>>,
}

/// A node's shared configuration and the roots it was built with.
struct NodeConfig {
    roots: Weak<RootCertStore>,
    config: Weak<ClientConfig>,
}

impl TlsSessions {
    /// A cache of the sessions of at most `servers` nodes (the oldest node's are
    /// forgotten first).
    pub fn new(servers: usize) -> Self {
        // rustls sizes its cache in tickets, eight per server.
        Self {
            cache: Arc::new(rustls::client::ClientSessionMemoryCache::new(
                servers.saturating_mul(TICKETS_PER_SERVER),
            )),
            configs: Arc::default(),
        }
    }

    /// The session store of the node whose connection identity is `key`.
    fn scoped(&self, key: &str) -> Arc<dyn rustls::client::ClientSessionStore> {
        let digest = Sha256::digest(key.as_bytes());
        let label: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let name = ServerName::try_from(format!("s{label}.sessions.invalid"))
            .expect("a hex label under .invalid is a valid DNS name");
        Arc::new(ScopedSessions {
            name,
            shared: self.cache.clone(),
        })
    }

    /// The client configuration of the node whose connection identity `scope` names
    /// (it must include the pin): the one a live client of the node already uses when
    /// it was built from the same `roots`, else a new one offering `alpn`.
    pub fn node_config(
        &self,
        scope: &str,
        roots: &Arc<RootCertStore>,
        pinned: Option<Fingerprint>,
        alpn: &[&[u8]],
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = configs.get(scope) {
            let same_roots = known
                .roots
                .upgrade()
                .is_some_and(|r| Arc::ptr_eq(&r, roots));
            if let (true, Some(config)) = (same_roots, known.config.upgrade()) {
                return Ok(config);
            }
        }
        let mut config = client_config(roots.clone(), pinned, self, scope)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        // Forget the nodes no client uses any more before the map grows.
        if configs.len() >= 64 && configs.len().is_power_of_two() {
            configs.retain(|_, n| n.config.strong_count() > 0);
        }
        configs.insert(
            scope.to_string(),
            NodeConfig {
                roots: Arc::downgrade(roots),
                config: Arc::downgrade(&config),
            },
        );
        Ok(config)
    }
}

/// The TLS 1.3 tickets rustls' memory cache keeps per server.
const TICKETS_PER_SERVER: usize = 8;

/// Nodes whose sessions the default cache keeps: a fleet of 1,000 three-node clusters
/// with room to spare.
pub const DEFAULT_SESSION_SERVERS: usize = 4096;

impl Default for TlsSessions {
    fn default() -> Self {
        Self::new(DEFAULT_SESSION_SERVERS)
    }
}

impl std::fmt::Debug for TlsSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSessions")
    }
}

/// One node's view of the shared session cache: whatever server name rustls asks
/// about, the node's own key is looked up.
#[derive(Debug)]
struct ScopedSessions {
    name: ServerName<'static>,
    shared: Arc<rustls::client::ClientSessionMemoryCache>,
}

impl rustls::client::ClientSessionStore for ScopedSessions {
    fn set_kx_hint(&self, _: ServerName<'static>, group: rustls::NamedGroup) {
        self.shared.set_kx_hint(self.name.clone(), group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.shared.kx_hint(&self.name)
    }

    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.shared.set_tls12_session(self.name.clone(), value);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.shared.tls12_session(&self.name)
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.shared.remove_tls12_session(&self.name);
    }

    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.shared.insert_tls13_ticket(self.name.clone(), value);
    }

    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.shared.take_tls13_ticket(&self.name)
    }
}

/// A client TLS configuration for one node: `roots` first, then the pinned fingerprint;
/// sessions resumed from `sessions` under the node's connection identity `scope`.
pub fn client_config(
    roots: Arc<RootCertStore>,
    pinned: Option<Fingerprint>,
    sessions: &TlsSessions,
    scope: &str,
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
    config.resumption = rustls::client::Resumption::store(sessions.scoped(scope));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS server on loopback that answers every connection with "ok"; returns its
    /// port and certificate fingerprint.
    async fn tls_server() -> (u16, Fingerprint) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = cert.cert.der().clone();
        let fingerprint = Fingerprint::of_der(&der);
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        (port, fingerprint)
    }

    /// Connects with `config` and says how the handshake went.
    async fn handshake(port: u16, config: &Arc<ClientConfig>) -> rustls::HandshakeKind {
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let kind = tls.get_ref().1.handshake_kind().unwrap();
        // Reading to the end takes in the session tickets the server sent.
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply).await;
        assert_eq!(reply, b"ok");
        kind
    }

    #[tokio::test]
    async fn sessions_resume_for_the_same_node_only_even_under_one_server_name() {
        use rustls::HandshakeKind::{Full, Resumed};
        let (port, pin) = tls_server().await;
        let roots = Arc::new(RootCertStore::empty());
        let sessions = TlsSessions::new(16);
        let config = |scope: &str| sessions.node_config(scope, &roots, Some(pin), &[]).unwrap();
        let a = config("remote-a");
        assert_eq!(handshake(port, &a).await, Full);
        assert_eq!(handshake(port, &a).await, Resumed);
        // A client built again for the node while the old one lives (a reload) gets the
        // same configuration, and resumes.
        let a_again = config("remote-a");
        assert!(Arc::ptr_eq(&a, &a_again));
        assert_eq!(handshake(port, &a_again).await, Resumed);
        // Another remote reached under the same name and address does not resume a's
        // session, nor use up a's tickets (rustls takes a ticket before it checks it).
        let b = config("remote-b");
        assert_eq!(handshake(port, &b).await, Full);
        for _ in 0..3 {
            assert_eq!(handshake(port, &a).await, Resumed);
            assert_eq!(handshake(port, &b).await, Resumed);
        }
        // Other roots make another configuration.
        let other_roots = Arc::new(RootCertStore::empty());
        let a_other = sessions
            .node_config("remote-a", &other_roots, Some(pin), &[])
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &a_other));
        // A cache with room for one node forgets the other's sessions.
        let small = TlsSessions::new(1);
        let a = small
            .node_config("remote-a", &roots, Some(pin), &[])
            .unwrap();
        let b = small
            .node_config("remote-b", &roots, Some(pin), &[])
            .unwrap();
        assert_eq!(handshake(port, &a).await, Full);
        assert_eq!(handshake(port, &b).await, Full);
        assert_eq!(handshake(port, &a).await, Full);
        assert_eq!(handshake(port, &a).await, Resumed);
    }

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

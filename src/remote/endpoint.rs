//! How to reach one remote: its node addresses with pinned fingerprints, its API token,
//! and the client's timeouts and limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::{
    Clock, ErrorClass, RemoteId, RemoteKind, RemoteSource, SourceError, TokioClock,
};
use rustls::RootCertStore;

use super::pbs::PbsClient;
use super::pool::IdleBudget;
use super::pve::PveClient;
use super::tls::{Fingerprint, TlsSessions};

/// An API token: its id (`user@realm!tokenid`) and secret. The secret never shows in
/// `Debug` output, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    id: String,
    secret: String,
}

impl ApiToken {
    /// A token from its id (`user@realm!tokenid`) and its secret.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
        }
    }

    /// The token id (not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The PVE `Authorization` header value: `PVEAPIToken=user@realm!tokenid=secret`.
    pub(crate) fn pve_header(&self) -> String {
        format!("PVEAPIToken={}={}", self.id, self.secret)
    }

    /// The PBS `Authorization` header value: `PBSAPIToken=user@realm!tokenid:secret`.
    pub(crate) fn pbs_header(&self) -> String {
        format!("PBSAPIToken={}:{}", self.id, self.secret)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One node of a remote: where it listens and which certificate it presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (PVE 8006, PBS 8007).
    pub port: u16,
    /// The SHA-256 fingerprint to accept when the certificate does not validate
    /// against the system's trust store.
    pub fingerprint: Option<Fingerprint>,
}

impl NodeAddress {
    /// A node at `host:port` with an optional pinned fingerprint.
    pub fn new(host: impl Into<String>, port: u16, fingerprint: Option<Fingerprint>) -> Self {
        Self {
            host: host.into(),
            port,
            fingerprint,
        }
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Timeouts and limits of a client.
#[derive(Clone)]
pub struct ClientOptions {
    /// How long to wait for a TCP connection to a node before trying the next one.
    pub connect_timeout: Duration,
    /// How long one request may take, from connecting to the last byte of the body.
    pub request_timeout: Duration,
    /// Replies longer than this are rejected while they stream in.
    pub max_body_bytes: u64,
    /// Put before `/api2/json` in every path (empty for real remotes; the simulator
    /// serves each remote under `/{remote-id}`).
    pub path_prefix: String,
    /// The trust store tried before the pinned fingerprint; `None` loads the system's
    /// store when the client is built. With many remotes, load it once with
    /// [`system_roots`](super::tls::system_roots) and share the `Arc`.
    pub roots: Option<Arc<RootCertStore>>,
    /// The wall clock; decides which metric points lie too far in the future.
    pub clock: Arc<dyn Clock>,
    /// Bounds the idle connections kept for reuse; share one among all remotes.
    pub idle: IdleBudget,
    /// TLS sessions for resumption; share one among all remotes.
    pub tls_sessions: TlsSessions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_body_bytes: 64 << 20,
            path_prefix: String::new(),
            roots: None,
            clock: Arc::new(TokioClock::system()),
            idle: IdleBudget::default(),
            tls_sessions: TlsSessions::default(),
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("path_prefix", &self.path_prefix)
            .field("roots", &self.roots.as_ref().map(|r| r.len()))
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// Everything a client needs to talk to one remote.
#[derive(Clone, Debug)]
pub struct RemoteEndpoint {
    /// The remote's configured name; used in every error message.
    pub remote: RemoteId,
    /// Its nodes, in the order they are tried.
    pub nodes: Vec<NodeAddress>,
    /// Its API token.
    pub token: ApiToken,
    /// Timeouts and limits.
    pub options: ClientOptions,
}

impl RemoteEndpoint {
    /// The client for a remote of `kind` at this endpoint, as the engine's seam.
    /// Prometheus exposition targets are reached by URL, not by nodes and an API token:
    /// build a [`crate::prom::PromClient`] for them.
    pub fn into_source(
        self,
        kind: RemoteKind,
    ) -> Result<std::sync::Arc<dyn RemoteSource>, SourceError> {
        match kind {
            RemoteKind::Pve => Ok(std::sync::Arc::new(PveClient::new(self)?)),
            RemoteKind::Pbs => Ok(std::sync::Arc::new(PbsClient::new(self)?)),
            RemoteKind::Prometheus | RemoteKind::Local => Err(SourceError::new(
                ErrorClass::Other,
                format!(
                    "remote {}: a {kind} source is not reached by nodes and an API token",
                    self.remote
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_output_hides_the_secret() {
        let token = ApiToken::new("root@pam!mon", "d1e2a3d4-beef");
        let shown = format!("{token:?}");
        assert!(shown.contains("root@pam!mon"));
        assert!(!shown.contains("beef"), "{shown}");
        let endpoint = RemoteEndpoint {
            remote: RemoteId::new("lab"),
            nodes: vec![NodeAddress::new("10.0.0.1", 8006, None)],
            token,
            options: ClientOptions::default(),
        };
        assert!(!format!("{endpoint:?}").contains("beef"));
    }

    #[test]
    fn token_headers_follow_each_products_format() {
        let token = ApiToken::new("u@pve!t", "s");
        assert_eq!(token.pve_header(), "PVEAPIToken=u@pve!t=s");
        assert_eq!(token.pbs_header(), "PBSAPIToken=u@pve!t:s");
    }

    #[test]
    fn each_kind_gets_its_client() {
        let endpoint = RemoteEndpoint {
            remote: RemoteId::new("lab"),
            nodes: vec![NodeAddress::new("127.0.0.1", 8006, None)],
            token: ApiToken::new("u@pve!t", "s"),
            options: ClientOptions {
                roots: Some(std::sync::Arc::new(RootCertStore::empty())),
                ..ClientOptions::default()
            },
        };
        let pve = endpoint.clone().into_source(RemoteKind::Pve).unwrap();
        assert!(format!("{pve:?}").starts_with("PveClient"));
        let pbs = endpoint.clone().into_source(RemoteKind::Pbs).unwrap();
        assert!(format!("{pbs:?}").starts_with("PbsClient"));
        assert_eq!((pbs.metric_connections(), pbs.task_connections()), (1, 1));
        let err = endpoint.into_source(RemoteKind::Prometheus).unwrap_err();
        assert_eq!(err.class, ErrorClass::Other);
    }

    #[test]
    fn ipv6_node_addresses_are_bracketed() {
        assert_eq!(
            NodeAddress::new("::1", 8006, None).to_string(),
            "[::1]:8006"
        );
        assert_eq!(
            NodeAddress::new("pve1", 8006, None).to_string(),
            "pve1:8006"
        );
    }
}

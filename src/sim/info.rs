//! How a client reaches the simulated remotes: [`SimRemoteInfo`] per remote, with a
//! [`SimNodeInfo`] per node — its address and the fingerprint to pin.

use std::fmt;
use std::net::SocketAddr;

use fleetpoll_actors::RemoteKind;

use crate::remote::tls::Fingerprint;
use crate::remote::NodeAddress;

/// How a client reaches one simulated remote.
#[derive(Clone)]
pub struct SimRemoteInfo {
    /// The remote's id.
    pub id: String,
    /// PVE cluster, PBS or exposition target.
    pub kind: RemoteKind,
    /// Its nodes in order (a PBS and an exposition target have one): where each
    /// answers and which certificate it presents.
    pub nodes: Vec<SimNodeInfo>,
    /// The path before `/api2/json` or `/metrics`: empty in the per-node layout, as on
    /// a real remote; `/{id}` behind the shared listener.
    pub path_prefix: String,
    /// The API token id (`user@realm!tokenid`); empty for exposition targets.
    pub token_id: String,
    /// The API token secret (an exposition target's bearer token).
    pub secret: String,
}

/// One node of a simulated remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimNodeInfo {
    /// The node's name (`pve-1-n1`; a PBS and an exposition target carry the remote's id).
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// The SHA-256 fingerprint of its certificate, the one to pin (unused for the
    /// plain-http exposition targets).
    pub fingerprint: Fingerprint,
    /// The fingerprint of the certificate the `wrong-cert` fault presents instead.
    pub wrong_fingerprint: Fingerprint,
}

impl SimRemoteInfo {
    /// The scrape URL of an exposition target (`None` for PVE and PBS remotes).
    pub fn url(&self) -> Option<String> {
        let node = self.nodes.first()?;
        (self.kind == RemoteKind::Prometheus)
            .then(|| format!("http://{}{}/metrics", node.address, self.path_prefix))
    }

    /// Its nodes as a client's node list, each pinned to its fingerprint.
    pub fn node_addresses(&self) -> Vec<NodeAddress> {
        self.nodes
            .iter()
            .map(|n| {
                NodeAddress::new(
                    n.address.ip().to_string(),
                    n.address.port(),
                    Some(n.fingerprint),
                )
            })
            .collect()
    }

    /// The names of its nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }
}

impl fmt::Debug for SimRemoteInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRemoteInfo")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("nodes", &self.nodes)
            .field("path_prefix", &self.path_prefix)
            .field("token_id", &self.token_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

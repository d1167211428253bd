//! Shared helpers of the remote-client integration tests: a simulator on 127.0.0.1:0
//! and clients pointed at its remotes with short timeouts.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use fleetpoll::remote::{
    ApiToken, ClientOptions, Fingerprint, NodeAddress, PbsClient, PveClient, RemoteEndpoint,
};
use fleetpoll::sim::{SimConfig, SimRemoteInfo, Simulator};
use fleetpoll_actors::RemoteId;
use rustls::RootCertStore;

/// Starts a simulator, each node on its own loopback address and a free port.
pub async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

/// Options for tests: a timeout generous enough for a loaded CI machine (tests of
/// timeouts shorten it), no system roots (only the pin counts).
pub fn test_options(info: &SimRemoteInfo) -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(10),
        max_body_bytes: 4 << 20,
        path_prefix: info.path_prefix.clone(),
        roots: Some(Arc::new(RootCertStore::empty())),
        ..ClientOptions::default()
    }
}

/// An endpoint with every simulated node's address, each pinned to `fingerprint`.
pub fn endpoint_with(
    info: &SimRemoteInfo,
    fingerprint: Fingerprint,
    token: ApiToken,
) -> RemoteEndpoint {
    let mut endpoint = endpoint_with_token(info, token);
    for node in &mut endpoint.nodes {
        node.fingerprint = Some(fingerprint);
    }
    endpoint
}

/// An endpoint with every simulated node's address and its own fingerprint.
pub fn endpoint_with_token(info: &SimRemoteInfo, token: ApiToken) -> RemoteEndpoint {
    RemoteEndpoint {
        remote: RemoteId::new(&info.id),
        nodes: info.node_addresses(),
        token,
        options: test_options(info),
    }
}

/// The endpoint a correctly configured client would use.
pub fn endpoint(info: &SimRemoteInfo) -> RemoteEndpoint {
    endpoint_with_token(info, ApiToken::new(&info.token_id, &info.secret))
}

/// A node address nobody listens on, pinned to `fingerprint`.
pub fn dead_node(fingerprint: Fingerprint) -> NodeAddress {
    NodeAddress::new("127.0.0.1", closed_port(), Some(fingerprint))
}

/// A PVE client of the simulated remote `id`.
pub fn pve(sim: &Simulator, id: &str) -> PveClient {
    PveClient::new(endpoint(&sim.remote(id).expect("remote exists"))).unwrap()
}

/// A PBS client of the simulated remote `id`.
pub fn pbs(sim: &Simulator, id: &str) -> PbsClient {
    PbsClient::new(endpoint(&sim.remote(id).expect("remote exists"))).unwrap()
}

/// A loopback port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

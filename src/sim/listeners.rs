//! The simulator's listeners and connections. In the per-node layout every node of
//! every remote has its own listener: it refuses connections (the listening socket is
//! closed) while the node is offline or an outage is on, dropping its open
//! connections, and listens again when that ends. The shared layout has one listener
//! for every remote. Either way a connection passes through the [`link`](super::link)
//! when there is a round-trip time, then TLS (unless it serves exposition targets),
//! then HTTP/1.1.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::RemoteKind;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::certs::NodeCerts;
use super::fleet::hash;
use super::link;
use super::routes::{self, Body, Reply};
use super::server::SimState;

/// How long a TLS handshake may take beyond its round trips.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The in-memory pipe between the link and the server, per direction.
const PIPE_BYTES: usize = 64 * 1024;
/// How often an offline node's listener tries to bind again when its address is taken.
const REBIND_PAUSE: Duration = Duration::from_millis(100);

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Every remote, told apart by the path prefix `/{remote-id}`.
    Shared,
    /// Node `node` of the remote at `remote`, under `/api2/json` (or `/metrics`).
    Node {
        /// The remote's index in the fleet.
        remote: usize,
        /// The node's index in the remote.
        node: usize,
    },
}

/// How connections on one listener are secured.
#[derive(Clone)]
pub(crate) enum Security {
    /// Plain http (exposition targets).
    Plain,
    /// TLS with the node's genuine certificate, or the wrong one while the remote has
    /// the `wrong-cert` fault.
    Node(Arc<NodeCerts>),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::Plain => f.write_str("Plain"),
            Security::Node(certs) => f.debug_tuple("Node").field(certs).finish(),
        }
    }
}

/// One node's listener in the per-node layout.
#[derive(Debug)]
pub(crate) struct NodeListener {
    /// Its address (the port chosen at the first bind is kept when it binds again).
    pub(crate) addr: SocketAddr,
    /// The remote's index in the fleet.
    pub(crate) remote: usize,
    /// The node's index in the remote.
    pub(crate) node: usize,
    /// Its certificates (`Plain` for an exposition target).
    pub(crate) security: Security,
    /// Whether it should listen; set by the [clockwork](super::server).
    pub(crate) open: watch::Receiver<bool>,
}

/// Why a listening phase ended.
enum Ended {
    /// The simulator is shutting down.
    Stop,
    /// The node went offline or an outage began.
    Closed,
}

/// Runs one node's listener until the simulator stops: listening while `open` says so,
/// refusing connections (no listening socket) otherwise.
pub(crate) async fn run_node(
    first: TcpListener,
    mut me: NodeListener,
    state: Arc<SimState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut bound = Some(first);
    loop {
        let open = *me.open.borrow_and_update();
        if !open {
            // Refuse: no listening socket, so the kernel answers with a reset.
            bound = None;
            tokio::select! {
                changed = me.open.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
            }
            continue;
        }
        let listener = match bound.take() {
            Some(listener) => listener,
            None => match TcpListener::bind(me.addr).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(addr = %me.addr, error = %err, "cannot listen again; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(REBIND_PAUSE) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            },
        };
        match accept_while_open(&listener, &mut me, &state, &mut stop).await {
            Ended::Stop => return,
            Ended::Closed => {}
        }
    }
}

/// Accepts connections until the node's listener is to close or the simulator stops;
/// then drops every connection it accepted.
async fn accept_while_open(
    listener: &TcpListener,
    me: &mut NodeListener,
    state: &Arc<SimState>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else {
                    // Out of descriptors or similar: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let tls = match &me.security {
                    Security::Plain => None,
                    Security::Node(certs) => {
                        let wrong = state.faults[me.remote].read().wrong_cert;
                        Some(certs.presented(wrong).acceptor.clone())
                    }
                };
                let served = Served::Node { remote: me.remote, node: me.node };
                connections.spawn(connection(tcp, tls, served, state.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = me.open.changed() => {
                // The clockwork is gone only when the simulator stops.
                if changed.is_err() {
                    return Ended::Stop;
                }
                if !*me.open.borrow_and_update() {
                    return Ended::Closed;
                }
            }
            _ = stop.changed() => return Ended::Stop,
        }
    }
}

/// Accepts connections for every remote (the shared layout) until told to stop; then
/// drops every connection.
pub(crate) async fn run_shared(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<SimState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                connections.spawn(connection(tcp, tls.clone(), Served::Shared, state.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Serves one accepted connection: through the link when there is a round-trip time.
async fn connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    served: Served,
    state: Arc<SimState>,
) {
    let _ = tcp.set_nodelay(true);
    let number = state.connections.fetch_add(1, Ordering::Relaxed);
    let rtt = state.rtt;
    if rtt.is_zero() {
        return session(tcp, tls, served, state).await;
    }
    let (near, far) = tokio::io::duplex(PIPE_BYTES);
    let key = hash(&[state.fleet.seed, number, 0x11AC]);
    tokio::join!(
        link::carry(tcp, far, rtt, key),
        session(near, tls, served, state)
    );
}

/// TLS (when there is an acceptor) and HTTP/1.1 over `stream`.
async fn session<S>(stream: S, tls: Option<TlsAcceptor>, served: Served, state: Arc<SimState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = state.clone();
    let service = service_fn(move |req| answer(shared.clone(), served, req));
    let Some(acceptor) = tls else {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
        return;
    };
    // A TLS 1.2 handshake takes two round trips, the TCP one a third.
    let limit = HANDSHAKE_TIMEOUT + 4 * state.rtt.max();
    let Ok(Ok(tls)) = tokio::time::timeout(limit, acceptor.accept(stream)).await else {
        return;
    };
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let counter = if resumed {
        &state.handshakes_resumed
    } else {
        &state.handshakes_full
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

/// The connection is dropped without an answer (the `reset` fault, an outage).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the simulator")
    }
}

impl std::error::Error for Dropped {}

/// Answers one request: faults first, then authentication, then the API.
async fn answer(
    state: Arc<SimState>,
    served: Served,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let (parts, body) = req.into_parts();
    // Read the (empty) request body so the connection stays reusable.
    let _ = body.collect().await;
    match routes::route(&state, served, &parts).await {
        Reply::Respond(response) => Ok(response),
        Reply::Drop => Err(Dropped),
    }
}

/// The port a listener of a remote of `kind` takes by default: the product's.
pub(crate) fn product_port(kind: RemoteKind) -> u16 {
    match kind {
        RemoteKind::Pbs => 8007,
        RemoteKind::Prometheus => 9100,
        _ => 8006,
    }
}

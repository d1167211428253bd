//! The simulator's servers: one HTTPS listener serving every remote under
//! `/{remote-id}/api2/json/…`, a second one with another certificate for remotes
//! with the `wrong-cert` fault, and a plain-http one serving the exposition targets
//! at `/{remote-id}/metrics`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::{Clock, RemoteKind, TokioClock};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::faults::{Fault, Faults};
use super::fleet::{Fleet, SimConfig};
use super::routes::{self, Body, Reply};
use crate::remote::tls::{provider, Fingerprint};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating the certificate or the TLS configuration failed.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// How a client reaches one simulated remote.
#[derive(Clone)]
pub struct SimRemoteInfo {
    /// The remote's id, also its path prefix.
    pub id: String,
    /// PVE cluster or PBS.
    pub kind: RemoteKind,
    /// The address its nodes answer on.
    pub address: SocketAddr,
    /// The path before `/api2/json` (`/pve-1`).
    pub path_prefix: String,
    /// The names of its nodes.
    pub nodes: Vec<String>,
    /// The API token id (`user@realm!tokenid`).
    pub token_id: String,
    /// The API token secret.
    pub secret: String,
    /// The certificate fingerprint the remote advertises (and a client should pin).
    pub fingerprint: Fingerprint,
}

impl SimRemoteInfo {
    /// The scrape URL of an exposition target (`None` for PVE and PBS remotes).
    pub fn url(&self) -> Option<String> {
        (self.kind == RemoteKind::Prometheus)
            .then(|| format!("http://{}{}/metrics", self.address, self.path_prefix))
    }
}

impl fmt::Debug for SimRemoteInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRemoteInfo")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("path_prefix", &self.path_prefix)
            .field("nodes", &self.nodes)
            .field("token_id", &self.token_id)
            .field("secret", &"<redacted>")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// What every connection handler shares.
pub(crate) struct SimState {
    pub(crate) fleet: Fleet,
    pub(crate) clock: Arc<dyn Clock>,
    /// Requests seen per remote; the fault dice are a hash of this count.
    pub(crate) requests: Vec<AtomicU64>,
    /// TCP connections accepted on both listeners.
    pub(crate) connections: AtomicU64,
    /// Metric export requests per remote (answered or refused), for tests that count
    /// collections.
    pub(crate) metric_exports: Vec<AtomicU64>,
    /// Wall times (Unix seconds) of each exposition target's scrapes.
    pub(crate) scrape_log: Vec<parking_lot::Mutex<Vec<f64>>>,
    /// The faults in force per remote: the configured ones until
    /// [`Simulator::set_faults`] replaces them.
    pub(crate) faults: Vec<parking_lot::RwLock<Faults>>,
}

impl SimState {
    /// The state of `fleet` before any request, reading the time from `clock`.
    pub(crate) fn new(fleet: Fleet, clock: Arc<dyn Clock>) -> SimState {
        let per_remote = || fleet.remotes.iter().map(|_| AtomicU64::new(0)).collect();
        SimState {
            requests: per_remote(),
            metric_exports: per_remote(),
            scrape_log: fleet.remotes.iter().map(|_| Default::default()).collect(),
            faults: fleet
                .remotes
                .iter()
                .map(|r| parking_lot::RwLock::new(r.faults.clone()))
                .collect(),
            fleet,
            clock,
            connections: AtomicU64::new(0),
        }
    }

    /// The faults in force for the remote at `index` now.
    pub(crate) fn faults(&self, index: usize) -> Faults {
        self.faults[index].read().clone()
    }
}

/// A running simulator. Dropping it without [`Simulator::shutdown`] also stops it.
pub struct Simulator {
    addr: SocketAddr,
    alt_addr: SocketAddr,
    prom_addr: SocketAddr,
    fingerprint: Fingerprint,
    alt_fingerprint: Fingerprint,
    state: Arc<SimState>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("alt_addr", &self.alt_addr)
            .field("fingerprint", &self.fingerprint)
            .field("remotes", &self.state.fleet.remotes.len())
            .finish()
    }
}

impl Simulator {
    /// Starts the simulated fleet on `listen` (port 0 picks a free port) with the
    /// system clock.
    pub async fn start(config: SimConfig, listen: SocketAddr) -> Result<Simulator, SimError> {
        Self::start_with_clock(config, listen, Arc::new(TokioClock::system())).await
    }

    /// Starts the simulated fleet reading the time from `clock`.
    pub async fn start_with_clock(
        config: SimConfig,
        listen: SocketAddr,
        clock: Arc<dyn Clock>,
    ) -> Result<Simulator, SimError> {
        let state = Arc::new(SimState::new(Fleet::build(&config), clock));
        let (acceptor, fingerprint) = self_signed(config.seed, 1)?;
        let (alt_acceptor, alt_fingerprint) = self_signed(config.seed, 2)?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::Bind { addr, source })
        };
        let listener = bind(listen).await?;
        let alt_listener = bind(SocketAddr::new(listen.ip(), 0)).await?;
        let prom_listener = bind(SocketAddr::new(listen.ip(), 0)).await?;
        let local = |l: &TcpListener| {
            l.local_addr().map_err(|source| SimError::Bind {
                addr: listen,
                source,
            })
        };
        let addr = local(&listener)?;
        let alt_addr = local(&alt_listener)?;
        let prom_addr = local(&prom_listener)?;
        let (stop, stopped) = watch::channel(false);
        let servers = vec![
            tokio::spawn(serve(
                listener,
                Some(acceptor),
                state.clone(),
                stopped.clone(),
            )),
            tokio::spawn(serve(
                alt_listener,
                Some(alt_acceptor),
                state.clone(),
                stopped.clone(),
            )),
            tokio::spawn(serve(prom_listener, None, state.clone(), stopped)),
        ];
        Ok(Simulator {
            addr,
            alt_addr,
            prom_addr,
            fingerprint,
            alt_fingerprint,
            state,
            stop,
            servers,
        })
    }

    /// The address of the main listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SHA-256 fingerprint of the main listener's certificate; the same for the
    /// same seed on every start.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The fingerprint of the certificate that `wrong-cert` remotes present instead.
    pub fn wrong_fingerprint(&self) -> Fingerprint {
        self.alt_fingerprint
    }

    /// The seconds since the epoch as the simulator's clock shows them (without skew).
    pub fn now(&self) -> i64 {
        self.state.clock.now_secs()
    }

    /// How to reach every simulated remote.
    pub fn remotes(&self) -> Vec<SimRemoteInfo> {
        self.state
            .fleet
            .remotes
            .iter()
            .map(|r| SimRemoteInfo {
                id: r.id.clone(),
                kind: r.kind,
                address: if r.kind == RemoteKind::Prometheus {
                    self.prom_addr
                } else if r.faults.wrong_cert {
                    self.alt_addr
                } else {
                    self.addr
                },
                path_prefix: format!("/{}", r.id),
                nodes: r.nodes.clone(),
                token_id: r.token_id.clone(),
                secret: r.secret.clone(),
                fingerprint: self.fingerprint,
            })
            .collect()
    }

    /// How many TCP connections the simulator accepted so far (shows pooling at work).
    pub fn connections_accepted(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// How many requests the remote `id` was sent so far (0 for an unknown id).
    pub fn requests(&self, id: &str) -> u64 {
        self.state
            .fleet
            .remotes
            .iter()
            .position(|r| r.id == id)
            .map_or(0, |i| self.state.requests[i].load(Ordering::Relaxed))
    }

    /// How many metric export requests (`/cluster/metrics/export`, `/status/metrics`)
    /// the remote `id` was sent so far, refused ones included: one or more per
    /// collection (0 for an unknown id).
    pub fn metric_export_requests(&self, id: &str) -> u64 {
        self.state
            .fleet
            .remotes
            .iter()
            .position(|r| r.id == id)
            .map_or(0, |i| self.state.metric_exports[i].load(Ordering::Relaxed))
    }

    /// When the exposition target `id` was scraped so far (Unix seconds, in order).
    pub fn scrape_times(&self, id: &str) -> Vec<f64> {
        self.state
            .fleet
            .remotes
            .iter()
            .position(|r| r.id == id)
            .map_or_else(Vec::new, |i| self.state.scrape_log[i].lock().clone())
    }

    /// Replaces the faults of remote `id` with `faults` (an empty list heals it), from
    /// its next request on; false for an unknown id. `wrong-cert` cannot change while
    /// running (it decides the listener a remote is reached on).
    pub fn set_faults(&self, id: &str, faults: &[Fault]) -> bool {
        let Some(index) = self.state.fleet.remotes.iter().position(|r| r.id == id) else {
            return false;
        };
        let mut new = Faults::from_list(faults);
        new.wrong_cert = self.state.fleet.remotes[index].faults.wrong_cert;
        *self.state.faults[index].write() = new;
        true
    }

    /// One remote by id.
    pub fn remote(&self, id: &str) -> Option<SimRemoteInfo> {
        self.remotes().into_iter().find(|r| r.id == id)
    }

    /// Stops accepting, drops every open connection and waits for the listeners to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for server in self.servers.drain(..) {
            let _ = server.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A self-signed Ed25519 certificate derived from `seed` and `salt`, and an acceptor
/// presenting it. Ed25519 signatures and rcgen's defaults (serial from the key, fixed
/// validity) are deterministic, so the same seed gives the same fingerprint on every
/// start and a pinned fingerprint survives a restart of the simulator. The key is
/// predictable by design: this is a loopback test fixture, not a server to trust.
fn self_signed(seed: u64, salt: u64) -> Result<(TlsAcceptor, Fingerprint), SimError> {
    let tls = |e: &dyn fmt::Display| SimError::Tls(e.to_string());
    // PKCS#8 v1 for Ed25519: the fixed header, then the 32-byte private key.
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    for word in 0..4 {
        pkcs8.extend_from_slice(&super::fleet::hash(&[seed, salt, word, 0xCE27]).to_le_bytes());
    }
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(|e| tls(&e))?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
        .and_then(|params| params.self_signed(&key_pair))
        .map_err(|e| tls(&e))?;
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
    Ok((TlsAcceptor::from(Arc::new(config)), fingerprint))
}

/// Accepts connections (TLS ones when there is an acceptor) until told to stop; then
/// drops every connection.
async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<SimState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else {
                    // Out of descriptors or similar: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                state.connections.fetch_add(1, Ordering::Relaxed);
                let acceptor = acceptor.clone();
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| answer(state.clone(), req));
                    let Some(acceptor) = acceptor else {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                        return;
                    };
                    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    let Ok(Ok(tls)) = handshake.await else { return };
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// The connection is dropped without an answer (the `reset` fault).
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by the reset fault")
    }
}

impl std::error::Error for Dropped {}

/// Answers one request: faults first, then authentication, then the API.
async fn answer(state: Arc<SimState>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let (parts, body) = req.into_parts();
    // Read the (empty) request body so the connection stays reusable.
    let _ = body.collect().await;
    match routes::route(&state, &parts).await {
        Reply::Respond(response) => Ok(response),
        Reply::Drop => Err(Dropped),
    }
}

/// The per-request dice of one remote: a hash of the seed, the remote and its request count.
pub(crate) fn next_roll(state: &SimState, index: usize) -> u64 {
    let n = state.requests[index].fetch_add(1, Ordering::Relaxed);
    super::fleet::hash(&[state.fleet.seed, index as u64, n, 0xD1CE])
}

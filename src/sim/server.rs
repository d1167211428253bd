//! [`Simulator`], the handle to a running fleet, and the state its connections share:
//! starting the listeners of either layout (per node, or one shared), the clockwork
//! that opens and closes the per-node listeners as nodes go offline and outages come
//! and go, and the counters the tests read.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::{Clock, RemoteKind, TokioClock};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::certs::{self_signed, Certified, NodeCerts};
use super::faults::{Fault, Faults};
use super::fleet::{hash, Fleet, Listen, SimConfig};
use super::info::{SimNodeInfo, SimRemoteInfo};
use super::link::Rtt;
use super::listeners::{product_port, run_node, run_shared, NodeListener, Security};
use crate::remote::tls::Fingerprint;

/// How often the clockwork looks at the clock while schedules can change a listener.
const TICK: Duration = Duration::from_millis(100);
/// Descriptors kept free beyond the listeners, for the connections.
const DESCRIPTOR_MARGIN: u64 = 512;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating a certificate or the TLS configuration failed.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The per-node layout has no room for the fleet.
    #[error("the per-node layout does not fit: {0}")]
    Layout(String),
    /// Too few file descriptors for the listeners.
    #[error(
        "{needed} file descriptors needed (a listener per node and room for connections), \
         but the limit is {limit}: raise it (ulimit -n) or use --shared-listener"
    )]
    Descriptors {
        /// How many the fleet needs.
        needed: u64,
        /// The soft limit after raising it to the hard one.
        limit: u64,
    },
}

/// How many TLS handshakes the simulator's remotes completed, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsHandshakes {
    /// Full handshakes (a certificate sent and verified).
    pub full: u64,
    /// Resumed sessions.
    pub resumed: u64,
}

/// What every connection handler shares.
pub(crate) struct SimState {
    pub(crate) fleet: Fleet,
    pub(crate) clock: Arc<dyn Clock>,
    /// The clock's time when the simulator started: `outage` windows count from it.
    pub(crate) started: Duration,
    /// The round-trip time of every connection.
    pub(crate) rtt: Rtt,
    /// Requests seen per remote; the fault dice are a hash of this count.
    pub(crate) requests: Vec<AtomicU64>,
    /// TCP connections accepted on every listener.
    pub(crate) connections: AtomicU64,
    /// Full and resumed TLS handshakes.
    pub(crate) handshakes_full: AtomicU64,
    pub(crate) handshakes_resumed: AtomicU64,
    /// Metric export requests per remote (answered or refused), for tests that count
    /// collections.
    pub(crate) metric_exports: Vec<AtomicU64>,
    /// Wall times (Unix seconds) of each exposition target's scrapes.
    pub(crate) scrape_log: Vec<parking_lot::Mutex<Vec<f64>>>,
    /// The faults in force per remote: the configured ones until
    /// [`Simulator::set_faults`] replaces them.
    pub(crate) faults: Vec<parking_lot::RwLock<Faults>>,
    /// An outage of every remote switched on by [`Simulator::set_outage`].
    pub(crate) outage: AtomicBool,
    /// Wakes the clockwork when faults or the outage switch change.
    poke: Notify,
}

impl SimState {
    /// The state of `fleet` before any request, reading the time from `clock`, every
    /// connection paying `rtt`.
    pub(crate) fn new(fleet: Fleet, clock: Arc<dyn Clock>, rtt: Rtt) -> SimState {
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
            started: clock.now(),
            fleet,
            clock,
            rtt,
            connections: AtomicU64::new(0),
            handshakes_full: AtomicU64::new(0),
            handshakes_resumed: AtomicU64::new(0),
            outage: AtomicBool::new(false),
            poke: Notify::new(),
        }
    }

    /// The faults in force for the remote at `index` now.
    pub(crate) fn faults(&self, index: usize) -> Faults {
        self.faults[index].read().clone()
    }

    /// Whether the network to a remote with `faults` is down now: the outage switch or
    /// an `outage` fault.
    pub(crate) fn outage_now(&self, faults: &Faults) -> bool {
        self.outage.load(Ordering::Relaxed)
            || faults.outage_at(self.clock.now().saturating_sub(self.started))
    }

    /// Whether node `node` of the remote at `index` takes connections now: it is up
    /// (as the remote's clock shows the time) and no outage is on.
    pub(crate) fn answers(&self, index: usize, node: usize) -> bool {
        let faults = self.faults[index].read();
        let remote = &self.fleet.remotes[index];
        let now = self.clock.now_secs() + faults.skew_secs;
        !self.outage_now(&faults) && self.fleet.node_up(remote, &faults, node, now)
    }

    /// Whether the clock alone can open or close a listener.
    fn time_driven(&self) -> bool {
        self.fleet.churn.node_outages.is_some()
            || self.faults.iter().any(|f| !f.read().outages.is_empty())
    }
}

/// Where the remotes listen.
enum Layout {
    /// Each node on its own address.
    PerNode(Vec<Vec<SimNodeInfo>>),
    /// All behind one listener (and the `wrong-cert` and exposition ones).
    Shared {
        addr: SocketAddr,
        alt_addr: SocketAddr,
        prom_addr: SocketAddr,
        fingerprint: Fingerprint,
        alt_fingerprint: Fingerprint,
    },
}

/// A running simulator. Dropping it without [`Simulator::shutdown`] also stops it.
pub struct Simulator {
    layout: Layout,
    state: Arc<SimState>,
    clock: Arc<super::clock::LaggingClock>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("listeners", &self.describe_listeners())
            .field("remotes", &self.state.fleet.remotes.len())
            .finish()
    }
}

/// Binds `addr`, naming it in the error.
async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })
}

impl Simulator {
    /// Starts the simulated fleet with the system clock, listening as `config.listen`
    /// says.
    pub async fn start(config: SimConfig) -> Result<Simulator, SimError> {
        Self::start_with_clock(config, Arc::new(TokioClock::system())).await
    }

    /// Starts the simulated fleet reading the time from `clock` (held
    /// `config.clock_behind` behind it until [`Simulator::catch_up_clock`]).
    pub async fn start_with_clock(
        config: SimConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Simulator, SimError> {
        let clock = Arc::new(super::clock::LaggingClock::new(clock, config.clock_behind));
        let state = Arc::new(SimState::new(
            Fleet::build(&config),
            clock.clone(),
            config.rtt,
        ));
        let (stop, stopped) = watch::channel(false);
        let (layout, servers) = match config.listen {
            Listen::Shared(listen) => start_shared(&state, listen, &stopped).await?,
            Listen::PerNode { base, port } => start_per_node(&state, base, port, &stopped).await?,
        };
        Ok(Simulator {
            layout,
            state,
            clock,
            stop,
            servers,
        })
    }

    /// The address of the one listener of the shared layout (`None` per node).
    pub fn shared_listener(&self) -> Option<SocketAddr> {
        match self.layout {
            Layout::Shared { addr, .. } => Some(addr),
            Layout::PerNode(_) => None,
        }
    }

    /// Where the simulator listens, in a line: the shared address, or how many
    /// per-node listeners from which address to which.
    pub fn describe_listeners(&self) -> String {
        match &self.layout {
            Layout::Shared { addr, .. } => format!("{addr} (one listener for every remote)"),
            Layout::PerNode(nodes) => {
                let all: Vec<SocketAddr> = nodes.iter().flatten().map(|n| n.address).collect();
                match (all.first(), all.last()) {
                    (Some(first), Some(last)) => format!(
                        "{} addresses from {first} to {last} (one listener per node)",
                        all.len()
                    ),
                    _ => "no addresses (an empty fleet)".to_string(),
                }
            }
        }
    }

    /// The seconds since the epoch as the simulator's clock shows them (without skew).
    pub fn now(&self) -> i64 {
        self.state.clock.now_secs()
    }

    /// How to reach every simulated remote.
    pub fn remotes(&self) -> Vec<SimRemoteInfo> {
        (0..self.state.fleet.remotes.len())
            .map(|i| self.info(i))
            .collect()
    }

    /// One remote by id.
    pub fn remote(&self, id: &str) -> Option<SimRemoteInfo> {
        self.index(id).map(|i| self.info(i))
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.state.fleet.remotes.iter().position(|r| r.id == id)
    }

    fn info(&self, index: usize) -> SimRemoteInfo {
        let r = &self.state.fleet.remotes[index];
        let (nodes, path_prefix) = match &self.layout {
            Layout::PerNode(nodes) => (nodes[index].clone(), String::new()),
            Layout::Shared {
                addr,
                alt_addr,
                prom_addr,
                fingerprint,
                alt_fingerprint,
            } => {
                let address = if r.kind == RemoteKind::Prometheus {
                    *prom_addr
                } else if r.faults.wrong_cert {
                    *alt_addr
                } else {
                    *addr
                };
                let names = if r.nodes.is_empty() {
                    vec![r.id.clone()]
                } else {
                    r.nodes.clone()
                };
                let nodes = names
                    .into_iter()
                    .map(|name| SimNodeInfo {
                        name,
                        address,
                        fingerprint: *fingerprint,
                        wrong_fingerprint: *alt_fingerprint,
                    })
                    .collect();
                (nodes, format!("/{}", r.id))
            }
        };
        SimRemoteInfo {
            id: r.id.clone(),
            kind: r.kind,
            nodes,
            path_prefix,
            token_id: r.token_id.clone(),
            secret: r.secret.clone(),
        }
    }

    /// How many TCP connections the simulator accepted so far (shows pooling at work).
    pub fn connections_accepted(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// How many TLS handshakes completed so far, full and resumed.
    pub fn tls_handshakes(&self) -> TlsHandshakes {
        TlsHandshakes {
            full: self.state.handshakes_full.load(Ordering::Relaxed),
            resumed: self.state.handshakes_resumed.load(Ordering::Relaxed),
        }
    }

    /// How many requests the remote `id` was sent so far (0 for an unknown id).
    pub fn requests(&self, id: &str) -> u64 {
        self.index(id)
            .map_or(0, |i| self.state.requests[i].load(Ordering::Relaxed))
    }

    /// How many metric export requests (`/cluster/metrics/export`, `/status/metrics`)
    /// the remote `id` was sent so far, refused ones included: one or more per
    /// collection (0 for an unknown id).
    pub fn metric_export_requests(&self, id: &str) -> u64 {
        self.index(id)
            .map_or(0, |i| self.state.metric_exports[i].load(Ordering::Relaxed))
    }

    /// When the exposition target `id` was scraped so far (Unix seconds, in order).
    pub fn scrape_times(&self, id: &str) -> Vec<f64> {
        self.index(id)
            .map_or_else(Vec::new, |i| self.state.scrape_log[i].lock().clone())
    }

    /// Replaces the faults of remote `id` with `faults` (an empty list heals it), from
    /// its next request on (listeners open or close within a moment); false for an
    /// unknown id. Behind the shared listener `wrong-cert` cannot change while running
    /// (it decides the listener a remote is reached on); per node it can.
    pub fn set_faults(&self, id: &str, faults: &[Fault]) -> bool {
        let Some(index) = self.index(id) else {
            return false;
        };
        let mut new = Faults::from_list(faults);
        if matches!(self.layout, Layout::Shared { .. }) {
            new.wrong_cert = self.state.fleet.remotes[index].faults.wrong_cert;
        }
        *self.state.faults[index].write() = new;
        self.state.poke.notify_one();
        true
    }

    /// Switches an outage of every remote on or off: while it is on, every listener
    /// refuses connections and open ones are dropped (behind the shared listener,
    /// requests are dropped unanswered). The way to time a fleet's recovery.
    pub fn set_outage(&self, on: bool) {
        self.state.outage.store(on, Ordering::Relaxed);
        self.state.poke.notify_one();
    }

    /// Ends the lag of a clock started behind (`SimConfig::clock_behind`): every remote
    /// jumps forward to the real time, its metrics and tasks of the lag included. A
    /// benchmark backfills against a lagging fleet, then catches it up, so the next
    /// cycle moves the whole lag's worth of data and none of it lies in the future.
    pub fn catch_up_clock(&self) {
        self.clock.catch_up();
        self.state.poke.notify_one();
    }

    /// How far the simulator's clock is behind the clock it was started with.
    pub fn clock_behind(&self) -> std::time::Duration {
        self.clock.behind()
    }

    /// Whether the outage switch is on.
    pub fn outage(&self) -> bool {
        self.state.outage.load(Ordering::Relaxed)
    }

    /// Whether node `node` (from 0) of remote `id` answers now: false while an outage
    /// is on and, in the per-node layout, while it is offline (the `node-offline`
    /// fault, the churn) — behind the shared listener an offline node shows in the
    /// lists only. `None` for an unknown remote or node.
    pub fn node_answers(&self, id: &str, node: usize) -> Option<bool> {
        let index = self.index(id)?;
        if node >= self.state.fleet.remotes[index].listeners() {
            return None;
        }
        Some(match self.layout {
            Layout::PerNode(_) => self.state.answers(index, node),
            Layout::Shared { .. } => !self.state.outage_now(&self.state.faults(index)),
        })
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

type Started = (Layout, Vec<JoinHandle<()>>);

/// The shared layout: one TLS listener for every remote, one for the `wrong-cert`
/// remotes, one plain-http for the exposition targets.
async fn start_shared(
    state: &Arc<SimState>,
    listen: SocketAddr,
    stopped: &watch::Receiver<bool>,
) -> Result<Started, SimError> {
    let seed = state.fleet.seed;
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let main: Certified = self_signed(hash(&[seed, 1]), &names)?;
    let alt: Certified = self_signed(hash(&[seed, 2]), &names)?;
    let listener = bind(listen).await?;
    let alt_listener = bind(SocketAddr::new(listen.ip(), 0)).await?;
    let prom_listener = bind(SocketAddr::new(listen.ip(), 0)).await?;
    let local = |l: &TcpListener| {
        l.local_addr().map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })
    };
    let layout = Layout::Shared {
        addr: local(&listener)?,
        alt_addr: local(&alt_listener)?,
        prom_addr: local(&prom_listener)?,
        fingerprint: main.fingerprint,
        alt_fingerprint: alt.fingerprint,
    };
    let servers = vec![
        tokio::spawn(run_shared(
            listener,
            Some(main.acceptor),
            state.clone(),
            stopped.clone(),
        )),
        tokio::spawn(run_shared(
            alt_listener,
            Some(alt.acceptor),
            state.clone(),
            stopped.clone(),
        )),
        tokio::spawn(run_shared(
            prom_listener,
            None,
            state.clone(),
            stopped.clone(),
        )),
    ];
    Ok((layout, servers))
}

/// The per-node layout: a listener with its own address and certificates per node,
/// opened and closed by the clockwork.
async fn start_per_node(
    state: &Arc<SimState>,
    base: std::net::Ipv4Addr,
    port: Option<u16>,
    stopped: &watch::Receiver<bool>,
) -> Result<Started, SimError> {
    let fleet = &state.fleet;
    let total: u64 = fleet.remotes.iter().map(|r| r.listeners() as u64).sum();
    let needed = total + DESCRIPTOR_MARGIN;
    let limit = crate::daemon::fds::raise_nofile_limit();
    if limit < needed {
        return Err(SimError::Descriptors { needed, limit });
    }
    // Where each node listens and what it is called, before anything is bound.
    let mut plan = Vec::new();
    for (index, remote) in fleet.remotes.iter().enumerate() {
        for node in 0..remote.listeners() {
            let ip = Listen::node_ip(base, index, node).map_err(SimError::Layout)?;
            let name = remote.nodes.get(node).unwrap_or(&remote.id).clone();
            let tls = remote.kind != RemoteKind::Prometheus;
            plan.push((index, node, ip, name, tls));
        }
    }
    // Two Ed25519 certificates per node: thousands for a large fleet, off the workers.
    let seed = fleet.seed;
    let wanted: Vec<(usize, usize, Vec<String>, bool)> = plan
        .iter()
        .map(|(i, n, ip, name, tls)| (*i, *n, vec![name.clone(), ip.to_string()], *tls))
        .collect();
    let certs = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .map(|(i, n, names, tls)| {
                tls.then(|| NodeCerts::generate(seed, i, n, &names).map(Arc::new))
                    .transpose()
            })
            .collect::<Result<Vec<_>, SimError>>()
    })
    .await
    .map_err(|e| SimError::Tls(format!("generating certificates failed: {e}")))??;

    let mut infos: Vec<Vec<SimNodeInfo>> = fleet.remotes.iter().map(|_| Vec::new()).collect();
    let mut switches: Vec<Vec<watch::Sender<bool>>> =
        fleet.remotes.iter().map(|_| Vec::new()).collect();
    let mut servers = Vec::with_capacity(plan.len() + 1);
    for ((index, node, ip, name, _), certs) in plan.into_iter().zip(certs) {
        let kind = fleet.remotes[index].kind;
        let listener = bind(SocketAddr::new(
            ip.into(),
            port.unwrap_or(product_port(kind)),
        ))
        .await?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: SocketAddr::new(ip.into(), 0),
            source,
        })?;
        let (fingerprint, wrong_fingerprint, security) = match certs {
            Some(certs) => (
                certs.genuine.fingerprint,
                certs.wrong.fingerprint,
                Security::Node(certs),
            ),
            None => (Fingerprint([0; 32]), Fingerprint([0; 32]), Security::Plain),
        };
        infos[index].push(SimNodeInfo {
            name,
            address: addr,
            fingerprint,
            wrong_fingerprint,
        });
        let (switch, open) = watch::channel(state.answers(index, node));
        switches[index].push(switch);
        let me = NodeListener {
            addr,
            remote: index,
            node,
            security,
            open,
        };
        servers.push(tokio::spawn(run_node(
            listener,
            me,
            state.clone(),
            stopped.clone(),
        )));
    }
    servers.push(tokio::spawn(clockwork(
        state.clone(),
        switches,
        stopped.clone(),
    )));
    Ok((Layout::PerNode(infos), servers))
}

/// Opens and closes the per-node listeners: whenever faults or the outage switch
/// change, and every [`TICK`] while schedules (the churn, `outage` windows) can.
async fn clockwork(
    state: Arc<SimState>,
    switches: Vec<Vec<watch::Sender<bool>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for (index, nodes) in switches.iter().enumerate() {
            for (node, switch) in nodes.iter().enumerate() {
                let open = state.answers(index, node);
                switch.send_if_modified(|was| std::mem::replace(was, open) != open);
            }
        }
        tokio::select! {
            () = state.poke.notified() => {}
            () = tokio::time::sleep(TICK), if state.time_driven() => {}
            _ = stop.changed() => return,
        }
    }
}

/// The per-request dice of one remote: a hash of the seed, the remote and its request count.
pub(crate) fn next_roll(state: &SimState, index: usize) -> u64 {
    let n = state.requests[index].fetch_add(1, Ordering::Relaxed);
    hash(&[state.fleet.seed, index as u64, n, 0xD1CE])
}

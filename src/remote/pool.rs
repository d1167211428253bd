//! Idle connections kept for reuse. Each node keeps its own few; an [`IdleBudget`]
//! shared by every client of a daemon bounds how many are kept in all, closing the
//! longest-idle one when a newer one needs the room.
//!
//! The bound is what keeps memory flat with a large fleet: every open connection holds
//! its read and TLS buffers (up to ≈ 150 KiB after a large reply), and a cycle over
//! 1,000 remotes ends with one or more idle connections per remote — hundreds of MB if
//! all were kept until their idle timeout. The connections worth keeping are the
//! newest: they belong to remotes whose next request (a task list after the metrics, the
//! node lists after `/nodes`, the next page) is about to come.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

/// The sending half of one HTTP/1.1 connection.
pub(crate) type Sender = SendRequest<Empty<Bytes>>;

/// Idle connections kept per node.
const MAX_IDLE_PER_NODE: usize = 4;
/// An idle connection unused this long is closed, unless the budget says otherwise
/// (longer than the 10 s task tick, so a remote with tracked tasks keeps its connection).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle connections kept in all when no budget is given.
const DEFAULT_BUDGET: usize = 32;

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One idle connection.
struct Entry {
    id: u64,
    sender: Sender,
    since: Instant,
}

/// The idle connections of one node, newest last.
#[derive(Default)]
pub(crate) struct NodeIdle {
    entries: Mutex<Vec<Entry>>,
}

impl fmt::Debug for NodeIdle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdle")
            .field("idle", &guard(&self.entries).len())
            .finish()
    }
}

impl NodeIdle {
    /// Removes the entry `id` if it is still here (it may have been reused already).
    fn remove(&self, id: u64) -> Option<Sender> {
        let mut entries = guard(&self.entries);
        let at = entries.iter().position(|e| e.id == id)?;
        Some(entries.remove(at).sender)
    }
}

#[derive(Default)]
struct Ledger {
    next_id: u64,
    /// Every kept connection in the order it went idle, oldest first.
    order: VecDeque<(u64, Weak<NodeIdle>)>,
}

struct Shared {
    max: AtomicUsize,
    timeout: Duration,
    ledger: Mutex<Ledger>,
    /// Every node's idle list by its connection identity, so a client built again for
    /// the same node (a reload) finds the connections its predecessor kept.
    nodes: Mutex<HashMap<String, Weak<NodeIdle>>>,
}

/// Closes the connections of `evicted` (taken out of the ledger already).
fn close(evicted: Vec<(u64, Weak<NodeIdle>)>) {
    for (old, owner) in evicted {
        // Dropping the sender ends the connection's task and frees its buffers.
        drop(owner.upgrade().and_then(|n| n.remove(old)));
    }
}

/// How many idle connections all clients sharing this budget keep together. Clone it
/// into the [`ClientOptions`](super::ClientOptions) of every remote.
#[derive(Clone)]
pub struct IdleBudget {
    shared: Arc<Shared>,
}

impl Default for IdleBudget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

impl fmt::Debug for IdleBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleBudget")
            .field("max", &self.max())
            .field("timeout", &self.shared.timeout)
            .field("kept", &self.kept())
            .finish()
    }
}

impl IdleBudget {
    /// A budget of at most `max` idle connections (0 closes every connection after its
    /// request).
    pub fn new(max: usize) -> Self {
        Self::with_timeout(max, IDLE_TIMEOUT)
    }

    /// The same bound, closing connections idle for `timeout` instead of [`IDLE_TIMEOUT`].
    pub fn with_timeout(max: usize, timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                max: AtomicUsize::new(max),
                timeout,
                ledger: Mutex::default(),
                nodes: Mutex::default(),
            }),
        }
    }

    /// Idle connections kept right now.
    pub fn kept(&self) -> usize {
        guard(&self.shared.ledger).order.len()
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.shared.max.load(Ordering::Relaxed)
    }

    /// A new bound (a reload changed the connection caps): connections kept beyond it
    /// are closed now, longest idle first.
    pub fn set_max(&self, max: usize) {
        self.shared.max.store(max, Ordering::Relaxed);
        let evicted: Vec<(u64, Weak<NodeIdle>)> = {
            let mut ledger = guard(&self.shared.ledger);
            let excess = ledger.order.len().saturating_sub(max);
            ledger.order.drain(..excess).collect()
        };
        close(evicted);
    }

    /// The idle list of the node whose connection identity is `key` (remote, address,
    /// TLS, pin): the same list for every client built for it while one is alive.
    pub(crate) fn node(&self, key: &str) -> Arc<NodeIdle> {
        let mut nodes = guard(&self.shared.nodes);
        if let Some(node) = nodes.get(key).and_then(Weak::upgrade) {
            return node;
        }
        // Forget the nodes no client uses any more before the map grows.
        if nodes.len() >= 64 && nodes.len().is_power_of_two() {
            nodes.retain(|_, n| n.strong_count() > 0);
        }
        let node = Arc::new(NodeIdle::default());
        nodes.insert(key.to_string(), Arc::downgrade(&node));
        node
    }

    fn forget(&self, id: u64) {
        let mut ledger = guard(&self.shared.ledger);
        if let Some(at) = ledger.order.iter().position(|(i, _)| *i == id) {
            ledger.order.remove(at);
        }
    }

    /// A still-usable idle connection of `node`, newest first; stale ones are closed.
    pub(crate) fn take(&self, node: &NodeIdle) -> Option<Sender> {
        loop {
            let entry = guard(&node.entries).pop()?;
            self.forget(entry.id);
            let usable = !entry.sender.is_closed()
                && entry.sender.is_ready()
                && entry.since.elapsed() < self.shared.timeout;
            if usable {
                return Some(entry.sender);
            }
        }
    }

    /// Keeps `sender` for reuse on `node`, closing the longest-idle connection (of any
    /// node) when the budget is full, and this one once it idled for the timeout.
    pub(crate) fn put(&self, node: &Arc<NodeIdle>, sender: Sender) {
        let max = self.max();
        if max == 0 || sender.is_closed() {
            return;
        }
        // The node's list and the ledger change under the ledger's lock together, so a
        // `take` (which forgets after popping) never misses the id it pops.
        let (id, evicted, dropped_locally) = {
            let mut ledger = guard(&self.shared.ledger);
            ledger.next_id += 1;
            let id = ledger.next_id;
            let dropped_locally = {
                let mut entries = guard(&node.entries);
                entries.push(Entry {
                    id,
                    sender,
                    since: Instant::now(),
                });
                (entries.len() > MAX_IDLE_PER_NODE).then(|| entries.remove(0))
            };
            if let Some(old) = &dropped_locally {
                if let Some(at) = ledger.order.iter().position(|(i, _)| *i == old.id) {
                    ledger.order.remove(at);
                }
            }
            ledger.order.push_back((id, Arc::downgrade(node)));
            let excess = ledger.order.len().saturating_sub(max);
            let evicted: Vec<(u64, Weak<NodeIdle>)> = ledger.order.drain(..excess).collect();
            (id, evicted, dropped_locally)
        };
        drop(dropped_locally);
        close(evicted);
        let budget = self.clone();
        let owner = Arc::downgrade(node);
        tokio::spawn(async move {
            tokio::time::sleep(budget.shared.timeout).await;
            if let Some(node) = owner.upgrade() {
                if node.remove(id).is_some() {
                    budget.forget(id);
                }
            }
        });
    }
}

/// What every client of one daemon shares for the daemon's whole life, across reloads:
/// the bound on idle connections (with each node's kept connections) and the TLS
/// session cache, and the system's trust store. A reload builds new clients; with the same pools, an unchanged node's
/// new client finds its predecessor's connections and sessions, and connections kept
/// by clients of the old config count against the same bound.
#[derive(Clone, Debug, Default)]
pub struct ClientPools {
    /// The idle-connection bound, sized by each resolved config.
    pub idle: IdleBudget,
    /// The TLS sessions.
    pub tls_sessions: super::tls::TlsSessions,
    /// The system's trust store, read once: a node's TLS configuration (and with it
    /// its sessions) carries over a reload only when built from the same roots.
    roots: Arc<std::sync::OnceLock<Arc<rustls::RootCertStore>>>,
}

impl ClientPools {
    /// The system's trust store, read on first use.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        self.roots.get_or_init(super::tls::system_roots).clone()
    }
}

//! The vocabulary shared by the engine and the real parts: remote ids, metric batches,
//! task records and the references the manager uses to name a remote task.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The configured name of one remote (a PVE cluster, a PBS server, an exporter).
///
/// Cheap to clone: the name is shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RemoteId(Arc<str>);

impl RemoteId {
    /// Wraps a name. Validation of the characters allowed lives in the config layer.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(Arc::from(name.as_ref()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RemoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RemoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RemoteId {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// What kind of remote this is; decides the default connection budget of one poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteKind {
    /// A Proxmox VE cluster.
    Pve,
    /// A Proxmox Backup Server.
    Pbs,
    /// Any Prometheus-exposition endpoint.
    Prometheus,
    /// The host the engine runs on (the built-in `local` source).
    Local,
}

impl RemoteKind {
    /// The per-remote connection cap used when the config does not set one:
    /// a PVE cluster may be asked on up to 5 nodes at once, the others on one.
    pub fn default_connection_cap(self) -> u32 {
        match self {
            RemoteKind::Pve => 5,
            RemoteKind::Pbs | RemoteKind::Prometheus | RemoteKind::Local => 1,
        }
    }

    /// The prefix of a manager task reference (`pve:remote!UPID…`).
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteKind::Pve => "pve",
            RemoteKind::Pbs => "pbs",
            RemoteKind::Prometheus => "prometheus",
            RemoteKind::Local => "local",
        }
    }
}

impl fmt::Display for RemoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seconds since the Unix epoch, as remotes report timestamps.
pub type UnixTime = i64;

/// How a metric's raw values are to be interpreted by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// A value measured at one instant (memory used, cpu share).
    Gauge,
    /// A monotonically growing counter that may wrap.
    Counter,
    /// A growing counter whose decrease means a reset (stored as DERIVE with min 0).
    Derive,
}

/// One series of a batch: an entity of the remote (`node/pve1`, `qemu/100`,
/// `datastore/store1`) and one of its metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The remote's id for the entity, e.g. `qemu/100` or `storage/pve1/local`.
    pub entity: Arc<str>,
    /// The metric name, e.g. `cpu_current`.
    pub metric: Arc<str>,
    /// How the values are interpreted.
    pub kind: MetricKind,
}

/// One data point of a series in a [`MetricBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Index into [`MetricBatch::series`].
    pub series: u32,
    /// When the value was measured.
    pub timestamp: UnixTime,
    /// The raw value.
    pub value: f64,
}

/// The metrics one poll of one remote returned: series resolved once, points referring
/// to them by index (the parser interns ids and metric names so a large reply costs
/// little beyond the JSON itself).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricBatch {
    /// The distinct series the points refer to.
    pub series: Vec<SeriesKey>,
    /// The points, in the order the remote sent them (sorted by timestamp).
    pub points: Vec<MetricPoint>,
    /// Points dropped by the source because they lay too far in the future.
    pub dropped_future: u64,
}

impl MetricBatch {
    /// The newest timestamp in the batch, if it has any point.
    pub fn newest(&self) -> Option<UnixTime> {
        self.points.iter().map(|p| p.timestamp).max()
    }

    /// Number of points in the batch.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the batch has no point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Where a remote's metric collection stands: the newest timestamp already stored.
/// The next poll asks only for points after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor(pub Option<UnixTime>);

impl Cursor {
    /// The cursor that asks for everything the remote keeps.
    pub const START: Cursor = Cursor(None);

    /// The later of two cursors.
    pub fn advance(self, newest: Option<UnixTime>) -> Cursor {
        Cursor(self.0.max(newest))
    }
}

/// One entry of a remote's resource list (its inventory): a node, guest, storage or
/// datastore with its name, status and current use, as the remote's own list shows it
/// (PVE `GET /cluster/resources`, PBS `GET /status/datastore-usage`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The entity id, as the metric store names it: `qemu/100`, `lxc/101`, `node/pve1`,
    /// `storage/pve1/local`, `datastore/store1`.
    pub id: String,
    /// `node`, `qemu`, `lxc`, `storage`, `datastore` (or another type the remote lists).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The node it is on (a PBS's datastores: `localhost`).
    pub node: Option<String>,
    /// A guest's name, a storage's or datastore's name, a node's name.
    pub name: Option<String>,
    /// `running`/`stopped` for guests, `online`/`offline` for nodes, `available` for storages.
    pub status: Option<String>,
    /// CPU use as a share of `maxcpu` (0..=1).
    pub cpu: Option<f64>,
    /// CPUs (a container's may be fractional).
    pub maxcpu: Option<f64>,
    /// Memory used, bytes.
    pub mem: Option<u64>,
    /// Memory available, bytes.
    pub maxmem: Option<u64>,
    /// Disk space used, bytes.
    pub disk: Option<u64>,
    /// Disk space, bytes.
    pub maxdisk: Option<u64>,
    /// Seconds since it started (0 when stopped).
    pub uptime: Option<u64>,
}

impl Resource {
    /// A resource of `resource_type` with this id and every other field unknown.
    pub fn new(id: impl Into<String>, resource_type: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            resource_type: resource_type.into(),
            node: None,
            name: None,
            status: None,
            cpu: None,
            maxcpu: None,
            mem: None,
            maxmem: None,
            disk: None,
            maxdisk: None,
            uptime: None,
        }
    }
}

/// One task as the remote lists it, normalised over PVE and PBS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The remote's unique task id (UPID), without the manager's `kind:remote!` prefix.
    pub upid: String,
    /// The node that ran it.
    pub node: String,
    /// Task type (`vzdump`, `qmstart`, `garbage_collection`, …).
    pub task_type: String,
    /// The object the task worked on (a vmid, a datastore), if any.
    pub task_id: Option<String>,
    /// Who started it (`root@pam`).
    pub user: String,
    /// When it started.
    pub start_time: UnixTime,
    /// When it ended; `None` while it runs.
    pub end_time: Option<UnixTime>,
    /// `OK`, a warning/error text, or `None` while it runs.
    pub status: Option<String>,
}

impl TaskRecord {
    /// Whether the remote reported the task as still running.
    pub fn is_running(&self) -> bool {
        self.end_time.is_none()
    }
}

/// What the source is asked to list: per node, tasks that started at or after the cutoff.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Per node, the start time from which tasks must be listed again.
    pub cutoffs: std::collections::BTreeMap<String, UnixTime>,
    /// The cutoff for a node without one (first start: the last 7 days).
    pub default_since: UnixTime,
    /// Only the tasks that are running now (the cheap 30 s check of foreign running tasks).
    pub running_only: bool,
    /// How many connections the fetch may open at once: the permits leased for it (the
    /// poller fills this in; 0 counts as 1).
    pub connections: u32,
}

/// The tasks one fetch of one remote returned, with the nodes that answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskBatch {
    /// The tasks, in any order; the store deduplicates by UPID.
    pub tasks: Vec<TaskRecord>,
    /// Nodes whose list was fetched completely; only their cutoffs may advance.
    pub complete_nodes: Vec<String>,
}

/// The state of one task as polled by its UPID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Still running.
    Running,
    /// Finished, with the exit status text (`OK` or the error).
    Stopped {
        /// The remote's exit status.
        exit_status: String,
    },
}

/// The manager's name for a remote task: `pve:<remote>!<UPID>` or `pbs:<remote>!<UPID>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskRef {
    /// The remote that runs the task.
    pub remote: RemoteId,
    /// The remote's UPID.
    pub upid: String,
}

impl TaskRef {
    /// Parses `kind:remote!UPID…`; the kind prefix is optional. The UPID's own syntax
    /// is checked by the remote clients, not here.
    pub fn parse(text: &str) -> Result<TaskRef, String> {
        let (head, upid) = text.split_once('!').ok_or_else(|| {
            format!("task reference {text:?} has no '!': expected 'pve:<remote>!<UPID>'")
        })?;
        let remote = head.split_once(':').map_or(head, |(_, remote)| remote);
        if remote.is_empty() {
            return Err(format!(
                "task reference {text:?} names no remote: expected 'pve:<remote>!<UPID>'"
            ));
        }
        if !upid.starts_with("UPID:") {
            return Err(format!(
                "task reference {text:?}: the part after '!' must start with 'UPID:'"
            ));
        }
        Ok(TaskRef {
            remote: RemoteId::new(remote),
            upid: upid.to_string(),
        })
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}!{}", self.remote, self.upid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ref_parses_manager_form_and_rejects_garbage() {
        let r = TaskRef::parse("pve:lab!UPID:pve:00039E4D:002638B8:67B4A9D1:stopall::root@pam:")
            .unwrap();
        assert_eq!(r.remote.as_str(), "lab");
        assert!(r.upid.starts_with("UPID:pve:"));
        assert!(TaskRef::parse("lab-UPID").is_err());
        assert!(TaskRef::parse("pve:!UPID:x").is_err());
        assert!(TaskRef::parse("pve:lab!notaupid").is_err());
    }

    #[test]
    fn cursor_only_moves_forward() {
        let c = Cursor(Some(100));
        assert_eq!(c.advance(Some(50)), Cursor(Some(100)));
        assert_eq!(c.advance(Some(150)), Cursor(Some(150)));
        assert_eq!(Cursor::START.advance(None), Cursor::START);
    }
}

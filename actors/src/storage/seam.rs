//! The seams to durable storage. The engine calls these only from the Storage actor,
//! inside `spawn_blocking`, one write at a time; the real stores (RRD files with a
//! journal, the rotating task cache) live in the `fleetpoll` crate.

use std::fmt;

use crate::model::{Cursor, MetricBatch, RemoteId, TaskBatch, TaskQuery, TaskRef, UnixTime};

/// A store operation failed. The message names the file or record and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// One remote's metric batch to be stored.
#[derive(Debug, Clone)]
pub struct MetricWrite {
    /// Whose metrics these are.
    pub remote: RemoteId,
    /// The points.
    pub batch: MetricBatch,
}

/// One remote's task batch to be merged into the cache.
#[derive(Debug, Clone)]
pub struct TaskWrite {
    /// Whose tasks these are.
    pub remote: RemoteId,
    /// The tasks and the nodes that answered completely.
    pub batch: TaskBatch,
    /// The query the batch answers (the store advances cutoffs only for complete nodes).
    pub query: TaskQuery,
}

/// Durable metric storage.
pub trait MetricStore: Send + Sync + fmt::Debug + 'static {
    /// Store several remotes' batches durably (one sync for the group) and return each
    /// remote's new cursor, in the order of `writes`. Points at or before a series' last
    /// update are ignored, not errors. Returning means the points survive a crash.
    fn store_metrics(&self, writes: &[MetricWrite]) -> Vec<Result<Cursor, StoreError>>;

    /// The newest stored timestamp of a remote, from memory (called on poller start).
    fn cursor(&self, remote: &RemoteId) -> Cursor;

    /// Apply what has been journalled to the long-lived files (the commit cadence and
    /// shutdown call this).
    fn commit(&self) -> Result<(), StoreError>;
}

/// Durable task cache.
pub trait TaskStore: Send + Sync + fmt::Debug + 'static {
    /// Merge task batches (idempotent, deduplicating) and persist them.
    fn store_tasks(&self, writes: &[TaskWrite]) -> Vec<Result<(), StoreError>>;

    /// What to ask a remote for next: per-node cutoffs; `default_since` for new nodes.
    fn task_query(&self, remote: &RemoteId, now: UnixTime) -> TaskQuery;

    /// Whether the cache knows tasks of this remote that were running when last seen.
    fn has_running(&self, remote: &RemoteId) -> bool;

    /// Rotate the archive if `now` lies in a later UTC day than the active file.
    /// Returns whether a rotation happened.
    fn rotate(&self, now: UnixTime) -> Result<bool, StoreError>;

    /// Fold the journal into the active file.
    fn apply_journal(&self) -> Result<(), StoreError>;

    /// Persist the set of tasks the manager tracks.
    fn save_tracked(&self, tracked: &[TaskRef]) -> Result<(), StoreError>;

    /// The tracked tasks saved last.
    fn load_tracked(&self) -> Vec<TaskRef>;
}

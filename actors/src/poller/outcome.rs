//! The vocabulary of one collection: what a caller asks for, what it gets back, and
//! the callbacks the poller uses to answer the scheduler.

use serde::Serialize;
use tokio::sync::oneshot;

use crate::model::{Cursor, RemoteId, TaskState, UnixTime};
use crate::source::{ErrorClass, SourceError};
use crate::storage::StoreError;

/// Which remotes a trigger addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One remote.
    Remote(RemoteId),
    /// Every configured remote.
    All,
    /// Every remote collected at this interval (its own, or the collection interval
    /// for remotes without one): what one of the scheduler's timers starts.
    Interval(std::time::Duration),
}

/// Why a collection was not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Skipped {
    /// Collected successfully within the skip window.
    RecentlyCollected,
    /// Waiting out its backoff; an explicit trigger of this remote alone bypasses it.
    InBackoff {
        /// When the next retry is due (Unix seconds).
        until: UnixTime,
    },
    /// Disabled in the config.
    Disabled,
    /// Nothing uses the remote's metrics.
    Unused,
    /// A running-tasks check of a remote with no task known to be running.
    NothingRunning,
}

/// A collection that ended without error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum CollectOutcome {
    /// Fetched and stored durably.
    Stored {
        /// Points in the stored batch.
        points: usize,
        /// The remote's cursor after the store.
        cursor: Cursor,
    },
    /// Not run, and why.
    Skipped(Skipped),
}

/// A collection that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case", tag = "error", content = "detail")]
pub enum CollectError {
    /// The remote's request failed.
    #[error("remote request failed: {0}")]
    Source(SourceError),
    /// Storing the batch failed; the cursor did not move.
    #[error("storing the batch failed: {0}")]
    Store(String),
    /// The remote is not configured.
    #[error("no remote named {0:?} is configured")]
    UnknownRemote(RemoteId),
    /// The remote's poller crashed too often and was given up (reload the config to retry).
    #[error("the poller of this remote was given up after repeated crashes: {0}")]
    Failed(String),
    /// The remote's poller crashed and waits for its restart delay.
    #[error("the poller of this remote is restarting after a crash; try again shortly")]
    Restarting,
    /// The engine is shutting down or the poller stopped before the collection finished.
    #[error("the collection was cut short: the poller stopped")]
    Stopped,
}

impl CollectError {
    /// The error class the status and the counters show.
    pub fn class(&self) -> ErrorClass {
        match self {
            CollectError::Source(e) => e.class,
            CollectError::Store(_) => ErrorClass::Storage,
            _ => ErrorClass::Other,
        }
    }
}

impl From<StoreError> for CollectError {
    fn from(value: StoreError) -> Self {
        CollectError::Store(value.0)
    }
}

/// The answer to one remote's collection.
pub type CollectResult = Result<CollectOutcome, CollectError>;

/// Where a caller waits for a collection.
pub(crate) type Waiter = oneshot::Sender<CollectResult>;

/// The results of polling tracked tasks by UPID.
pub(crate) type TrackedResults = Vec<(String, Result<TaskState, SourceError>)>;

/// Callback through which a poller hands tracked-task results back to the scheduler.
pub(crate) type TrackedResponder = Box<dyn FnOnce(RemoteId, TrackedResults) + Send>;

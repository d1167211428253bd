//! The seam to a remote: what a poller asks of it. The real clients (PVE, PBS,
//! Prometheus over HTTPS) live in the `fleetpoll` crate; tests use fakes.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{Cursor, MetricBatch, Resource, TaskBatch, TaskQuery, TaskState};

/// Why a request to a remote failed; decides how the poller reacts and what the status shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// No node of the remote accepted a connection.
    Unreachable,
    /// Connected, but no complete answer within the timeout.
    Timeout,
    /// The TLS handshake failed or the certificate did not match the pinned fingerprint.
    Tls,
    /// The remote refused the credentials (401/403).
    Auth,
    /// The remote answered with a server error (5xx) and its message.
    Remote,
    /// The reply was not what the API promises (malformed JSON, schema mismatch, too large).
    BadReply,
    /// The remote says the object asked for does not exist (404).
    NotFound,
    /// The remote's clock is off: its points lie in the future (the text has the offset).
    Clock,
    /// The remote answered, but storing its data failed (disk full, read-only, damaged).
    Storage,
    /// Anything else (a bug, a local resource problem).
    Other,
}

impl ErrorClass {
    /// Short stable name, used as a metrics label and in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Tls => "tls",
            ErrorClass::Auth => "auth",
            ErrorClass::Remote => "remote",
            ErrorClass::BadReply => "bad_reply",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Clock => "clock",
            ErrorClass::Storage => "storage",
            ErrorClass::Other => "other",
        }
    }

    /// Errors that will not go away by asking again soon: the poller goes straight to
    /// the backoff cap instead of retrying quickly.
    pub fn is_persistent(self) -> bool {
        matches!(self, ErrorClass::Tls | ErrorClass::Auth | ErrorClass::Clock)
    }

    /// Every class, in the order the counters report them.
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::Unreachable,
        ErrorClass::Timeout,
        ErrorClass::Tls,
        ErrorClass::Auth,
        ErrorClass::Remote,
        ErrorClass::BadReply,
        ErrorClass::NotFound,
        ErrorClass::Clock,
        ErrorClass::Storage,
        ErrorClass::Other,
    ];
}

/// A failed request to a remote. The message must never contain a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{class_name}: {message}", class_name = class.as_str())]
pub struct SourceError {
    /// What kind of failure it was.
    pub class: ErrorClass,
    /// What happened, for the status and the log.
    pub message: String,
}

impl SourceError {
    /// Builds an error of the given class.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

/// One remote as the engine sees it. Implementations must be cheap to call concurrently
/// (a metrics fetch and a task fetch of the same remote may overlap) and must enforce
/// their own request timeouts: the engine cancels a fetch only when it shuts down.
#[async_trait]
pub trait RemoteSource: Send + Sync + fmt::Debug + 'static {
    /// How many connections one metrics poll uses (leased from the rate limiter).
    fn metric_connections(&self) -> u32 {
        1
    }

    /// How many connections one task-list fetch would like (a PVE cluster asks up to
    /// five nodes at once). The poller leases that many, within the remote's cap, and
    /// passes the number granted in [`TaskQuery::connections`]; the fetch must not open
    /// more at once.
    fn task_connections(&self) -> u32 {
        1
    }

    /// Fetch the metric points newer than `since`.
    async fn fetch_metrics(&self, since: Cursor) -> Result<MetricBatch, SourceError>;

    /// List tasks as `query` asks.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskBatch, SourceError>;

    /// Poll one task by its UPID.
    async fn task_status(&self, upid: &str) -> Result<TaskState, SourceError>;

    /// Whether the remote has a resource list (an inventory) to fetch with
    /// [`resources`](Self::resources). PVE clusters and PBS do; Prometheus targets and the
    /// local host do not, and keep this default.
    fn has_resources(&self) -> bool {
        false
    }

    /// Fetch the remote's resource list: its nodes, guests, storages or datastores with
    /// names and status. The engine does not call it; the `fleetpoll` crate's inventory
    /// does, on its own cadence. The default answers that there is none.
    async fn resources(&self) -> Result<Vec<Resource>, SourceError> {
        Err(SourceError::new(
            ErrorClass::NotFound,
            "this remote has no resource list",
        ))
    }
}

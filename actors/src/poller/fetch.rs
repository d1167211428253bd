//! The fetch task of a poll: the request to the remote runs in a spawned task that owns
//! the connection lease, so the poller's mailbox stays open while the remote answers. A
//! panic in the remote source is caught here and handed back as a result, and the lease
//! goes back to the limiter the moment the remote has answered (unless storage is
//! behind, then it travels with the batch until it is stored).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use ractor::ActorRef;
use tokio::task::JoinHandle;

use super::actor::PollerMsg;
use super::jobs::{JobKind, Step};
use super::outcome::TrackedResults;
use crate::limiter::Lease;
use crate::model::{Cursor, MetricBatch, RemoteId, TaskBatch, TaskQuery};
use crate::source::{RemoteSource, SourceError};
use crate::storage::BACKLOG_LIMIT;

/// What a finished fetch produced.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// A metric batch.
    Metrics(Result<MetricBatch, SourceError>),
    /// A task batch and the query it answers.
    Tasks(Result<TaskBatch, SourceError>, TaskQuery),
    /// Tracked-task states.
    Tracked(TrackedResults),
    /// The source panicked; the poller fails with this text.
    Panicked(String),
}

/// What one fetch asks of the remote.
#[derive(Debug)]
pub(super) enum Request {
    /// Metric points newer than the cursor.
    Metrics(Cursor),
    /// The task list as the query asks.
    Tasks(TaskQuery),
    /// The state of each tracked task.
    Tracked(Vec<String>),
}

/// Aborts the spawned fetch when the poller stops or crashes.
pub(super) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One fetch to run: whose, which job, and what to ask.
#[derive(Debug)]
pub(super) struct FetchOrder {
    /// The remote (for the span).
    pub(super) remote: RemoteId,
    /// Its client.
    pub(super) source: Arc<dyn RemoteSource>,
    /// The job's kind.
    pub(super) kind: JobKind,
    /// The job's number.
    pub(super) seq: u64,
    /// What to ask.
    pub(super) request: Request,
    /// Storage's queue depth, read when the remote has answered.
    pub(super) backlog: Arc<AtomicUsize>,
    /// Bring the lease back to the poller, which hands the connection to the task
    /// fetch that follows this poll.
    pub(super) hand_over: bool,
}

/// Starts a fetch in its own task, holding `lease`; the result arrives at the poller as
/// a [`Step::Fetched`] message.
pub(super) fn spawn_fetch(
    poller: &ActorRef<PollerMsg>,
    order: FetchOrder,
    lease: Lease,
) -> AbortOnDrop {
    let me = poller.clone();
    let FetchOrder {
        remote,
        source,
        kind,
        seq,
        request,
        backlog,
        hand_over,
    } = order;
    let span = tracing::info_span!("poll", remote = %remote, job = ?kind, seq);
    AbortOnDrop(tokio::spawn(tracing::Instrument::instrument(
        async move {
            let fut = async move {
                match request {
                    Request::Metrics(cursor) => {
                        Fetched::Metrics(source.fetch_metrics(cursor).await)
                    }
                    Request::Tasks(query) => Fetched::Tasks(source.list_tasks(&query).await, query),
                    Request::Tracked(upids) => {
                        let mut results = Vec::with_capacity(upids.len());
                        for upid in upids {
                            let state = source.task_status(&upid).await;
                            results.push((upid, state));
                        }
                        Fetched::Tracked(results)
                    }
                }
            };
            let fetched = match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(f) => f,
                Err(panic) => Fetched::Panicked(panic_text(&panic)),
            };
            // Return the connection now, unless storage is behind: then the permit
            // travels with the batch and comes back once it is stored.
            let held = if hand_over || backlog.load(Ordering::Relaxed) > BACKLOG_LIMIT {
                Some(lease)
            } else {
                drop(lease);
                None
            };
            let _ = me.send_message(PollerMsg::Step {
                kind,
                seq,
                step: Step::Fetched(fetched, held),
            });
        },
        span,
    )))
}

/// The message of a caught panic payload.
pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

//! The jobs of a poller: the three kinds, the work each carries, the phase it is in,
//! and the steps that move it along (sent to the poller by itself, the limiter, the
//! fetch task and storage).

use std::fmt;

use tokio::time::Instant;

use super::fetch::{AbortOnDrop, Fetched};
use super::outcome::{TrackedResponder, Waiter};
use crate::limiter::{Lane, Lease};
use crate::model::Cursor;
use crate::storage::StoreError;

/// The kinds of job a poller runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// Metric collection.
    Metrics,
    /// Task-list fetch.
    Tasks,
    /// Status poll of tracked tasks.
    Tracked,
}

/// One step of a job's pipeline, sent to the poller by itself, the limiter or storage.
pub(crate) enum Step {
    /// The per-connection delay has passed.
    DelayDone,
    /// The limiter granted the lease.
    Granted(Lease),
    /// The spawned fetch finished; it hands back the lease when storage is behind (the
    /// poll then keeps its connection permit until the batch is stored).
    Fetched(Fetched, Option<Lease>),
    /// Storage answered.
    Stored(Result<Option<Cursor>, StoreError>),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::DelayDone => f.write_str("DelayDone"),
            Step::Granted(l) => write!(f, "Granted({l:?})"),
            Step::Fetched(x, _) => write!(f, "Fetched({x:?})"),
            Step::Stored(r) => write!(f, "Stored({r:?})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting out the per-connection delay.
    Delaying,
    /// Waiting for the limiter's lease.
    WaitingLease,
    /// The request is at the remote.
    Fetching,
    /// Storage has the batch.
    Storing,
}

/// What a job is to do.
pub(super) enum Work {
    /// Collect metrics.
    Metrics,
    /// Fetch the task list.
    Tasks {
        /// Only the running tasks.
        running_only: bool,
    },
    /// Poll tracked tasks.
    Tracked {
        /// Their UPIDs.
        upids: Vec<String>,
        /// Where the results go.
        respond: TrackedResponder,
    },
}

/// One job on its way through the pipeline.
pub(super) struct PollJob {
    /// Its number; steps of a superseded job carry an older one.
    pub(super) seq: u64,
    /// Where it is.
    pub(super) phase: Phase,
    /// Which lane its lease request waits in.
    pub(super) lane: Lane,
    /// What it does.
    pub(super) work: Work,
    /// Who waits for its outcome.
    pub(super) waiters: Vec<Waiter>,
    /// The running fetch, aborted if the job is dropped.
    pub(super) fetch: Option<AbortOnDrop>,
    /// A lease kept until the batch is stored (while storage is behind).
    pub(super) lease: Option<Lease>,
    /// When the lease was granted.
    pub(super) started: Option<Instant>,
    /// Points or tasks in the fetched batch.
    pub(super) points: usize,
    /// It follows the metric poll that just ended: no per-connection delay, and its
    /// lease request goes first in its lane, so it finds that poll's connection idle.
    pub(super) follow_up: bool,
    /// Its fetch brings the lease back for a task fetch waiting to follow it.
    pub(super) hand_over: bool,
    /// The connections it asked for (0 before it asks): counted against the remote's
    /// cap when another job of this poller would take burst permits.
    pub(super) permits: u32,
}

/// The job of one kind that runs, and the one follow-up that may wait behind it.
#[derive(Default)]
pub(super) struct JobQueue {
    /// The running job.
    pub(super) current: Option<PollJob>,
    /// A follow-up requested while `current` was already fetching.
    pub(super) next: Option<(Lane, Work, Vec<Waiter>)>,
}

/// Where the job of `kind` sits in the poller's queues.
pub(super) fn slot_index(kind: JobKind) -> usize {
    match kind {
        JobKind::Metrics => 0,
        JobKind::Tasks => 1,
        JobKind::Tracked => 2,
    }
}

//! One remote's collection: the Poller actor and what it reports.
//!
//! - `actor`: the [`Poller`] actor, its messages and start arguments.
//! - `pipeline`: the job pipeline — per-connection delay, lease, fetch, store — and the
//!   poller's state; `pipeline/permits`: how a job gets its connections (the
//!   limiter, or the burst at once for a manual job).
//! - `jobs`: the three kinds of job, their phases and the steps between them.
//! - `fetch`: the spawned fetch task that owns the lease and catches a source's panic.
//! - `outcome`: what a collection returns to its caller ([`CollectOutcome`], [`CollectError`]).
//! - `backoff`: per-remote exponential backoff with full jitter.
//! - `status`: the [`RemoteStatus`] the poller publishes.
//! - `counters`: the engine-wide poll counters and duration histogram.

mod actor;
mod backoff;
mod counters;
mod fetch;
mod jobs;
mod outcome;
mod pipeline;
mod status;

pub(crate) use actor::{Poller, PollerArgs, PollerMsg, StartCollect};
pub(crate) use backoff::doubled_up_to;
pub use counters::{PollStats, PollStatsSnapshot, DURATION_BUCKETS_SECS};
pub use outcome::{CollectError, CollectOutcome, CollectResult, Skipped, Target};
pub(crate) use outcome::{TrackedResponder, TrackedResults};
pub use status::{PollState, RemoteStatus};

//! What every actor of one engine shares: its clock, its randomness and the current
//! references to the engine's long-lived actors (republished whenever one restarts).

use std::sync::Arc;

use ractor::ActorRef;
use tokio::sync::watch;

use crate::clock::{Clock, Randomness};
use crate::limiter::LimiterMsg;
use crate::remotes::RemotesMsg;
use crate::rotation::RotationMsg;
use crate::scheduler::SchedulerMsg;
use crate::stats::PollStats;
use crate::storage::StorageMsg;

/// The clock, randomness and poll counters of one engine.
#[derive(Debug, Clone)]
pub struct Env {
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
    /// Random draws.
    pub rng: Arc<dyn Randomness>,
    /// Poll counters.
    pub stats: Arc<PollStats>,
}

/// The running incarnation of each long-lived actor, as last published by the supervisor.
#[derive(Debug, Clone, Default)]
pub struct Refs {
    /// The rate limiter.
    pub limiter: Option<ActorRef<LimiterMsg>>,
    /// The storage writer.
    pub storage: Option<ActorRef<StorageMsg>>,
    /// The supervisor of the pollers.
    pub remotes: Option<ActorRef<RemotesMsg>>,
    /// The scheduler.
    pub scheduler: Option<ActorRef<SchedulerMsg>>,
    /// The housekeeping timer.
    pub rotation: Option<ActorRef<RotationMsg>>,
}

/// Read side of the published references.
pub type RefsRx = watch::Receiver<Refs>;

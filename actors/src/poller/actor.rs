//! The Poller actor: one per remote. It runs each collection as a short pipeline of
//! messages — per-connection delay, lease, fetch in a spawned task, store (see
//! [`pipeline`](super::pipeline)) — so its mailbox stays open: status and stop are
//! answered while a request is in flight. It owns the remote's cursor, backoff and status.

use std::fmt;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::jobs::{JobKind, Step};
use super::outcome::{TrackedResponder, Waiter};
use super::pipeline::PollerState;
use crate::config::{CollectionSettings, RemoteConfig};
use crate::env::Env;
use crate::limiter::{Lane, LimiterRef};
use crate::storage::{StorageMsg, Stores};
use crate::supervisor::RemotesMsg;

/// Messages of a Poller.
pub(crate) enum PollerMsg {
    /// The scheduler (lane Scheduled) or a trigger (lane Manual) asks for a metric
    /// collection; the waiter, if any, hears when it is stored or why not.
    Collect {
        /// Which queue the lease request waits in.
        lane: Lane,
        /// Run even while in backoff (an explicit trigger of this remote).
        bypass_backoff: bool,
        /// Who waits for the outcome.
        waiter: Option<Waiter>,
    },
    /// A read of the API asks for fresh data (see [`FanOut::Freshen`](crate::supervisor::FanOut));
    /// the waiter hears when it is stored or why not.
    Freshen {
        /// Who waits for the outcome.
        waiter: Option<Waiter>,
    },
    /// The scheduler or a refresh asks for the task list; the waiter hears when merged.
    FetchTasks {
        /// Only the currently running tasks (the 30 s check).
        running_only: bool,
        /// Wait for the metric poll under way and follow it on its connection.
        after_metrics: bool,
        /// Which queue the lease request waits in.
        lane: Lane,
        /// Who waits for the outcome.
        waiter: Option<Waiter>,
    },
    /// The scheduler asks for the state of tracked tasks; answered through `respond`.
    PollTracked {
        /// The UPIDs to poll.
        upids: Vec<String>,
        /// Receives the results.
        respond: TrackedResponder,
    },
    /// Internal pipeline step of job `seq` of `kind`.
    Step {
        /// Which job slot.
        kind: JobKind,
        /// The job's number; steps of a superseded job are ignored.
        seq: u64,
        /// What happened.
        step: Step,
    },
    /// Self-sent when the backoff delay numbered `seq` has passed.
    RetryDue {
        /// Steps of an older backoff are ignored.
        seq: u64,
    },
    /// A reload changed the collection settings.
    Reconfigure(CollectionSettings),
    /// The fleet answered again after a local outage: forget the failures and run a
    /// pending retry now.
    ResetBackoff,
    /// Shutdown: start no new job; reply once nothing is in flight.
    Drain(RpcReplyPort<()>),
}

impl fmt::Debug for PollerMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollerMsg::Collect { lane, .. } => write!(f, "Collect({lane:?})"),
            PollerMsg::Freshen { .. } => f.write_str("Freshen"),
            PollerMsg::FetchTasks { running_only, .. } => {
                write!(f, "FetchTasks(running_only={running_only})")
            }
            PollerMsg::PollTracked { upids, .. } => write!(f, "PollTracked({})", upids.len()),
            PollerMsg::Step { kind, seq, step } => write!(f, "Step({kind:?}#{seq}: {step:?})"),
            PollerMsg::RetryDue { seq } => write!(f, "RetryDue({seq})"),
            PollerMsg::Reconfigure(_) => f.write_str("Reconfigure"),
            PollerMsg::ResetBackoff => f.write_str("ResetBackoff"),
            PollerMsg::Drain(_) => f.write_str("Drain"),
        }
    }
}

/// Whether a new poller collects at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartCollect {
    /// Collect immediately (a remote just added by a reload).
    Now,
    /// Collect only when the stored data is older than one interval (start-up).
    IfOverdue,
}

/// Start arguments of a Poller.
#[derive(Debug)]
pub(crate) struct PollerArgs {
    /// The remote.
    pub remote: RemoteConfig,
    /// Collection timing.
    pub settings: CollectionSettings,
    /// Clock and randomness.
    pub env: Env,
    /// The limiter to lease connections from.
    pub limiter: LimiterRef,
    /// The storage writer.
    pub storage: ActorRef<StorageMsg>,
    /// The stores, read for the start cursor and task cutoffs.
    pub stores: Stores,
    /// Where status updates go.
    pub parent: ActorRef<RemotesMsg>,
    /// How often this remote's poller was restarted before.
    pub restarts: u32,
    /// Whether to collect at once.
    pub start: StartCollect,
}

/// The Poller actor.
#[derive(Debug, Default)]
pub(crate) struct Poller;

impl Actor for Poller {
    type Msg = PollerMsg;
    type State = PollerState;
    type Arguments = PollerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: PollerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(PollerState::new(&myself, args))
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PollerMsg::Collect {
                lane,
                bypass_backoff,
                waiter,
            } => {
                #[cfg(feature = "fault-injection")]
                state.maybe_panic();
                state.collect(&myself, lane, bypass_backoff, waiter)
            }
            PollerMsg::Freshen { waiter } => state.freshen(&myself, waiter),
            PollerMsg::FetchTasks {
                running_only,
                after_metrics,
                lane,
                waiter,
            } => state.fetch_tasks(&myself, running_only, after_metrics, lane, waiter),
            PollerMsg::PollTracked { upids, respond } => {
                state.poll_tracked(&myself, upids, respond)
            }
            PollerMsg::Step { kind, seq, step } => state.step(&myself, kind, seq, step)?,
            PollerMsg::RetryDue { seq } => state.retry_due(&myself, seq),
            PollerMsg::Reconfigure(settings) => state.reconfigure(settings),
            PollerMsg::ResetBackoff => state.reset_backoff(&myself),
            PollerMsg::Drain(reply) => state.drain(reply),
        }
        Ok(())
    }
}

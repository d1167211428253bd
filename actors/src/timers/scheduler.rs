//! The Scheduler actor: turns time into work. Metric cycles start on wall-clock
//! multiples of the interval plus a random offset drawn per cycle (missed ticks are
//! skipped, not caught up); there is one such timer per distinct metric interval (the
//! collection interval and every remote's own), each starting the cycles of the remotes
//! at its interval with offsets scaled to it ([`CollectionSettings::for_interval`]); the task tick polls tracked tasks every tick, asks remotes
//! with running foreign tasks every `running_interval`, and fetches every task list
//! every `full_interval`. A tracked task that finishes triggers a task fetch of its remote.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use crate::clock::{next_aligned_tick, until_next_boundary};
use crate::config::{CollectionSettings, TaskSettings};
use crate::env::Env;
use crate::limiter::Lane;
use crate::model::{RemoteId, TaskRef, TaskState};
use crate::poller::{Target, TrackedResults};
use crate::source::ErrorClass;
use crate::storage::{HousekeepingOp, StorageMsg, Stores};
use crate::supervisor::{FanOut, RemotesMsg};

/// A tracked task its remote answers "no such task" for this many polls in a row is
/// dropped (a UPID that never existed, or one the remote has forgotten).
const GONE_AFTER: u32 = 3;

/// Messages of the Scheduler.
#[derive(Debug)]
pub(crate) enum SchedulerMsg {
    /// Self-sent at an aligned metric tick of timer generation `generation`.
    Tick {
        /// Ticks of an older timer generation are ignored.
        generation: u64,
        /// The timer's interval: whose remotes the tick is for.
        interval: Duration,
    },
    /// Self-sent after the cycle's random start offset.
    StartCycle {
        /// Cycles of an older timer generation are ignored.
        generation: u64,
        /// The remotes collected at this interval start their cycle.
        interval: Duration,
    },
    /// Self-sent every task tick.
    TaskTick {
        /// Ticks of an older timer generation are ignored.
        generation: u64,
    },
    /// The engine adds a task the manager started; replies once it is tracked and its
    /// persisting is queued with Storage, or why it was refused (a bound reached).
    Track(TaskRef, RpcReplyPort<Result<(), String>>),
    /// The engine stops tracking a task; replies whether it was tracked.
    Untrack(TaskRef, RpcReplyPort<bool>),
    /// A poller answered a tracked-task poll.
    TrackedResults(RemoteId, TrackedResults),
    /// A reload changed the timing or the set of metric intervals; the timers restart
    /// from the next aligned tick.
    Reconfigure(CollectionSettings, TaskSettings, BTreeSet<Duration>),
    /// Reply with the tracked tasks.
    Tracked(RpcReplyPort<Vec<TaskRef>>),
    /// Reply with the scheduler's counters.
    Stats(RpcReplyPort<SchedulerStats>),
    /// Shutdown: start no further cycles.
    Quiesce,
}

/// Counters of the Scheduler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Metric cycles started (of every interval).
    pub cycles: u64,
    /// Metric cycles started, per interval in seconds.
    pub cycles_by_interval: BTreeMap<u64, u64>,
    /// Wall time (Unix seconds, fractional) at which the last cycle started.
    pub last_cycle_at: Option<Duration>,
    /// Task ticks run.
    pub task_ticks: u64,
    /// Tracked tasks seen finished.
    pub tracked_finished: u64,
    /// Full task fetches that went with a metric cycle (each remote's after its poll).
    pub task_fetches_with_cycle: u64,
}

/// Start arguments of the Scheduler.
#[derive(Debug)]
pub(crate) struct SchedulerArgs {
    /// Metric timing.
    pub collection: CollectionSettings,
    /// The distinct metric intervals, one timer each.
    pub intervals: BTreeSet<Duration>,
    /// Task timing.
    pub tasks: TaskSettings,
    /// Clock and randomness.
    pub env: Env,
    /// The remote supervisor (started before the scheduler).
    pub remotes: ActorRef<RemotesMsg>,
    /// The storage writer (started before the scheduler).
    pub storage: ActorRef<StorageMsg>,
    /// The task store, read for the saved tracked tasks.
    pub stores: Stores,
}

/// State of the Scheduler.
pub(crate) struct SchedulerState {
    collection: CollectionSettings,
    intervals: BTreeSet<Duration>,
    tasks: TaskSettings,
    env: Env,
    remotes: ActorRef<RemotesMsg>,
    storage: ActorRef<StorageMsg>,
    generation: u64,
    tracked: BTreeSet<TaskRef>,
    /// Tracked tasks their remote answered "no such task" for, and how often in a row.
    missing: BTreeMap<TaskRef, u32>,
    last_running_check: Option<Instant>,
    last_full_fetch: Option<Instant>,
    quiet: bool,
    stats: SchedulerStats,
}

impl fmt::Debug for SchedulerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerState")
            .field("generation", &self.generation)
            .field("tracked", &self.tracked.len())
            .finish()
    }
}

/// The Scheduler actor.
#[derive(Debug, Default)]
pub(crate) struct Scheduler;

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SchedulerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let saved = args.stores.tasks.load_tracked();
        let mut state = SchedulerState {
            collection: args.collection,
            intervals: args.intervals,
            tasks: args.tasks,
            env: args.env,
            remotes: args.remotes,
            storage: args.storage,
            generation: 0,
            tracked: BTreeSet::new(),
            missing: BTreeMap::new(),
            last_running_check: None,
            last_full_fetch: None,
            quiet: false,
            stats: SchedulerStats::default(),
        };
        state.track_saved(saved);
        state.arm(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Tick {
                generation,
                interval,
            } => {
                if generation != state.generation || state.quiet {
                    return Ok(());
                }
                let timing = state.collection.for_interval(interval);
                let offset = state
                    .env
                    .rng
                    .between(timing.start_offset_min, timing.start_offset_max);
                myself.send_after(offset, move || SchedulerMsg::StartCycle {
                    generation,
                    interval,
                });
                state.arm_metric_tick(&myself, interval);
            }
            SchedulerMsg::StartCycle {
                generation,
                interval,
            } => {
                if generation != state.generation || state.quiet {
                    return Ok(());
                }
                state.stats.cycles += 1;
                *state
                    .stats
                    .cycles_by_interval
                    .entry(interval.as_secs())
                    .or_default() += 1;
                state.stats.last_cycle_at = Some(state.env.clock.now());
                tracing::info!(
                    cycle = state.stats.cycles,
                    interval_secs = interval.as_secs(),
                    "metric collection cycle starts"
                );
                // One timer per interval: the remotes at the collection interval are
                // every remote without one of its own.
                state.send_remotes(RemotesMsg::Run {
                    target: Target::Interval(interval),
                    job: FanOut::Metrics {
                        bypass_backoff: false,
                    },
                    lane: Lane::Scheduled,
                    wait: false,
                    reply: None,
                });
                if interval == state.collection.interval {
                    state.tasks_with_cycle(interval);
                }
            }
            SchedulerMsg::TaskTick { generation } => {
                if generation != state.generation || state.quiet {
                    return Ok(());
                }
                state.task_tick(&myself);
                let tick = state.tasks.tick;
                myself.send_after(tick, move || SchedulerMsg::TaskTick { generation });
            }
            SchedulerMsg::Track(task, reply) => {
                let _ = reply.send(state.track(task));
            }
            SchedulerMsg::Untrack(task, reply) => {
                let was = state.tracked.remove(&task);
                state.missing.remove(&task);
                if was {
                    state.save_tracked();
                }
                let _ = reply.send(was);
            }
            SchedulerMsg::TrackedResults(remote, results) => {
                state.on_tracked(remote, results);
            }
            SchedulerMsg::Reconfigure(collection, tasks, intervals) => {
                if collection != state.collection
                    || tasks != state.tasks
                    || intervals != state.intervals
                {
                    state.collection = collection;
                    state.tasks = tasks;
                    state.intervals = intervals;
                    state.arm(&myself);
                }
            }
            SchedulerMsg::Tracked(reply) => {
                let _ = reply.send(state.tracked.iter().cloned().collect());
            }
            SchedulerMsg::Stats(reply) => {
                let _ = reply.send(state.stats.clone());
            }
            SchedulerMsg::Quiesce => state.quiet = true,
        }
        Ok(())
    }
}

impl SchedulerState {
    /// Starts a new timer generation: the next aligned metric tick of every interval
    /// and the task tick.
    fn arm(&mut self, myself: &ActorRef<SchedulerMsg>) {
        self.generation += 1;
        for &interval in &self.intervals {
            self.arm_metric_tick(myself, interval);
        }
        let generation = self.generation;
        let first = until_next_boundary(self.env.clock.now(), self.tasks.tick);
        myself.send_after(first, move || SchedulerMsg::TaskTick { generation });
    }

    fn arm_metric_tick(&self, myself: &ActorRef<SchedulerMsg>, interval: Duration) {
        let generation = self.generation;
        let wait = next_aligned_tick(self.env.clock.now(), interval);
        myself.send_after(wait, move || SchedulerMsg::Tick {
            generation,
            interval,
        });
    }

    fn send_remotes(&self, msg: RemotesMsg) {
        let _ = self.remotes.send_message(msg);
    }

    /// A metric cycle starts: when every remote's task list falls due before the next
    /// one, it is fetched now, each remote's right after its metric poll, so both share
    /// the poll's kept-alive connection instead of each opening one.
    fn tasks_with_cycle(&mut self, interval: Duration) {
        let now = Instant::now();
        // The first full fetch is the task tick's (at start); cycles take over after it.
        let due_by_next_cycle = self.last_full_fetch.is_some_and(|t| {
            now.duration_since(t) + interval.min(self.tasks.full_interval)
                >= self.tasks.full_interval
        });
        if !due_by_next_cycle {
            return;
        }
        self.last_full_fetch = Some(now);
        self.last_running_check = Some(now);
        self.stats.task_fetches_with_cycle += 1;
        self.send_remotes(RemotesMsg::Run {
            target: Target::All,
            job: FanOut::Tasks {
                running_only: false,
                after_metrics: true,
            },
            lane: Lane::Scheduled,
            wait: false,
            reply: None,
        });
    }

    fn task_tick(&mut self, myself: &ActorRef<SchedulerMsg>) {
        self.stats.task_ticks += 1;
        let now = Instant::now();
        let mut by_remote: BTreeMap<RemoteId, Vec<String>> = BTreeMap::new();
        for t in &self.tracked {
            by_remote
                .entry(t.remote.clone())
                .or_default()
                .push(t.upid.clone());
        }
        for (remote, upids) in by_remote {
            let me = myself.clone();
            self.send_remotes(RemotesMsg::PollTracked {
                remote,
                upids,
                respond: Box::new(move |remote, results| {
                    let _ = me.send_message(SchedulerMsg::TrackedResults(remote, results));
                }),
            });
        }
        // When the metric cycles carry the full fetch (`tasks_with_cycle`), the tick
        // only stands in for a cycle that did not come.
        let carried = if self.collection.interval <= self.tasks.full_interval {
            self.collection.interval
        } else {
            Duration::ZERO
        };
        let full_due = self
            .last_full_fetch
            .is_none_or(|t| now.duration_since(t) >= self.tasks.full_interval + carried);
        let running_due = self
            .last_running_check
            .is_none_or(|t| now.duration_since(t) >= self.tasks.running_interval);
        if full_due {
            self.last_full_fetch = Some(now);
            self.last_running_check = Some(now);
            self.send_remotes(RemotesMsg::Run {
                target: Target::All,
                job: FanOut::Tasks {
                    running_only: false,
                    after_metrics: false,
                },
                lane: Lane::Scheduled,
                wait: false,
                reply: None,
            });
        } else if running_due {
            self.last_running_check = Some(now);
            self.send_remotes(RemotesMsg::Run {
                target: Target::All,
                job: FanOut::Tasks {
                    running_only: true,
                    after_metrics: false,
                },
                lane: Lane::Scheduled,
                wait: false,
                reply: None,
            });
        }
    }

    /// Tracks `task` unless a bound of `[tasks]` is reached.
    fn track(&mut self, task: TaskRef) -> Result<(), String> {
        if self.tracked.contains(&task) {
            return Ok(());
        }
        self.admit(&task)?;
        self.tracked.insert(task);
        self.save_tracked();
        Ok(())
    }

    /// Tracks the tasks saved by an earlier run as far as the bounds of `[tasks]`
    /// allow (they may have been lowered since, or the file edited); the rest are
    /// dropped with a warning, and the saved list then says what is tracked.
    fn track_saved(&mut self, saved: Vec<TaskRef>) {
        let (mut dropped, mut first) = (0usize, None);
        for task in saved {
            match self.admit(&task) {
                Ok(()) => {
                    self.tracked.insert(task);
                }
                Err(why) => {
                    dropped += 1;
                    first.get_or_insert(why);
                }
            }
        }
        if let Some(why) = first {
            tracing::warn!(dropped, reason = %why, "saved tracked tasks beyond the [tasks] bounds are no longer tracked");
            self.save_tracked();
        }
    }

    /// Whether one more task of `task`'s remote stays within the bounds of `[tasks]`.
    fn admit(&self, task: &TaskRef) -> Result<(), String> {
        let max = self.tasks.max_tracked as usize;
        if self.tracked.len() >= max {
            return Err(format!(
                "{max} tasks are tracked already (tasks.max_tracked); untrack one first"
            ));
        }
        let per_remote = self.tasks.max_tracked_per_remote as usize;
        let of_remote = self
            .tracked
            .iter()
            .filter(|t| t.remote == task.remote)
            .count();
        if of_remote >= per_remote {
            return Err(format!(
                "{per_remote} tasks of remote {} are tracked already \
                 (tasks.max_tracked_per_remote); untrack one first",
                task.remote
            ));
        }
        Ok(())
    }

    fn on_tracked(&mut self, remote: RemoteId, results: TrackedResults) {
        let mut finished = 0;
        let mut dropped = false;
        for (upid, state) in results {
            let key = TaskRef {
                remote: remote.clone(),
                upid: upid.clone(),
            };
            if !matches!(&state, Err(e) if e.class == ErrorClass::NotFound) {
                self.missing.remove(&key);
            }
            match state {
                Ok(TaskState::Stopped { exit_status }) => {
                    tracing::info!(remote = %remote, upid = %upid, exit_status = %exit_status,
                        "tracked task finished");
                    self.tracked.remove(&TaskRef {
                        remote: remote.clone(),
                        upid,
                    });
                    finished += 1;
                }
                Ok(TaskState::Running) => {}
                Err(err) if err.class == ErrorClass::NotFound => {
                    let count = self.missing.entry(key.clone()).or_default();
                    *count += 1;
                    if *count >= GONE_AFTER {
                        tracing::warn!(remote = %remote, upid = %upid, error = %err, answers = GONE_AFTER,
                            "tracked task does not exist on its remote; no longer tracked");
                        self.missing.remove(&key);
                        self.tracked.remove(&key);
                        dropped = true;
                    }
                }
                Err(err) => {
                    tracing::debug!(remote = %remote, upid = %upid, error = %err,
                        "tracked task poll failed; retrying next tick");
                }
            }
        }
        if dropped && finished == 0 {
            self.save_tracked();
        }
        if finished > 0 {
            self.stats.tracked_finished += finished;
            self.save_tracked();
            self.send_remotes(RemotesMsg::Run {
                target: Target::Remote(remote),
                job: FanOut::Tasks {
                    running_only: false,
                    after_metrics: false,
                },
                lane: Lane::Manual,
                wait: false,
                reply: None,
            });
        }
    }

    fn save_tracked(&self) {
        let list = self.tracked.iter().cloned().collect();
        let _ = self
            .storage
            .send_message(StorageMsg::Housekeep(HousekeepingOp::SaveTracked(list)));
    }
}

//! The Storage actor: the single writer in front of the store traits.
//!
//! Writes queue in two lanes, one per store; each lane runs one blocking operation at a
//! time in `spawn_blocking` (each store has a single writer), the lanes do not wait for
//! each other, and the actor learns of an operation's end by message, so its mailbox
//! stays open while the disk works. Writes that queued up behind a running operation are
//! stored together as one group — one journal sync for many remotes.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::live::LiveFeed;
use super::seam::{MetricStore, MetricWrite, StoreError, TaskStore, TaskWrite};
use crate::model::{Cursor, TaskRef, UnixTime};

/// Callback that receives the outcome of a metric write.
pub(crate) type MetricResponder = Box<dyn FnOnce(Result<Cursor, StoreError>) + Send>;
/// Callback that receives the outcome of a task write.
pub(crate) type TaskResponder = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The stores the engine writes to.
#[derive(Debug, Clone)]
pub(crate) struct Stores {
    /// Metric storage.
    pub(crate) metrics: Arc<dyn MetricStore>,
    /// Task cache.
    pub(crate) tasks: Arc<dyn TaskStore>,
    /// Writes waiting in Storage's lanes (kept current by the Storage actor); pollers
    /// read it to hold their connection permits while storage is behind.
    pub(crate) backlog: Arc<std::sync::atomic::AtomicUsize>,
}

/// Above this many queued writes, a poll keeps its connection permit until its batch is
/// stored, so fetching slows to the pace of storage instead of piling batches up in
/// memory (a first backfill of a large fleet is gigabytes of points).
pub(crate) const BACKLOG_LIMIT: usize = 16;

/// Start arguments of the Storage actor.
#[derive(Debug, Clone)]
pub(crate) struct StorageArgs {
    /// The stores.
    pub(crate) stores: Stores,
    /// Where stored metric batches are published.
    pub(crate) live: Arc<LiveFeed>,
}

/// Housekeeping operations, sent by the Housekeeping actor and the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HousekeepingOp {
    /// Apply the metric journal to the files.
    CommitMetrics,
    /// Fold the task journal into the active file.
    ApplyTaskJournal,
    /// Rotate the task archive if a UTC day has passed.
    RotateTasks(UnixTime),
    /// Persist the tracked-task set.
    SaveTracked(Vec<TaskRef>),
}

/// Messages of the Storage actor.
pub(crate) enum StorageMsg {
    /// A poller stores a metric batch; the responder gets the new cursor once durable.
    StoreMetrics(MetricWrite, MetricResponder),
    /// A poller merges a task batch; the responder hears when it is durable.
    StoreTasks(TaskWrite, TaskResponder),
    /// The Housekeeping actor (or the scheduler) asks for housekeeping; no reply.
    Housekeep(HousekeepingOp),
    /// Shutdown: write everything queued, commit the journals, then reply.
    Flush(RpcReplyPort<Result<(), StoreError>>),
    /// Reply with counters and the queue depth.
    Stats(RpcReplyPort<StorageStats>),
    /// Self-sent when a lane's blocking operation finished, or with the panic text if
    /// the store panicked (the actor then fails and its supervisor restarts it).
    Done(WriteLane, Result<Completion, String>),
}

impl fmt::Debug for StorageMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageMsg::StoreMetrics(w, _) => write!(f, "StoreMetrics({})", w.remote),
            StorageMsg::StoreTasks(w, _) => write!(f, "StoreTasks({})", w.remote),
            StorageMsg::Housekeep(h) => write!(f, "Housekeep({h:?})"),
            StorageMsg::Flush(_) => f.write_str("Flush"),
            StorageMsg::Stats(_) => f.write_str("Stats"),
            StorageMsg::Done(lane, _) => write!(f, "Done({lane:?})"),
        }
    }
}

/// Counters of the Storage actor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Points handed to the metric store.
    pub points_stored: u64,
    /// Metric write groups (journal syncs).
    pub metric_groups: u64,
    /// Task batches merged.
    pub task_batches: u64,
    /// Operations waiting behind the running ones.
    pub queue_depth: usize,
    /// The most operations that ever waited at once.
    pub peak_queue_depth: usize,
    /// Failed store operations.
    pub errors: u64,
    /// The newest failure of a store that has not written successfully since (cleared
    /// when writing works again): the daemon shows it as `storage_error`.
    pub last_error: Option<String>,
}

enum Op {
    Metrics(MetricWrite, MetricResponder),
    Tasks(TaskWrite, TaskResponder),
    Housekeep(HousekeepingOp),
    Flush(Arc<FlushJoin>),
}

/// The two writers: each store has one operation in flight at a time, and the stores do
/// not wait for each other (a large task merge does not hold up metric batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteLane {
    /// The metric store.
    Metrics = 0,
    /// The task cache.
    Tasks = 1,
}

/// A flush spans both lanes; the reply goes out when the second part is done.
struct FlushJoin {
    reply: std::sync::Mutex<Option<RpcReplyPort<Result<(), StoreError>>>>,
    result: std::sync::Mutex<Result<(), StoreError>>,
    remaining: std::sync::atomic::AtomicUsize,
}

impl FlushJoin {
    fn part_done(&self, result: Result<(), StoreError>) {
        if let Err(err) = result {
            *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Err(err);
        }
        if self
            .remaining
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            let result = self
                .result
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(reply) = self.reply.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = reply.send(result);
            }
        }
    }
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Op>,
    busy: bool,
}

/// The outcome of one blocking operation.
pub(crate) struct Completion(CompletionKind);

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Completion")
    }
}

enum CompletionKind {
    Metrics(
        Vec<MetricResponder>,
        Vec<Result<Cursor, StoreError>>,
        Vec<MetricWrite>,
    ),
    Tasks(Vec<TaskResponder>, Vec<Result<(), StoreError>>),
    Housekeep(HousekeepingOp, Result<(), StoreError>),
    Flush(Arc<FlushJoin>, Result<(), StoreError>),
}

/// State of the Storage actor.
pub(crate) struct StorageState {
    stores: Stores,
    live: Arc<LiveFeed>,
    lanes: [Lane; 2],
    /// Each lane's failure since its last success.
    lane_errors: [Option<String>; 2],
    stats: StorageStats,
}

impl fmt::Debug for StorageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageState")
            .field("metric_queue", &self.lanes[0].queue.len())
            .field("task_queue", &self.lanes[1].queue.len())
            .finish()
    }
}

/// The Storage actor.
#[derive(Debug, Default)]
pub(crate) struct Storage;

/// The most writes stored as one group.
const MAX_GROUP: usize = 4096;

impl Actor for Storage {
    type Msg = StorageMsg;
    type State = StorageState;
    type Arguments = StorageArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: StorageArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(StorageState {
            stores: args.stores,
            live: args.live,
            lanes: Default::default(),
            lane_errors: Default::default(),
            stats: StorageStats::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StorageMsg::StoreMetrics(w, r) => state.push(WriteLane::Metrics, Op::Metrics(w, r)),
            StorageMsg::StoreTasks(w, r) => state.push(WriteLane::Tasks, Op::Tasks(w, r)),
            StorageMsg::Housekeep(h) => {
                let lane = match h {
                    HousekeepingOp::CommitMetrics => WriteLane::Metrics,
                    _ => WriteLane::Tasks,
                };
                state.push(lane, Op::Housekeep(h));
            }
            StorageMsg::Flush(reply) => {
                let join = Arc::new(FlushJoin {
                    reply: std::sync::Mutex::new(Some(reply)),
                    result: std::sync::Mutex::new(Ok(())),
                    remaining: std::sync::atomic::AtomicUsize::new(2),
                });
                state.push(WriteLane::Metrics, Op::Flush(join.clone()));
                state.push(WriteLane::Tasks, Op::Flush(join));
            }
            StorageMsg::Stats(reply) => {
                let mut stats = state.stats.clone();
                stats.queue_depth = state.lanes.iter().map(|l| l.queue.len()).sum();
                let _ = reply.send(stats);
            }
            StorageMsg::Done(lane, Ok(Completion(kind))) => {
                state.lanes[lane as usize].busy = false;
                state.complete(lane, kind);
            }
            StorageMsg::Done(_, Err(panic)) => {
                return Err(format!("a store operation panicked: {panic}").into());
            }
        }
        for lane in [WriteLane::Metrics, WriteLane::Tasks] {
            if !state.lanes[lane as usize].busy {
                state.start_next(&myself, lane);
            }
        }
        let queued: usize = state.lanes.iter().map(|l| l.queue.len()).sum();
        state.stats.peak_queue_depth = state.stats.peak_queue_depth.max(queued);
        state
            .stores
            .backlog
            .store(queued, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

impl StorageState {
    fn push(&mut self, lane: WriteLane, op: Op) {
        self.lanes[lane as usize].queue.push_back(op);
    }

    fn complete(&mut self, lane: WriteLane, kind: CompletionKind) {
        let mut failure = None;
        match kind {
            CompletionKind::Metrics(responders, results, writes) => {
                self.stats.metric_groups += 1;
                for ((respond, result), write) in responders.into_iter().zip(results).zip(writes) {
                    match &result {
                        Ok(cursor) => {
                            self.stats.points_stored += write.batch.len() as u64;
                            self.live
                                .publish(write.remote, Arc::new(write.batch), *cursor);
                        }
                        Err(err) => {
                            self.stats.errors += 1;
                            failure = Some(format!("storing metrics of {}: {err}", write.remote));
                        }
                    }
                    respond(result);
                }
            }
            CompletionKind::Tasks(responders, results) => {
                for (respond, result) in responders.into_iter().zip(results) {
                    match &result {
                        Ok(()) => self.stats.task_batches += 1,
                        Err(err) => {
                            self.stats.errors += 1;
                            failure = Some(format!("storing tasks: {err}"));
                        }
                    }
                    respond(result);
                }
            }
            CompletionKind::Housekeep(op, result) => {
                if let Err(err) = result {
                    self.stats.errors += 1;
                    tracing::error!(operation = ?op, error = %err, "storage housekeeping failed");
                    failure = Some(format!("{op:?}: {err}"));
                }
            }
            CompletionKind::Flush(join, result) => {
                if let Err(err) = &result {
                    failure = Some(format!("flushing: {err}"));
                }
                join.part_done(result)
            }
        }
        self.lane_errors[lane as usize] = failure;
        self.stats.last_error = self.lane_errors.iter().flatten().last().cloned();
    }

    fn start_next(&mut self, myself: &ActorRef<StorageMsg>, lane: WriteLane) {
        let queue = &mut self.lanes[lane as usize].queue;
        let Some(first) = queue.pop_front() else {
            return;
        };
        let stores = self.stores.clone();
        let job: Box<dyn FnOnce() -> CompletionKind + Send> = match first {
            Op::Metrics(w, r) => {
                let (writes, responders) = take_group(queue, (w, r), |op| match op {
                    Op::Metrics(w, r) => Ok((w, r)),
                    other => Err(other),
                });
                Box::new(move || {
                    let results = stores.metrics.store_metrics(&writes);
                    CompletionKind::Metrics(responders, results, writes)
                })
            }
            Op::Tasks(w, r) => {
                let (writes, responders) = take_group(queue, (w, r), |op| match op {
                    Op::Tasks(w, r) => Ok((w, r)),
                    other => Err(other),
                });
                Box::new(move || {
                    let results = stores.tasks.store_tasks(&writes);
                    CompletionKind::Tasks(responders, results)
                })
            }
            Op::Housekeep(op) => Box::new(move || {
                let result = match &op {
                    HousekeepingOp::CommitMetrics => stores.metrics.commit(),
                    HousekeepingOp::ApplyTaskJournal => stores.tasks.apply_journal(),
                    HousekeepingOp::RotateTasks(now) => stores.tasks.rotate(*now).map(|_| ()),
                    HousekeepingOp::SaveTracked(list) => stores.tasks.save_tracked(list),
                };
                CompletionKind::Housekeep(op, result)
            }),
            Op::Flush(join) => Box::new(move || {
                let result = match lane {
                    WriteLane::Metrics => stores.metrics.commit(),
                    WriteLane::Tasks => stores.tasks.apply_journal(),
                };
                CompletionKind::Flush(join, result)
            }),
        };
        self.lanes[lane as usize].busy = true;
        let me = myself.clone();
        let blocking = tokio::task::spawn_blocking(job);
        tokio::spawn(async move {
            let done = match blocking.await {
                Ok(kind) => Ok(Completion(kind)),
                Err(err) => Err(err.to_string()),
            };
            // If the actor is gone the responders are dropped and their waiters see it.
            let _ = me.send_message(StorageMsg::Done(lane, done));
        });
    }
}

/// A write group: `first` and the writes of the same kind queued right behind it (up to
/// `MAX_GROUP`), stored together under one journal sync. `same` hands an operation's
/// write back, or the operation itself when it is of another kind (which stays queued).
fn take_group<W, R>(
    queue: &mut VecDeque<Op>,
    first: (W, R),
    same: impl Fn(Op) -> Result<(W, R), Op>,
) -> (Vec<W>, Vec<R>) {
    let (mut writes, mut responders) = (vec![first.0], vec![first.1]);
    while writes.len() < MAX_GROUP {
        let Some(op) = queue.pop_front() else { break };
        match same(op) {
            Ok((w, r)) => {
                writes.push(w);
                responders.push(r);
            }
            Err(other) => {
                queue.push_front(other);
                break;
            }
        }
    }
    (writes, responders)
}

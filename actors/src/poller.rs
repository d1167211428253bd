//! The Poller actor: one per remote. It runs each collection as a short pipeline of
//! messages — per-connection delay, lease, fetch in a spawned task, store — so its
//! mailbox stays open (status and stop are answered while a request is in flight). It
//! owns the remote's cursor, backoff and status.
//!
//! Three kinds of job share the pipeline: metrics, task lists, and tracked-task status
//! polls. At most one job of each kind runs; requests that arrive meanwhile are merged
//! into it or into one follow-up job.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::{CollectionSettings, RemoteConfig};
use crate::env::Env;
use crate::limiter::{Acquire, Lane, Lease, LimiterMsg};
use crate::model::{Cursor, MetricBatch, RemoteId, TaskBatch, TaskQuery};
use crate::poll::{
    CollectError, CollectOutcome, CollectResult, Skipped, TrackedResponder, TrackedResults, Waiter,
};
use crate::remotes::RemotesMsg;
use crate::source::{ErrorClass, RemoteSource, SourceError};
use crate::status::{PollState, RemoteStatus};
use crate::storage::{StorageMsg, Stores, BACKLOG_LIMIT};
use crate::store::{MetricWrite, StoreError, TaskWrite};

/// The kinds of job a poller runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Metric collection.
    Metrics,
    /// Task-list fetch.
    Tasks,
    /// Status poll of tracked tasks.
    Tracked,
}

/// What a finished fetch produced.
#[derive(Debug)]
pub enum Fetched {
    /// A metric batch.
    Metrics(Result<MetricBatch, SourceError>),
    /// A task batch and the query it answers.
    Tasks(Result<TaskBatch, SourceError>, TaskQuery),
    /// Tracked-task states.
    Tracked(TrackedResults),
    /// The source panicked; the poller fails with this text.
    Panicked(String),
}

/// One step of a job's pipeline, sent to the poller by itself, the limiter or storage.
pub enum Step {
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

/// Messages of a Poller.
pub enum PollerMsg {
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
    /// The scheduler or a refresh asks for the task list; the waiter hears when merged.
    FetchTasks {
        /// Only the currently running tasks (the 30 s check).
        running_only: bool,
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
    /// Shutdown: start no new job; reply once nothing is in flight.
    Drain(RpcReplyPort<()>),
    /// Reply with the current status.
    Status(RpcReplyPort<RemoteStatus>),
}

impl fmt::Debug for PollerMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollerMsg::Collect { lane, .. } => write!(f, "Collect({lane:?})"),
            PollerMsg::FetchTasks { running_only, .. } => {
                write!(f, "FetchTasks(running_only={running_only})")
            }
            PollerMsg::PollTracked { upids, .. } => write!(f, "PollTracked({})", upids.len()),
            PollerMsg::Step { kind, seq, step } => write!(f, "Step({kind:?}#{seq}: {step:?})"),
            PollerMsg::RetryDue { seq } => write!(f, "RetryDue({seq})"),
            PollerMsg::Reconfigure(_) => f.write_str("Reconfigure"),
            PollerMsg::Drain(_) => f.write_str("Drain"),
            PollerMsg::Status(_) => f.write_str("Status"),
        }
    }
}

/// Whether a new poller collects at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartCollect {
    /// Collect immediately (a remote just added by a reload).
    Now,
    /// Collect only when the stored data is older than one interval (start-up).
    IfOverdue,
}

/// Start arguments of a Poller.
#[derive(Debug)]
pub struct PollerArgs {
    /// The remote.
    pub remote: RemoteConfig,
    /// Collection timing.
    pub settings: CollectionSettings,
    /// Clock and randomness.
    pub env: Env,
    /// The limiter to lease connections from.
    pub limiter: ActorRef<LimiterMsg>,
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

/// Aborts the spawned fetch when the poller stops or crashes.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Delaying,
    WaitingLease,
    Fetching,
    Storing,
}

enum Work {
    Metrics,
    Tasks {
        running_only: bool,
    },
    Tracked {
        upids: Vec<String>,
        respond: TrackedResponder,
    },
}

struct Job {
    seq: u64,
    phase: Phase,
    lane: Lane,
    work: Work,
    waiters: Vec<Waiter>,
    fetch: Option<AbortOnDrop>,
    lease: Option<Lease>,
    started: Option<Instant>,
    points: usize,
}

#[derive(Default)]
struct Slot {
    current: Option<Job>,
    /// A follow-up requested while `current` was already fetching.
    next: Option<(Lane, Work, Vec<Waiter>)>,
}

/// State of a Poller.
pub struct PollerState {
    self_id: ractor::ActorId,
    source: Arc<dyn RemoteSource>,
    id: RemoteId,
    enabled: bool,
    connection_cap: u32,
    settings: CollectionSettings,
    env: Env,
    limiter: ActorRef<LimiterMsg>,
    storage: ActorRef<StorageMsg>,
    stores: Stores,
    parent: ActorRef<RemotesMsg>,
    cursor: Cursor,
    backoff: Backoff,
    retry_seq: u64,
    retry_at: Option<Instant>,
    next_seq: u64,
    slots: [Slot; 3],
    status: RemoteStatus,
    last_success_at: Option<Instant>,
    draining: Vec<RpcReplyPort<()>>,
    is_draining: bool,
}

impl fmt::Debug for PollerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollerState")
            .field("remote", &self.id)
            .field("state", &self.status.state)
            .finish()
    }
}

fn slot_index(kind: JobKind) -> usize {
    match kind {
        JobKind::Metrics => 0,
        JobKind::Tasks => 1,
        JobKind::Tracked => 2,
    }
}

/// The Poller actor.
#[derive(Debug, Default)]
pub struct Poller;

impl Actor for Poller {
    type Msg = PollerMsg;
    type State = PollerState;
    type Arguments = PollerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: PollerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let remote = args.remote;
        let cursor = args.stores.metrics.cursor(&remote.id);
        let mut status = RemoteStatus::pending(remote.id.clone(), remote.kind);
        status.restarts = args.restarts;
        status.newest_datapoint = cursor.0;
        if !remote.enabled {
            status.state = PollState::Disabled;
        }
        let state = PollerState {
            self_id: myself.get_id(),
            source: remote.source.clone(),
            id: remote.id.clone(),
            enabled: remote.enabled,
            connection_cap: remote.connection_cap,
            backoff: Backoff::new(args.settings.backoff_base, args.settings.backoff_cap),
            settings: args.settings,
            env: args.env,
            limiter: args.limiter,
            storage: args.storage,
            stores: args.stores,
            parent: args.parent,
            cursor,
            retry_seq: 0,
            retry_at: None,
            next_seq: 0,
            slots: Default::default(),
            status,
            last_success_at: None,
            draining: Vec::new(),
            is_draining: false,
        };
        state.publish();
        let overdue = match cursor.0 {
            None => true,
            Some(newest) => {
                let age = state.env.clock.now_secs() - newest;
                age >= state.settings.interval.as_secs() as i64
            }
        };
        if state.enabled && (args.start == StartCollect::Now || overdue) {
            let _ = myself.send_message(PollerMsg::Collect {
                lane: Lane::Scheduled,
                bypass_backoff: false,
                waiter: None,
            });
        }
        Ok(state)
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
            } => state.collect(&myself, lane, bypass_backoff, waiter),
            PollerMsg::FetchTasks {
                running_only,
                lane,
                waiter,
            } => {
                if let Some(skip) = state.task_skip(running_only, lane) {
                    if let Some(w) = waiter {
                        let _ = w.send(Ok(CollectOutcome::Skipped(skip)));
                    }
                    return Ok(());
                }
                state.request(
                    &myself,
                    JobKind::Tasks,
                    lane,
                    Work::Tasks { running_only },
                    waiter,
                )
            }
            PollerMsg::PollTracked { upids, respond } => state.request(
                &myself,
                JobKind::Tracked,
                Lane::Scheduled,
                Work::Tracked { upids, respond },
                None,
            ),
            PollerMsg::Step { kind, seq, step } => state.step(&myself, kind, seq, step)?,
            PollerMsg::RetryDue { seq } => {
                if seq == state.retry_seq && state.retry_at.is_some() {
                    state.retry_at = None;
                    state.status.state = PollState::Failing;
                    state.status.next_attempt = None;
                    state.request(
                        &myself,
                        JobKind::Metrics,
                        Lane::Scheduled,
                        Work::Metrics,
                        None,
                    );
                    state.publish();
                }
            }
            PollerMsg::Reconfigure(settings) => {
                state
                    .backoff
                    .reconfigure(settings.backoff_base, settings.backoff_cap);
                state.settings = settings;
            }
            PollerMsg::Drain(reply) => {
                state.is_draining = true;
                state.retry_at = None;
                state.cancel_unstarted();
                state.draining.push(reply);
                state.finish_drain_if_idle();
            }
            PollerMsg::Status(reply) => {
                let _ = reply.send(state.status.clone());
            }
        }
        Ok(())
    }
}

impl PollerState {
    fn publish(&self) {
        let _ = self
            .parent
            .send_message(RemotesMsg::StatusUpdate(self.status.clone()));
    }

    /// Why a scheduled task fetch need not run now, if it need not.
    fn task_skip(&self, running_only: bool, lane: Lane) -> Option<Skipped> {
        if !self.enabled {
            return Some(Skipped::Disabled);
        }
        if lane == Lane::Scheduled && self.retry_at.is_some() {
            // The remote is failing; its metric retries find out when it is back.
            return self
                .status
                .next_attempt
                .map(|until| Skipped::InBackoff { until });
        }
        if running_only && !self.stores.tasks.has_running(&self.id) {
            return Some(Skipped::NothingRunning);
        }
        None
    }

    fn collect(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        lane: Lane,
        bypass_backoff: bool,
        waiter: Option<Waiter>,
    ) {
        let skip = if !self.enabled {
            Some(Skipped::Disabled)
        } else if self.retry_at.is_some() && !bypass_backoff {
            self.status
                .next_attempt
                .map(|until| Skipped::InBackoff { until })
        } else if lane == Lane::Scheduled
            && self.slots[0].current.is_none()
            && self
                .last_success_at
                .is_some_and(|t| t.elapsed() < self.settings.skip_recent)
        {
            Some(Skipped::RecentlyCollected)
        } else {
            None
        };
        if let Some(skip) = skip {
            if let Some(w) = waiter {
                let _ = w.send(Ok(CollectOutcome::Skipped(skip)));
            }
            return;
        }
        if bypass_backoff && self.retry_at.take().is_some() {
            // The explicit trigger replaces the pending retry.
            self.retry_seq += 1;
            self.status.next_attempt = None;
        }
        self.request(myself, JobKind::Metrics, lane, Work::Metrics, waiter);
    }

    /// Starts a job of `kind`, or merges the request into the one running.
    fn request(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        kind: JobKind,
        lane: Lane,
        work: Work,
        waiter: Option<Waiter>,
    ) {
        if self.is_draining {
            if let Some(w) = waiter {
                let _ = w.send(Err(CollectError::Stopped));
            }
            return;
        }
        let idx = slot_index(kind);
        if let Some(job) = &mut self.slots[idx].current {
            match job.phase {
                Phase::Delaying | Phase::WaitingLease => {
                    // Not fetched yet: the request joins it, and a manual one lifts it
                    // into the priority lane.
                    job.waiters.extend(waiter);
                    if let Work::Tracked { upids, respond } = work {
                        job.work = Work::Tracked { upids, respond };
                    }
                    if lane == Lane::Manual && job.lane == Lane::Scheduled {
                        job.lane = Lane::Manual;
                        if job.phase == Phase::Delaying {
                            job.phase = Phase::WaitingLease;
                            self.acquire(myself, kind);
                        } else {
                            let _ = self.limiter.send_message(LimiterMsg::Promote {
                                holder: myself.get_id(),
                                ticket: job.seq,
                            });
                        }
                    }
                }
                Phase::Fetching | Phase::Storing => {
                    // Already under way with an older view: a follow-up job runs after it.
                    let slot = &mut self.slots[idx];
                    match &mut slot.next {
                        Some((next_lane, next_work, waiters)) => {
                            if lane == Lane::Manual {
                                *next_lane = Lane::Manual;
                            }
                            if matches!(work, Work::Tracked { .. })
                                || matches!(
                                    work,
                                    Work::Tasks {
                                        running_only: false
                                    }
                                )
                            {
                                *next_work = work;
                            }
                            waiters.extend(waiter);
                        }
                        None => slot.next = Some((lane, work, waiter.into_iter().collect())),
                    }
                }
            }
            return;
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let delay = if lane == Lane::Scheduled && kind != JobKind::Tracked {
            self.env.rng.between(
                self.settings.connection_delay_min,
                self.settings.connection_delay_max,
            )
        } else {
            Duration::ZERO
        };
        self.slots[idx].current = Some(Job {
            seq,
            phase: Phase::Delaying,
            lane,
            work,
            waiters: waiter.into_iter().collect(),
            fetch: None,
            lease: None,
            started: None,
            points: 0,
        });
        if delay.is_zero() {
            if let Some(job) = &mut self.slots[idx].current {
                job.phase = Phase::WaitingLease;
            }
            self.acquire(myself, kind);
        } else {
            myself.send_after(delay, move || PollerMsg::Step {
                kind,
                seq,
                step: Step::DelayDone,
            });
        }
    }

    fn acquire(&self, myself: &ActorRef<PollerMsg>, kind: JobKind) {
        let Some(job) = &self.slots[slot_index(kind)].current else {
            return;
        };
        let permits = match kind {
            JobKind::Tracked => 1,
            JobKind::Metrics => self.source.metric_connections(),
            JobKind::Tasks => self.source.task_connections(),
        };
        let seq = job.seq;
        let me = myself.clone();
        let _ = self.limiter.send_message(LimiterMsg::Acquire(Acquire {
            holder: myself.get_cell(),
            ticket: seq,
            remote: self.id.clone(),
            remote_cap: self.connection_cap,
            permits,
            lane: job.lane,
            grant: Box::new(move |lease| {
                let _ = me.send_message(PollerMsg::Step {
                    kind,
                    seq,
                    step: Step::Granted(lease),
                });
            }),
        }));
    }

    fn step(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        kind: JobKind,
        seq: u64,
        step: Step,
    ) -> Result<(), ActorProcessingErr> {
        let idx = slot_index(kind);
        let Some(job) = self.slots[idx].current.as_mut().filter(|j| j.seq == seq) else {
            // A step of a job that was cancelled or superseded; a stray lease returns
            // itself when dropped here.
            return Ok(());
        };
        match step {
            Step::DelayDone => {
                if job.phase == Phase::Delaying {
                    job.phase = Phase::WaitingLease;
                    self.acquire(myself, kind);
                }
            }
            Step::Granted(lease) => {
                if job.phase != Phase::WaitingLease {
                    return Ok(());
                }
                job.phase = Phase::Fetching;
                job.started = Some(Instant::now());
                // The fetch task owns the lease and returns it the moment the remote
                // has answered, without a detour through this mailbox.
                let handle = self.spawn_fetch(myself, kind, seq, lease);
                if let Some(job) = self.slots[idx].current.as_mut() {
                    job.fetch = Some(AbortOnDrop(handle));
                }
                if kind == JobKind::Metrics {
                    self.status.last_attempt = Some(self.env.clock.now_secs());
                    self.publish();
                }
            }
            Step::Fetched(fetched, lease) => {
                job.fetch = None;
                job.lease = lease;
                match fetched {
                    Fetched::Panicked(text) => {
                        return Err(format!("remote source panicked: {text}").into());
                    }
                    Fetched::Metrics(Ok(batch)) => {
                        job.phase = Phase::Storing;
                        job.points = batch.len();
                        let me = myself.clone();
                        let write = MetricWrite {
                            remote: self.id.clone(),
                            batch,
                        };
                        let _ = self.storage.send_message(StorageMsg::StoreMetrics(
                            write,
                            Box::new(move |result| {
                                let _ = me.send_message(PollerMsg::Step {
                                    kind,
                                    seq,
                                    step: Step::Stored(result.map(Some)),
                                });
                            }),
                        ));
                    }
                    Fetched::Tasks(Ok(batch), query) => {
                        job.phase = Phase::Storing;
                        job.points = batch.tasks.len();
                        let me = myself.clone();
                        let write = TaskWrite {
                            remote: self.id.clone(),
                            batch,
                            query,
                        };
                        let _ = self.storage.send_message(StorageMsg::StoreTasks(
                            write,
                            Box::new(move |result| {
                                let _ = me.send_message(PollerMsg::Step {
                                    kind,
                                    seq,
                                    step: Step::Stored(result.map(|()| None)),
                                });
                            }),
                        ));
                    }
                    Fetched::Metrics(Err(err)) | Fetched::Tasks(Err(err), _) => {
                        self.finish(myself, kind, Err(CollectError::Source(err)));
                    }
                    Fetched::Tracked(results) => {
                        if let Some(job) = self.slots[idx].current.take() {
                            if let Work::Tracked { respond, .. } = job.work {
                                respond(self.id.clone(), results);
                            }
                        }
                        self.after_job(myself, kind);
                    }
                }
            }
            Step::Stored(result) => {
                let result = result
                    .map(|cursor| CollectOutcome::Stored {
                        points: job.points,
                        cursor: cursor.unwrap_or(self.cursor),
                    })
                    .map_err(CollectError::from);
                self.finish(myself, kind, result);
            }
        }
        Ok(())
    }

    fn spawn_fetch(
        &self,
        myself: &ActorRef<PollerMsg>,
        kind: JobKind,
        seq: u64,
        lease: Lease,
    ) -> JoinHandle<()> {
        let source = self.source.clone();
        let me = myself.clone();
        let cursor = self.cursor;
        let job = self.slots[slot_index(kind)].current.as_ref();
        let work = match job.map(|j| &j.work) {
            Some(Work::Tasks { running_only }) => {
                let mut query = self
                    .stores
                    .tasks
                    .task_query(&self.id, self.env.clock.now_secs());
                query.running_only = *running_only;
                query.connections = lease.permits();
                Some(query)
            }
            _ => None,
        };
        let upids: Vec<String> = match job.map(|j| &j.work) {
            Some(Work::Tracked { upids, .. }) => upids.clone(),
            _ => Vec::new(),
        };
        let backlog = self.stores.backlog.clone();
        let span = tracing::info_span!("poll", remote = %self.id, job = ?kind, seq);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let fut = async move {
                    match kind {
                        JobKind::Metrics => Fetched::Metrics(source.fetch_metrics(cursor).await),
                        JobKind::Tasks => {
                            let query = work.unwrap_or_default();
                            Fetched::Tasks(source.list_tasks(&query).await, query)
                        }
                        JobKind::Tracked => {
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
                let held = if backlog.load(std::sync::atomic::Ordering::Relaxed) > BACKLOG_LIMIT {
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
        ))
    }

    /// Ends the current job of `kind` with `result`, updates status and backoff, answers
    /// the waiters, and starts a queued follow-up.
    fn finish(&mut self, myself: &ActorRef<PollerMsg>, kind: JobKind, result: CollectResult) {
        let Some(job) = self.slots[slot_index(kind)].current.take() else {
            return;
        };
        let now = self.env.clock.now_secs();
        match (kind, &result) {
            (JobKind::Metrics, Ok(CollectOutcome::Stored { points, cursor })) => {
                self.cursor = *cursor;
                self.backoff.reset();
                self.retry_at = None;
                self.last_success_at = Some(Instant::now());
                let s = &mut self.status;
                s.state = PollState::Ok;
                s.last_success = Some(now);
                s.consecutive_failures = 0;
                s.next_attempt = None;
                s.last_error = None;
                s.last_error_class = None;
                s.newest_datapoint = cursor.0;
                s.points_stored += *points as u64;
                let took = job.started.map(|t| t.elapsed());
                s.last_duration_ms = took.map(|d| d.as_millis() as u64);
                self.env.stats.record_ok(took);
            }
            (JobKind::Metrics, Err(err)) => {
                let class = match err {
                    CollectError::Source(e) => e.class,
                    _ => ErrorClass::Other,
                };
                self.env
                    .stats
                    .record_failure(class, job.started.map(|t| t.elapsed()));
                let delay = self.backoff.fail(class.is_persistent(), &*self.env.rng);
                self.retry_seq += 1;
                let retry_seq = self.retry_seq;
                self.retry_at = Some(Instant::now() + delay);
                let s = &mut self.status;
                s.state = PollState::Backoff;
                s.last_error = Some(err.to_string());
                s.last_error_class = Some(class);
                s.consecutive_failures = self.backoff.failures();
                s.next_attempt = Some(now + delay.as_secs_f64().ceil() as i64);
                s.last_duration_ms = job.started.map(|t| t.elapsed().as_millis() as u64);
                tracing::warn!(remote = %self.id, error = %err, failures = s.consecutive_failures,
                    retry_in_ms = delay.as_millis() as u64, "collection failed");
                if !self.is_draining {
                    myself.send_after(delay, move || PollerMsg::RetryDue { seq: retry_seq });
                }
            }
            (JobKind::Tasks, Ok(_)) => {
                self.status.tasks_last_success = Some(now);
                self.status.tasks_last_error = None;
            }
            (JobKind::Tasks, Err(err)) => {
                self.status.tasks_last_error = Some(err.to_string());
            }
            _ => {}
        }
        for w in job.waiters {
            let _ = w.send(result.clone());
        }
        self.publish();
        self.after_job(myself, kind);
    }

    fn after_job(&mut self, myself: &ActorRef<PollerMsg>, kind: JobKind) {
        let idx = slot_index(kind);
        if let Some((lane, work, waiters)) = self.slots[idx].next.take() {
            let mut waiters = waiters.into_iter();
            let first = waiters.next();
            self.request(myself, kind, lane, work, first);
            if let Some(job) = self.slots[idx].current.as_mut() {
                job.waiters.extend(waiters);
            }
        }
        self.finish_drain_if_idle();
    }

    /// Drops every job that has not reached the remote yet (shutdown).
    fn cancel_unstarted(&mut self) {
        for slot in &mut self.slots {
            if let Some((_, _, waiters)) = slot.next.take() {
                for w in waiters {
                    let _ = w.send(Err(CollectError::Stopped));
                }
            }
            if slot
                .current
                .as_ref()
                .is_some_and(|j| matches!(j.phase, Phase::Delaying | Phase::WaitingLease))
            {
                if let Some(job) = slot.current.take() {
                    let _ = self.limiter.send_message(LimiterMsg::Cancel {
                        holder: self.self_id,
                        ticket: job.seq,
                    });
                    for w in job.waiters {
                        let _ = w.send(Err(CollectError::Stopped));
                    }
                }
            }
        }
    }

    fn finish_drain_if_idle(&mut self) {
        if self.is_draining && self.slots.iter().all(|s| s.current.is_none()) {
            for reply in self.draining.drain(..) {
                let _ = reply.send(());
            }
        }
    }
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

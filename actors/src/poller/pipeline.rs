//! The job pipeline of a poller: a request becomes a job that waits its
//! [per-connection delay](PollerState::per_connection_delay), takes a lease from the rate
//! limiter, fetches in a spawned task and is stored, each step a message to the poller.
//!
//! Three kinds of job share the pipeline: metrics, task lists, and tracked-task status
//! polls. At most one job of each kind runs; requests that arrive meanwhile are merged
//! into it or into one follow-up job.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use super::actor::{PollerArgs, PollerMsg, StartCollect};
use super::backoff::Backoff;
use super::fetch::{spawn_fetch, FetchOrder, Fetched, Request};
use super::jobs::{slot_index, JobKind, JobQueue, Phase, PollJob, Step, Work};
use super::outcome::{
    CollectError, CollectOutcome, CollectResult, Skipped, TrackedResponder, Waiter,
};
use super::status::{PollState, RemoteStatus};

mod permits;
use crate::config::CollectionSettings;
use crate::env::Env;
use crate::limiter::{Lane, Lease, LimiterMsg, LimiterRef};
use crate::model::{Cursor, RemoteId};
use crate::source::RemoteSource;
use crate::storage::{MetricWrite, StorageMsg, Stores, TaskWrite, BACKLOG_LIMIT};
use crate::supervisor::RemotesMsg;

/// State of a Poller.
pub(crate) struct PollerState {
    self_id: ractor::ActorId,
    source: Arc<dyn RemoteSource>,
    id: RemoteId,
    enabled: bool,
    /// Whether anything uses the metrics (else they are not polled).
    metrics_used: bool,
    connection_cap: u32,
    settings: CollectionSettings,
    env: Env,
    limiter: LimiterRef,
    storage: ActorRef<StorageMsg>,
    stores: Stores,
    parent: ActorRef<RemotesMsg>,
    cursor: Cursor,
    backoff: Backoff,
    retry_seq: u64,
    retry_at: Option<Instant>,
    /// A task fetch waiting for the metric poll under way (see `fetch_tasks`): whether
    /// only the running tasks, and who waits for it.
    tasks_after_metrics: Option<(bool, Vec<Waiter>)>,
    next_seq: u64,
    slots: [JobQueue; 3],
    status: RemoteStatus,
    last_success_at: Option<Instant>,
    /// When a read last freshened this remote.
    last_freshen_at: Option<Instant>,
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

impl PollerState {
    /// Panics at the engine's injected poller rate for this remote (feature
    /// `fault-injection`).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn maybe_panic(&self) {
        if let Some(rates) = &self.env.panics {
            rates.maybe_panic(crate::fault::PanicSite::Poller, self.id.as_str());
        }
    }

    /// The state of a new incarnation: the cursor read from the store, the status
    /// published, and a first collection queued when the data is overdue (or at once).
    pub(super) fn new(myself: &ActorRef<PollerMsg>, args: PollerArgs) -> PollerState {
        let remote = args.remote;
        let cursor = args.stores.metrics.cursor(&remote.id);
        let mut status = RemoteStatus::pending(remote.id.clone(), remote.kind);
        status.restarts = args.restarts;
        status.newest_datapoint = cursor.0;
        if !remote.enabled {
            status.state = PollState::Disabled;
        } else if !remote.metrics_used {
            status.state = PollState::Unused;
        }
        let state = PollerState {
            self_id: myself.get_id(),
            source: remote.source.clone(),
            id: remote.id.clone(),
            enabled: remote.enabled,
            metrics_used: remote.metrics_used,
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
            tasks_after_metrics: None,
            next_seq: 0,
            slots: Default::default(),
            status,
            last_success_at: None,
            last_freshen_at: None,
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
        if state.enabled && state.metrics_used && (args.start == StartCollect::Now || overdue) {
            let _ = myself.send_message(PollerMsg::Collect {
                lane: Lane::Scheduled,
                bypass_backoff: false,
                waiter: None,
            });
        }
        state
    }

    /// A read asks for fresh data: collected in the manual lane unless the remote is
    /// backing off, disabled, or was freshened within the last interval — so reads can
    /// neither hammer a failing remote nor stand in for an operator's "collect now".
    pub(super) fn freshen(&mut self, myself: &ActorRef<PollerMsg>, waiter: Option<Waiter>) {
        let recent = self
            .last_freshen_at
            .is_some_and(|t| t.elapsed() < self.settings.interval);
        let skip = self
            .metrics_blocked(false)
            .or(recent.then_some(Skipped::RecentlyCollected));
        if let Some(skip) = skip {
            answer_skipped(waiter, skip);
            return;
        }
        self.last_freshen_at = Some(Instant::now());
        self.request(
            myself,
            JobKind::Metrics,
            Lane::Manual,
            Work::Metrics,
            waiter,
        );
    }

    /// A task-list fetch asked by the scheduler or a refresh. With `after_metrics`
    /// and a metric poll under way, it waits for that poll to end and then follows it
    /// at once, so both use one kept-alive connection.
    pub(super) fn fetch_tasks(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        running_only: bool,
        after_metrics: bool,
        lane: Lane,
        waiter: Option<Waiter>,
    ) {
        if let Some(skip) = self.task_skip(running_only, lane) {
            answer_skipped(waiter, skip);
            return;
        }
        if after_metrics && self.slots[slot_index(JobKind::Metrics)].current.is_some() {
            let (stashed, waiters) = self.tasks_after_metrics.get_or_insert((true, Vec::new()));
            *stashed &= running_only;
            waiters.extend(waiter);
            return;
        }
        self.request(
            myself,
            JobKind::Tasks,
            lane,
            Work::Tasks { running_only },
            waiter,
        )
    }

    /// Starts the task fetch that waited for the metric poll which just ended (unless
    /// that poll's failure now makes the remote skip it).
    fn follow_metrics_with_tasks(&mut self, myself: &ActorRef<PollerMsg>) {
        let Some((running_only, waiters)) = self.tasks_after_metrics.take() else {
            return;
        };
        if let Some(skip) = self.task_skip(running_only, Lane::Scheduled) {
            for w in waiters {
                answer_skipped(Some(w), skip.clone());
            }
            return;
        }
        let mut waiters = waiters.into_iter();
        self.request_with(
            myself,
            JobKind::Tasks,
            Lane::Scheduled,
            Work::Tasks { running_only },
            waiters.next(),
            true,
        );
        if let Some(job) = self.slots[slot_index(JobKind::Tasks)].current.as_mut() {
            job.waiters.extend(waiters);
        }
    }

    /// A status poll of tracked tasks asked by the scheduler.
    pub(super) fn poll_tracked(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        upids: Vec<String>,
        respond: TrackedResponder,
    ) {
        self.request(
            myself,
            JobKind::Tracked,
            Lane::Scheduled,
            Work::Tracked { upids, respond },
            None,
        )
    }

    /// The backoff delay numbered `seq` has passed: retry unless a newer one replaced it.
    pub(super) fn retry_due(&mut self, myself: &ActorRef<PollerMsg>, seq: u64) {
        if seq == self.retry_seq && self.retry_at.is_some() {
            self.retry_at = None;
            self.status.state = PollState::Failing;
            self.status.next_attempt = None;
            self.request(
                myself,
                JobKind::Metrics,
                Lane::Scheduled,
                Work::Metrics,
                None,
            );
            self.publish();
        }
    }

    /// The supervisor saw the fleet answer again after every remote had failed: the
    /// failures were the local network's, so the next one starts from the base again,
    /// and a retry waiting out its backoff runs now (after the per-connection delay).
    pub(super) fn reset_backoff(&mut self, myself: &ActorRef<PollerMsg>) {
        self.backoff.reset();
        if !self.is_draining {
            self.retry_due(myself, self.retry_seq);
        }
    }

    /// New collection settings from a reload; the failure count is kept.
    pub(super) fn reconfigure(&mut self, settings: CollectionSettings) {
        self.backoff
            .reconfigure(settings.backoff_base, settings.backoff_cap);
        self.settings = settings;
    }

    /// Shutdown: start nothing new, drop what has not reached the remote, and answer
    /// `reply` once nothing is in flight.
    pub(super) fn drain(&mut self, reply: RpcReplyPort<()>) {
        self.is_draining = true;
        self.retry_at = None;
        self.cancel_unstarted();
        self.draining.push(reply);
        self.finish_drain_if_idle();
    }

    /// The per-connection delay: a poll from the scheduler waits a random delay drawn
    /// from `[connection_delay_min, connection_delay_max]` before it asks for its lease,
    /// so the polls of one cycle do not all open their connections at the same instant.
    /// Manual triggers and tracked-task polls go at once.
    fn per_connection_delay(&self, lane: Lane, kind: JobKind) -> Duration {
        if lane == Lane::Scheduled && kind != JobKind::Tracked {
            self.env.rng.between(
                self.settings.connection_delay_min,
                self.settings.connection_delay_max,
            )
        } else {
            Duration::ZERO
        }
    }

    /// What the fetch of the current `kind` job asks of the remote.
    fn request_of(&self, kind: JobKind, permits: u32) -> Request {
        let work = self.slots[slot_index(kind)]
            .current
            .as_ref()
            .map(|j| &j.work);
        match (kind, work) {
            (JobKind::Tasks, Some(Work::Tasks { running_only })) => {
                let mut query = self
                    .stores
                    .tasks
                    .task_query(&self.id, self.env.clock.now_secs());
                query.running_only = *running_only;
                query.connections = permits;
                Request::Tasks(query)
            }
            (JobKind::Tasks, _) => Request::Tasks(Default::default()),
            (JobKind::Tracked, Some(Work::Tracked { upids, .. })) => {
                Request::Tracked(upids.clone())
            }
            (JobKind::Tracked, _) => Request::Tracked(Vec::new()),
            (JobKind::Metrics, _) => Request::Metrics(self.cursor),
        }
    }

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

    pub(super) fn collect(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        lane: Lane,
        bypass_backoff: bool,
        waiter: Option<Waiter>,
    ) {
        let recent = lane == Lane::Scheduled
            && self.slots[0].current.is_none()
            && self
                .last_success_at
                .is_some_and(|t| t.elapsed() < self.settings.skip_recent);
        let skip = self
            .metrics_blocked(bypass_backoff)
            .or(recent.then_some(Skipped::RecentlyCollected));
        if let Some(skip) = skip {
            answer_skipped(waiter, skip);
            return;
        }
        if bypass_backoff && self.retry_at.take().is_some() {
            // The explicit trigger replaces the pending retry.
            self.retry_seq += 1;
            self.status.next_attempt = None;
        }
        self.request(myself, JobKind::Metrics, lane, Work::Metrics, waiter);
    }

    /// Why no metric collection may start now whatever asks: the remote is disabled, or
    /// it backs off (unless `bypass_backoff`).
    fn metrics_blocked(&self, bypass_backoff: bool) -> Option<Skipped> {
        if !self.enabled {
            Some(Skipped::Disabled)
        } else if !self.metrics_used {
            Some(Skipped::Unused)
        } else if self.retry_at.is_some() && !bypass_backoff {
            self.status
                .next_attempt
                .map(|until| Skipped::InBackoff { until })
        } else {
            None
        }
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
        self.request_with(myself, kind, lane, work, waiter, false);
    }

    /// [`request`](Self::request), as the follow-up of the metric poll that just ended
    /// when `follow_up`.
    fn request_with(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        kind: JobKind,
        lane: Lane,
        work: Work,
        waiter: Option<Waiter>,
        follow_up: bool,
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
                            let ticket = job.seq;
                            if self.start_with_burst(myself, kind) {
                                // A grant racing this returns itself (the job moved on).
                                self.limiter.send(LimiterMsg::Cancel {
                                    holder: myself.get_id(),
                                    ticket,
                                });
                            } else {
                                self.limiter.send(LimiterMsg::Promote {
                                    holder: myself.get_id(),
                                    ticket,
                                });
                            }
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
        let delay = if follow_up {
            Duration::ZERO
        } else {
            self.per_connection_delay(lane, kind)
        };
        self.slots[idx].current = Some(PollJob {
            seq,
            phase: Phase::Delaying,
            lane,
            work,
            waiters: waiter.into_iter().collect(),
            fetch: None,
            lease: None,
            started: None,
            points: 0,
            follow_up,
            hand_over: false,
            permits: 0,
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

    /// The job of `kind` numbered `seq`, which waited for a lease, has `lease`: its
    /// fetch starts.
    fn start_fetch(&mut self, myself: &ActorRef<PollerMsg>, kind: JobKind, seq: u64, lease: Lease) {
        let idx = slot_index(kind);
        let Some(job) = self.slots[idx].current.as_mut() else {
            return;
        };
        job.phase = Phase::Fetching;
        job.started = Some(Instant::now());
        job.hand_over = kind == JobKind::Metrics && self.tasks_after_metrics.is_some();
        let hand_over = job.hand_over;
        // The fetch task owns the lease and returns it the moment the remote has
        // answered, without a detour through this mailbox.
        let request = self.request_of(kind, lease.permits());
        let order = FetchOrder {
            remote: self.id.clone(),
            source: self.source.clone(),
            kind,
            seq,
            request,
            backlog: self.stores.backlog.clone(),
            hand_over,
        };
        let fetch = spawn_fetch(myself, order, lease);
        if let Some(job) = self.slots[idx].current.as_mut() {
            job.fetch = Some(fetch);
        }
        if kind == JobKind::Metrics {
            self.status.last_attempt = Some(self.env.clock.now_secs());
            self.publish();
        }
    }

    pub(super) fn step(
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
                if job.phase == Phase::WaitingLease {
                    self.start_fetch(myself, kind, seq, lease);
                }
            }
            Step::Fetched(fetched, mut lease) => {
                job.fetch = None;
                if job.hand_over {
                    // The fetch brought the lease back for the waiting task fetch: that
                    // asks for its lease first and the poll's goes back after (unless
                    // storage is behind), so the limiter grants it the connection just
                    // freed, not the next remote in line. A failed poll hands nothing
                    // over (its retry makes the task fetch skip).
                    let behind = self.stores.backlog.load(Ordering::Relaxed) > BACKLOG_LIMIT;
                    if matches!(fetched, Fetched::Metrics(Ok(_))) {
                        self.follow_metrics_with_tasks(myself);
                    }
                    if !behind {
                        lease = None;
                    }
                }
                let Some(job) = self.slots[idx].current.as_mut() else {
                    return Ok(());
                };
                job.lease = lease;
                match fetched {
                    Fetched::Panicked(text) => {
                        return Err(format!("remote source panicked: {text}").into());
                    }
                    Fetched::Metrics(Ok(batch)) => {
                        job.phase = Phase::Storing;
                        job.points = batch.len();
                        self.status.future_points_dropped += batch.dropped_future;
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
                let took = job.started.map(|t| t.elapsed());
                self.status.record_stored(now, *cursor, *points, took);
                self.env.stats.record_ok(took);
            }
            (JobKind::Metrics, Err(err)) => {
                let class = err.class();
                self.env
                    .stats
                    .record_failure(class, job.started.map(|t| t.elapsed()));
                let delay = self.backoff.fail(class.is_persistent(), &*self.env.rng);
                self.retry_seq += 1;
                let retry_seq = self.retry_seq;
                self.retry_at = Some(Instant::now() + delay);
                let failures = self.backoff.failures();
                let took = job.started.map(|t| t.elapsed());
                self.status
                    .record_failure(now, err, class, failures, delay, took);
                tracing::warn!(remote = %self.id, error = %err, failures,
                    retry_in_ms = delay.as_millis() as u64, "collection failed");
                if !self.is_draining {
                    myself.send_after(delay, move || PollerMsg::RetryDue { seq: retry_seq });
                }
            }
            (JobKind::Tasks, Ok(_)) => self.status.record_tasks(now, None),
            (JobKind::Tasks, Err(err)) => self.status.record_tasks(now, Some(err)),
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
        if kind == JobKind::Metrics {
            self.follow_metrics_with_tasks(myself);
        }
        self.finish_drain_if_idle();
    }

    /// Drops every job that has not reached the remote yet (shutdown).
    fn cancel_unstarted(&mut self) {
        for w in self
            .tasks_after_metrics
            .take()
            .into_iter()
            .flat_map(|(_, ws)| ws)
        {
            let _ = w.send(Err(CollectError::Stopped));
        }
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
                    self.limiter.send(LimiterMsg::Cancel {
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

/// Tells a waiter that its collection was not run, and why.
fn answer_skipped(waiter: Option<Waiter>, skip: Skipped) {
    if let Some(w) = waiter {
        let _ = w.send(Ok(CollectOutcome::Skipped(skip)));
    }
}

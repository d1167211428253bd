//! The RemoteSupervisor: starts one Poller per remote, restarts crashed pollers
//! one-for-one with backoff within the restart intensity, gives up on a poller that
//! exceeds it (its remote shows `failed`, the rest keep running), applies config reloads
//! as a diff, fans triggers out, and keeps every remote's last reported status.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::directory::PollerDirectory;
use super::outage::{OutageWatch, Transition};
use super::restart::{ChildRecord, Decision, Exit, Restart};
use super::tree::TreeNode;
use crate::config::{CollectionSettings, RemoteConfig, SupervisionSettings};
use crate::env::Env;
use crate::hooks::{HookBus, StatusChange};
use crate::limiter::{Lane, LimiterMsg, LimiterRef};
use crate::model::RemoteId;
use crate::poller::{
    CollectError, CollectResult, PollState, Poller, PollerArgs, PollerMsg, RemoteStatus,
    StartCollect, Target, TrackedResponder,
};
use crate::storage::{StorageMsg, Stores};

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Remotes whose pollers were started.
    pub added: Vec<RemoteId>,
    /// Remotes whose pollers were stopped (their data is kept).
    pub removed: Vec<RemoteId>,
    /// Remotes whose pollers were restarted with the new config.
    pub changed: Vec<RemoteId>,
    /// Whether the timer settings changed (the scheduler reset its timers).
    pub timers_reset: bool,
}

/// Per-remote results of a trigger that was waited for.
pub type TriggerResults = Vec<(RemoteId, CollectResult)>;

/// Which job a fan-out asks of the pollers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FanOut {
    /// Metric collection.
    Metrics {
        /// Run even in backoff.
        bypass_backoff: bool,
    },
    /// Task-list fetch.
    Tasks {
        /// Only the running tasks.
        running_only: bool,
        /// Right after the remote's metric poll under way, on its kept-alive connection
        /// (at once when none is under way).
        after_metrics: bool,
    },
    /// A read asks for fresh data: metrics in the manual lane, but never in backoff and
    /// at most once per interval per remote.
    Freshen,
}

/// Messages of the RemoteSupervisor.
pub(crate) enum RemotesMsg {
    /// The engine (manual) or scheduler (scheduled) asks for a job on the target's
    /// remotes. With `reply`, answers once every addressed poller has answered;
    /// without, the job is only queued.
    Run {
        /// Which remotes.
        target: Target,
        /// Which job.
        job: FanOut,
        /// Which lane the leases wait in.
        lane: Lane,
        /// Whether `reply` waits for the results or answers once the job is queued
        /// (with an empty list).
        wait: bool,
        /// Receives the per-remote results (or an unknown-remote error at once).
        reply: Option<oneshot::Sender<Result<TriggerResults, CollectError>>>,
    },
    /// The scheduler asks one remote's poller for the state of tracked tasks.
    PollTracked {
        /// The remote.
        remote: RemoteId,
        /// The UPIDs.
        upids: Vec<String>,
        /// Receives the results.
        respond: TrackedResponder,
    },
    /// The supervisor applies a new remote list and collection settings.
    Reload {
        /// The new remote list.
        remotes: Vec<RemoteConfig>,
        /// The new collection settings.
        settings: CollectionSettings,
        /// The new restart policy.
        supervision: SupervisionSettings,
        /// Receives what changed.
        reply: RpcReplyPort<ReloadReport>,
    },
    /// A poller reports its status.
    StatusUpdate(RemoteStatus),
    /// The engine handle asks for every remote's status, in config order.
    Status(RpcReplyPort<Vec<RemoteStatus>>),
    /// The engine handle asks for one remote's status (`None`: not configured).
    RemoteStatus(RemoteId, RpcReplyPort<Option<RemoteStatus>>),
    /// Self-sent when a crashed poller's restart delay has passed.
    Restart {
        /// The remote.
        remote: RemoteId,
        /// The slot generation the delay belongs to.
        generation: u64,
    },
    /// Shutdown: pollers start nothing new; reply with the remotes still busy at the deadline.
    Drain {
        /// How long in-flight polls may take.
        grace: Duration,
        /// Receives the remotes that were cut short.
        reply: RpcReplyPort<Vec<RemoteId>>,
    },
    /// Reply with this subtree.
    Tree(RpcReplyPort<TreeNode>),
    /// Self-sent during an outage: probe the next canary remote.
    CanaryDue {
        /// The outage the timer belongs to; a timer of an ended one is ignored.
        generation: u64,
    },
}

impl fmt::Debug for RemotesMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemotesMsg::Run { target, job, .. } => write!(f, "Run({target:?}, {job:?})"),
            RemotesMsg::PollTracked { remote, .. } => write!(f, "PollTracked({remote})"),
            RemotesMsg::Reload { remotes, .. } => write!(f, "Reload({} remotes)", remotes.len()),
            RemotesMsg::StatusUpdate(s) => write!(f, "StatusUpdate({})", s.remote),
            RemotesMsg::Status(_) => f.write_str("Status"),
            RemotesMsg::RemoteStatus(id, _) => write!(f, "RemoteStatus({id})"),
            RemotesMsg::Restart { remote, .. } => write!(f, "Restart({remote})"),
            RemotesMsg::Drain { .. } => f.write_str("Drain"),
            RemotesMsg::Tree(_) => f.write_str("Tree"),
            RemotesMsg::CanaryDue { generation } => write!(f, "CanaryDue({generation})"),
        }
    }
}

/// Start arguments of the RemoteSupervisor.
#[derive(Debug)]
pub(crate) struct RemotesArgs {
    /// The remotes, in start order.
    pub remotes: Vec<RemoteConfig>,
    /// Collection timing for the pollers.
    pub settings: CollectionSettings,
    /// Restart policy for the pollers.
    pub supervision: SupervisionSettings,
    /// Clock and randomness.
    pub env: Env,
    /// The rate limiter (started before this supervisor).
    pub limiter: LimiterRef,
    /// The storage writer (started before this supervisor).
    pub storage: ActorRef<StorageMsg>,
    /// The stores (the pollers read their start cursor).
    pub stores: Stores,
    /// Where status changes are published to the hooks.
    pub hooks: Arc<HookBus>,
    /// Where the running pollers are listed for the engine handle.
    pub pollers: Arc<PollerDirectory>,
}

struct PollerSlot {
    config: RemoteConfig,
    poller: Option<ActorRef<PollerMsg>>,
    record: ChildRecord,
    status: RemoteStatus,
    failed: bool,
}

/// State of the RemoteSupervisor.
pub(crate) struct RemotesState {
    order: Vec<RemoteId>,
    slots: HashMap<RemoteId, PollerSlot>,
    by_actor: HashMap<ActorId, RemoteId>,
    settings: CollectionSettings,
    supervision: SupervisionSettings,
    env: Env,
    limiter: LimiterRef,
    storage: ActorRef<StorageMsg>,
    stores: Stores,
    hooks: Arc<HookBus>,
    pollers: Arc<PollerDirectory>,
    draining: bool,
    outage: OutageWatch,
}

impl fmt::Debug for RemotesState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotesState")
            .field("remotes", &self.order.len())
            .field("draining", &self.draining)
            .finish()
    }
}

/// The RemoteSupervisor actor.
#[derive(Debug, Default)]
pub(crate) struct RemoteSupervisor;

impl Actor for RemoteSupervisor {
    type Msg = RemotesMsg;
    type State = RemotesState;
    type Arguments = RemotesArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RemotesArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = RemotesState {
            order: Vec::new(),
            slots: HashMap::new(),
            by_actor: HashMap::new(),
            settings: args.settings,
            supervision: args.supervision,
            env: args.env,
            limiter: args.limiter,
            storage: args.storage,
            stores: args.stores,
            hooks: args.hooks,
            pollers: args.pollers,
            draining: false,
            outage: OutageWatch::default(),
        };
        // The pollers of an incarnation before this one died with it.
        state.pollers.clear();
        for remote in args.remotes {
            state.add(&myself, remote, StartCollect::IfOverdue).await?;
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
            RemotesMsg::Run {
                target,
                job,
                lane,
                wait,
                reply,
            } => state.run(target, job, lane, wait, reply),
            RemotesMsg::PollTracked {
                remote,
                upids,
                respond,
            } => {
                if let Some(p) = state.slots.get(&remote).and_then(|s| s.poller.as_ref()) {
                    let _ = p.send_message(PollerMsg::PollTracked { upids, respond });
                }
            }
            RemotesMsg::Reload {
                remotes,
                settings,
                supervision,
                reply,
            } => {
                let report = state
                    .reload(&myself, remotes, settings, supervision)
                    .await?;
                let _ = reply.send(report);
            }
            RemotesMsg::StatusUpdate(mut status) => {
                if let Some(slot) = state.slots.get_mut(&status.remote) {
                    if !slot.failed {
                        status.restarts = slot.record.restarts;
                        let before = slot.status.state;
                        slot.status = status;
                        let id = slot.status.remote.clone();
                        if slot.status.state != before {
                            state.publish(&id, Some(before), state.env.clock.now_secs());
                        }
                        state.watch(&myself, &id);
                    }
                }
            }
            RemotesMsg::RemoteStatus(id, reply) => {
                let _ = reply.send(state.slots.get(&id).map(|s| s.status.clone()));
            }
            RemotesMsg::Status(reply) => {
                let list = state
                    .order
                    .iter()
                    .filter_map(|id| state.slots.get(id).map(|s| s.status.clone()))
                    .collect();
                let _ = reply.send(list);
            }
            RemotesMsg::Restart { remote, generation } => {
                let due = state.slots.get(&remote).is_some_and(|s| {
                    s.record.generation == generation && s.poller.is_none() && !s.failed
                });
                if due && !state.draining {
                    state
                        .spawn(&myself, &remote, StartCollect::IfOverdue)
                        .await?;
                }
            }
            RemotesMsg::Drain { grace, reply } => state.drain(grace, reply),
            RemotesMsg::Tree(reply) => {
                let _ = reply.send(state.tree());
            }
            RemotesMsg::CanaryDue { generation } => state.probe_canary(&myself, generation),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, exit)) = Exit::from_event(&event) else {
            return Ok(());
        };
        state.on_child_exit(&myself, cell, exit);
        Ok(())
    }
}

impl RemotesState {
    /// Re-reads `id`'s status into the outage watch and acts on what that changed.
    fn watch(&mut self, myself: &ActorRef<RemotesMsg>, id: &RemoteId) {
        if let Some(slot) = self.slots.get(id) {
            let transition = self.outage.observe(&slot.status);
            self.act_on(myself, transition);
        }
    }

    /// Starts probing canaries when an outage begins; resets every backoff when it ends.
    fn act_on(&mut self, myself: &ActorRef<RemotesMsg>, transition: Transition) {
        match transition {
            Transition::None => {}
            Transition::Began => {
                let period = self.canary_period();
                tracing::warn!(
                    remotes = self.order.len(),
                    probe_every_ms = period.as_millis() as u64,
                    "every remote is failing: probing one at a time without backoff"
                );
                self.env.stats.record_outage();
                let generation = self.outage.generation();
                myself.send_after(period, move || RemotesMsg::CanaryDue { generation });
            }
            Transition::Ended => {
                tracing::info!(
                    "a remote answered after every remote had failed: resetting every backoff"
                );
                for slot in self.slots.values() {
                    if let Some(p) = &slot.poller {
                        let _ = p.send_message(PollerMsg::ResetBackoff);
                    }
                }
            }
        }
    }

    /// How often a canary is probed during an outage: the backoff base, at most the
    /// collection interval.
    fn canary_period(&self) -> Duration {
        self.settings.backoff_base.min(self.settings.interval)
    }

    /// Probes the next canary, unless the outage of `generation` has ended.
    fn probe_canary(&mut self, myself: &ActorRef<RemotesMsg>, generation: u64) {
        if self.draining || !self.outage.active() || self.outage.generation() != generation {
            return;
        }
        if let Some(id) = self.outage.next_canary(&self.order) {
            if let Some(p) = self.slots.get(&id).and_then(|s| s.poller.as_ref()) {
                tracing::debug!(remote = %id, "probing the canary");
                self.env.stats.record_canary_probe();
                let _ = p.send_message(PollerMsg::Collect {
                    lane: Lane::Scheduled,
                    bypass_backoff: true,
                    waiter: None,
                });
            }
        }
        let period = self.canary_period();
        myself.send_after(period, move || RemotesMsg::CanaryDue { generation });
    }

    /// Tells the hooks that `id`'s state changed from `previous`.
    fn publish(&self, id: &RemoteId, previous: Option<PollState>, now: i64) {
        if let Some(slot) = self.slots.get(id) {
            self.hooks.dispatch_status(StatusChange {
                remote: id.clone(),
                previous,
                status: Some(slot.status.clone()),
                at: now,
            });
        }
    }

    async fn add(
        &mut self,
        myself: &ActorRef<RemotesMsg>,
        config: RemoteConfig,
        start: StartCollect,
    ) -> Result<(), ActorProcessingErr> {
        let id = config.id.clone();
        let status = RemoteStatus::pending(id.clone(), config.kind);
        let now = self.env.clock.now_secs();
        self.hooks.dispatch_status(StatusChange {
            remote: id.clone(),
            previous: None,
            status: Some(status.clone()),
            at: now,
        });
        self.order.push(id.clone());
        self.slots.insert(
            id.clone(),
            PollerSlot {
                config,
                poller: None,
                record: ChildRecord::new(Restart::Permanent),
                status,
                failed: false,
            },
        );
        self.watch(myself, &id);
        self.spawn(myself, &id, start).await
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<RemotesMsg>,
        id: &RemoteId,
        start: StartCollect,
    ) -> Result<(), ActorProcessingErr> {
        let Some(slot) = self.slots.get_mut(id) else {
            return Ok(());
        };
        let args = PollerArgs {
            remote: slot.config.clone(),
            settings: self
                .settings
                .for_interval(slot.config.metric_interval(&self.settings)),
            env: self.env.clone(),
            limiter: self.limiter.clone(),
            storage: self.storage.clone(),
            stores: self.stores.clone(),
            parent: myself.clone(),
            restarts: slot.record.restarts,
            start,
        };
        let (poller, _) = Actor::spawn_linked(None, Poller, args, myself.get_cell()).await?;
        slot.record.started(poller.get_id());
        self.by_actor.insert(poller.get_id(), id.clone());
        if !self.draining {
            self.pollers.insert(id.clone(), poller.clone());
        }
        slot.poller = Some(poller);
        Ok(())
    }

    fn on_child_exit(&mut self, myself: &ActorRef<RemotesMsg>, cell: ActorCell, exit: Exit) {
        let actor = cell.get_id();
        // Whatever the exit, the limiter takes back what the poller held.
        self.limiter.send(LimiterMsg::HolderGone(actor));
        let Some(remote) = self.by_actor.remove(&actor) else {
            tracing::debug!(actor = %actor, "exit of an unknown poller ignored");
            return;
        };
        let Some(slot) = self.slots.get_mut(&remote) else {
            return;
        };
        if !slot.record.is_current(actor) {
            tracing::debug!(remote = %remote, actor = %actor, "exit of an old incarnation ignored");
            return;
        }
        slot.poller = None;
        self.pollers.remove(&remote);
        if self.draining {
            slot.record.current = None;
            return;
        }
        match slot
            .record
            .on_exit(&exit, &self.supervision, Instant::now())
        {
            Decision::Restart(delay) => {
                tracing::warn!(remote = %remote, exit = ?exit, restart_in_ms = delay.as_millis() as u64,
                    "poller exited; restarting");
                slot.status.restarts = slot.record.restarts;
                let generation = slot.record.generation;
                let remote = remote.clone();
                myself.send_after(delay, move || RemotesMsg::Restart { remote, generation });
            }
            Decision::Leave => {}
            Decision::Exhausted => {
                let text = slot
                    .record
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "exited repeatedly".into());
                tracing::error!(remote = %remote, error = %text,
                    "poller exceeded its restart intensity; giving up on this remote");
                slot.failed = true;
                let before = slot.status.state;
                slot.status.state = PollState::Failed;
                slot.status.last_error = Some(text);
                slot.status.next_attempt = None;
                slot.status.restarts = slot.record.restarts;
                let now = self.env.clock.now_secs();
                self.publish(&remote, Some(before), now);
                self.watch(myself, &remote);
            }
        }
    }

    fn run(
        &mut self,
        target: Target,
        job: FanOut,
        lane: Lane,
        wait: bool,
        reply: Option<oneshot::Sender<Result<TriggerResults, CollectError>>>,
    ) {
        let ids: Vec<RemoteId> = match target {
            Target::All => self.order.clone(),
            Target::Interval(interval) => self
                .order
                .iter()
                .filter(|id| {
                    self.slots
                        .get(*id)
                        .is_some_and(|s| s.config.metric_interval(&self.settings) == interval)
                })
                .cloned()
                .collect(),
            Target::Remote(id) => {
                if !self.slots.contains_key(&id) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(CollectError::UnknownRemote(id)));
                    }
                    return;
                }
                vec![id]
            }
        };
        let mut waits = Vec::new();
        let mut immediate = Vec::new();
        for id in ids {
            let Some(slot) = self.slots.get(&id) else {
                continue;
            };
            let (tx, rx) = if reply.is_some() && wait {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            let Some(poller) = slot.poller.as_ref().filter(|_| !self.draining) else {
                let err = if slot.failed {
                    CollectError::Failed(slot.status.last_error.clone().unwrap_or_default())
                } else if self.draining {
                    CollectError::Stopped
                } else {
                    CollectError::Restarting
                };
                immediate.push((id, Err(err)));
                continue;
            };
            let msg = match job {
                FanOut::Metrics { bypass_backoff } => PollerMsg::Collect {
                    lane,
                    bypass_backoff,
                    waiter: tx,
                },
                FanOut::Tasks {
                    running_only,
                    after_metrics,
                } => PollerMsg::FetchTasks {
                    running_only,
                    after_metrics,
                    lane,
                    waiter: tx,
                },
                FanOut::Freshen => PollerMsg::Freshen { waiter: tx },
            };
            if poller.send_message(msg).is_err() {
                immediate.push((id, Err(CollectError::Stopped)));
                continue;
            }
            if let Some(rx) = rx {
                waits.push((id, rx));
            }
        }
        if let Some(reply) = reply {
            if !wait {
                let _ = reply.send(Ok(immediate));
                return;
            }
            tokio::spawn(async move {
                let mut results = immediate;
                let answers = join_all(waits.into_iter().map(|(id, rx)| async move {
                    (id, rx.await.unwrap_or(Err(CollectError::Stopped)))
                }))
                .await;
                results.extend(answers);
                let _ = reply.send(Ok(results));
            });
        }
    }

    async fn reload(
        &mut self,
        myself: &ActorRef<RemotesMsg>,
        remotes: Vec<RemoteConfig>,
        settings: CollectionSettings,
        supervision: SupervisionSettings,
    ) -> Result<ReloadReport, ActorProcessingErr> {
        // `timers_reset` is the supervisor's to fill in: it also knows the task timers.
        let mut report = ReloadReport::default();
        if settings != self.settings {
            for slot in self.slots.values() {
                if let Some(p) = &slot.poller {
                    let own = settings.for_interval(slot.config.metric_interval(&settings));
                    let _ = p.send_message(PollerMsg::Reconfigure(own));
                }
            }
        }
        self.settings = settings;
        self.supervision = supervision;
        let wanted: BTreeMap<RemoteId, RemoteConfig> =
            remotes.iter().map(|r| (r.id.clone(), r.clone())).collect();
        // Removed: stop gracefully; the stores keep their data.
        for id in self.order.clone() {
            if !wanted.contains_key(&id) {
                self.stop_slot(&id).await;
                let before = self.slots.remove(&id).map(|s| s.status.state);
                let transition = self.outage.forget(&id);
                self.act_on(myself, transition);
                self.hooks.dispatch_status(StatusChange {
                    remote: id.clone(),
                    previous: before,
                    status: None,
                    at: self.env.clock.now_secs(),
                });
                report.removed.push(id);
            }
        }
        self.order.retain(|id| wanted.contains_key(id));
        for remote in remotes {
            let id = remote.id.clone();
            match self.slots.get_mut(&id) {
                None => {
                    self.add(myself, remote, StartCollect::Now).await?;
                    report.added.push(id);
                }
                Some(slot) if slot.config.differs_from(&remote) || slot.failed => {
                    slot.config = remote;
                    self.stop_slot(&id).await;
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.failed = false;
                        slot.record = ChildRecord::new(Restart::Permanent);
                        let before = slot.status.state;
                        slot.status = RemoteStatus::pending(id.clone(), slot.config.kind);
                        if before != PollState::Pending {
                            let now = self.env.clock.now_secs();
                            self.publish(&id, Some(before), now);
                        }
                    }
                    self.watch(myself, &id);
                    self.spawn(myself, &id, StartCollect::Now).await?;
                    report.changed.push(id);
                }
                Some(slot) => {
                    // Unchanged identity; a new source object (same revision) is not a change.
                    slot.config.source = remote.source;
                }
            }
        }
        Ok(report)
    }

    async fn stop_slot(&mut self, id: &RemoteId) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        // Mark the incarnation as no longer current so its exit is not restarted.
        slot.record.current = None;
        self.pollers.remove(id);
        if let Some(poller) = slot.poller.take() {
            self.by_actor.remove(&poller.get_id());
            let timeout = self.supervision.stop_timeout;
            if poller
                .stop_and_wait(Some("removed by reload".into()), Some(timeout))
                .await
                .is_err()
            {
                poller.kill();
            }
        }
    }

    fn drain(&mut self, grace: Duration, reply: RpcReplyPort<Vec<RemoteId>>) {
        self.draining = true;
        // From now on every trigger hears from this supervisor that it is stopping.
        self.pollers.clear();
        let pollers: Vec<(RemoteId, ActorRef<PollerMsg>)> = self
            .order
            .iter()
            .filter_map(|id| {
                let p = self.slots.get(id)?.poller.clone()?;
                Some((id.clone(), p))
            })
            .collect();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + grace;
            let waits = pollers.into_iter().map(|(id, p)| async move {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let done =
                    tokio::time::timeout(remaining, async { ractor::call!(p, PollerMsg::Drain) })
                        .await;
                match done {
                    Ok(Ok(())) => None,
                    _ => Some(id),
                }
            });
            let cut: Vec<RemoteId> = join_all(waits).await.into_iter().flatten().collect();
            let _ = reply.send(cut);
        });
    }

    fn tree(&self) -> TreeNode {
        let children = self
            .order
            .iter()
            .filter_map(|id| self.slots.get(id))
            .map(|slot| TreeNode {
                name: format!("poller:{}", slot.config.id),
                state: if slot.failed {
                    "failed"
                } else if slot.poller.is_some() {
                    "running"
                } else {
                    "restarting"
                }
                .to_string(),
                restarts: slot.record.restarts,
                last_error: slot.record.last_error.clone(),
                children: Vec::new(),
            })
            .collect();
        TreeNode {
            name: "remote_supervisor".into(),
            state: if self.draining { "draining" } else { "running" }.into(),
            restarts: 0,
            last_error: None,
            children,
        }
    }
}

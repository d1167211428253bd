//! The engine's top Supervisor: starts the RateLimiter, Storage, Housekeeping,
//! RemoteSupervisor, Scheduler and the hook supervisor in that order, handing each the references of the
//! siblings started before it, and supervises them rest-for-one (a child that restarts
//! takes every later child with it, since those hold its reference). It publishes the
//! running references for the engine handle alone. A child
//! that exceeds the restart intensity is escalated: the supervisor fails, and its own
//! parent (the embedding application, if it gave one) receives the failure.
//!
//! It also applies reloads to each child and runs the bounded shutdown: stop the
//! timers, drain in-flight polls within the grace period, flush the stores, stop the
//! children in reverse start order.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::directory::PollerDirectory;
use super::remote_supervisor::{ReloadReport, RemoteSupervisor, RemotesArgs, RemotesMsg};
use super::restart::{ChildRecord, Decision, Exit, Restart};
use super::tree::TreeNode;
use crate::config::EngineConfig;
use crate::env::Env;
use crate::hooks::{HookBus, HookSupervisor, HooksArgs, HooksMsg};
use crate::limiter::{Burst, LimiterArgs, LimiterMsg, LimiterRef, RateLimiter};
use crate::model::RemoteId;
use crate::storage::{LiveFeed, Storage, StorageArgs, StorageMsg, Stores};
use crate::timers::{
    Housekeeping, HousekeepingArgs, HousekeepingMsg, Scheduler, SchedulerArgs, SchedulerMsg,
};

/// The running incarnation of each child, as the supervisor last started it; published
/// through a watch channel that only the engine handle reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refs {
    /// The rate limiter and its burst.
    pub(crate) limiter: Option<LimiterRef>,
    /// The storage writer.
    pub(crate) storage: Option<ActorRef<StorageMsg>>,
    /// The housekeeping timer.
    pub(crate) housekeeping: Option<ActorRef<HousekeepingMsg>>,
    /// The supervisor of the pollers.
    pub(crate) remotes: Option<ActorRef<RemotesMsg>>,
    /// The scheduler.
    pub(crate) scheduler: Option<ActorRef<SchedulerMsg>>,
    /// The hook supervisor.
    pub(crate) hooks: Option<ActorRef<HooksMsg>>,
}

/// The supervisor's children, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Child {
    /// The RateLimiter.
    Limiter = 0,
    /// The Storage writer.
    Storage = 1,
    /// The Housekeeping timer (needs Storage).
    Housekeeping = 2,
    /// The RemoteSupervisor and its pollers (need the limiter and Storage).
    Remotes = 3,
    /// The Scheduler (needs the RemoteSupervisor and Storage).
    Scheduler = 4,
    /// The hook supervisor and its runners (read Storage's feed; last, so that its
    /// restart takes nothing else with it).
    Hooks = 5,
}

const CHILDREN: [Child; 6] = [
    Child::Limiter,
    Child::Storage,
    Child::Housekeeping,
    Child::Remotes,
    Child::Scheduler,
    Child::Hooks,
];

impl Child {
    fn name(self) -> &'static str {
        match self {
            Child::Limiter => "rate_limiter",
            Child::Storage => "storage",
            Child::Remotes => "remote_supervisor",
            Child::Housekeeping => "housekeeping",
            Child::Scheduler => "scheduler",
            Child::Hooks => "hooks",
        }
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Remotes whose in-flight work did not finish within the grace period.
    pub cut_short: Vec<RemoteId>,
    /// Why flushing the stores failed, if it did.
    pub flush_error: Option<String>,
    /// How long the shutdown took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Messages of the Supervisor.
#[derive(Debug)]
pub(crate) enum SupervisorMsg {
    /// Self-sent when the restart delay of `child` (and the children after it) passed.
    RestartFrom {
        /// The first child to start again.
        child: Child,
        /// Restart decisions of an older epoch are ignored.
        epoch: u64,
    },
    /// The engine handle applies a validated config; replies with what changed.
    Reload(Box<EngineConfig>, RpcReplyPort<ReloadReport>),
    /// The engine handle shuts the engine down; replies when done.
    Shutdown(Duration, RpcReplyPort<ShutdownReport>),
    /// Reply with the whole supervision tree.
    Tree(RpcReplyPort<TreeNode>),
}

/// Start arguments of the Supervisor.
#[derive(Debug)]
pub(crate) struct SupervisorArgs {
    /// The validated config.
    pub(crate) config: EngineConfig,
    /// The stores.
    pub(crate) stores: Stores,
    /// Clock and randomness.
    pub(crate) env: Env,
    /// Where the current child references are published for the engine handle.
    pub(crate) refs: watch::Sender<Refs>,
    /// Where stored batches are published (outlives Storage's restarts).
    pub(crate) live: Arc<LiveFeed>,
    /// The registered hooks (outlive the hook supervisor's restarts).
    pub(crate) hooks: Arc<HookBus>,
    /// The running poller of each remote (outlives the remote supervisor's restarts).
    pub(crate) pollers: Arc<PollerDirectory>,
}

struct ChildSlot {
    cell: Option<ActorCell>,
    record: ChildRecord,
}

/// State of the Supervisor.
pub(crate) struct SupervisorState {
    config: EngineConfig,
    stores: Stores,
    live: Arc<LiveFeed>,
    hooks: Arc<HookBus>,
    pollers: Arc<PollerDirectory>,
    env: Env,
    refs: watch::Sender<Refs>,
    running: Refs,
    slots: Vec<ChildSlot>,
    epoch: u64,
    shutting_down: bool,
}

impl fmt::Debug for SupervisorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorState")
            .field("epoch", &self.epoch)
            .field("shutting_down", &self.shutting_down)
            .finish()
    }
}

/// The top Supervisor actor.
#[derive(Debug, Default)]
pub(crate) struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            config: args.config,
            stores: args.stores,
            live: args.live,
            hooks: args.hooks,
            pollers: args.pollers,
            env: args.env,
            refs: args.refs,
            running: Refs::default(),
            slots: CHILDREN
                .iter()
                .map(|_| ChildSlot {
                    cell: None,
                    record: ChildRecord::new(Restart::Permanent),
                })
                .collect(),
            epoch: 0,
            shutting_down: false,
        };
        for child in CHILDREN {
            state.start_child(&myself, child).await?;
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
            SupervisorMsg::RestartFrom { child, epoch } => {
                if epoch != state.epoch || state.shutting_down {
                    return Ok(());
                }
                for c in CHILDREN.into_iter().skip(child as usize) {
                    if state.slots[c as usize].cell.is_none() {
                        state.start_child(&myself, c).await?;
                    }
                }
            }
            SupervisorMsg::Reload(config, reply) => {
                let report = state.reload(*config).await?;
                let _ = reply.send(report);
            }
            SupervisorMsg::Shutdown(grace, reply) => {
                let report = state.shutdown(grace).await;
                let _ = reply.send(report);
                myself.stop(Some("shutdown".into()));
            }
            SupervisorMsg::Tree(reply) => {
                let tree = state.tree().await;
                let _ = reply.send(tree);
            }
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
        let id = cell.get_id();
        let Some(index) = state.slots.iter().position(|s| s.record.is_current(id)) else {
            tracing::debug!(actor = %id, "supervision event of an old incarnation ignored");
            return Ok(());
        };
        let child = CHILDREN[index];
        state.slots[index].cell = None;
        state.unpublish(child);
        if state.shutting_down {
            state.slots[index].record.current = None;
            return Ok(());
        }
        let decision =
            state.slots[index]
                .record
                .on_exit(&exit, &state.config.supervision, Instant::now());
        match decision {
            Decision::Restart(delay) => {
                tracing::warn!(child = child.name(), exit = ?exit,
                    restart_in_ms = delay.as_millis() as u64, "engine actor exited; restarting");
                // rest_for_one: the children started after it hold its reference.
                state.stop_after(index).await;
                state.epoch += 1;
                let epoch = state.epoch;
                myself.send_after(delay, move || SupervisorMsg::RestartFrom { child, epoch });
                Ok(())
            }
            Decision::Leave => Ok(()),
            Decision::Exhausted => {
                let last = state.slots[index]
                    .record
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "exited repeatedly".into());
                tracing::error!(child = child.name(), error = %last,
                    "engine actor exceeded its restart intensity; escalating");
                Err(format!(
                    "{} exceeded its restart intensity ({} restarts in {:?}); last error: {last}",
                    child.name(),
                    state.config.supervision.max_restarts,
                    state.config.supervision.period
                )
                .into())
            }
        }
    }
}

impl SupervisorState {
    async fn start_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        child: Child,
    ) -> Result<(), ActorProcessingErr> {
        let sup = myself.get_cell();
        let cfg = &self.config;
        // rest_for_one: every sibling started before `child` is running now.
        let sibling = |name: &str| -> ActorProcessingErr {
            format!("{} must run before {} starts", name, child.name()).into()
        };
        let cell = match child {
            Child::Limiter => {
                // A burst of its own: a lease of an incarnation gone returns to that one.
                let burst = Arc::new(Burst::default());
                let args = LimiterArgs {
                    settings: cfg.limits.clone(),
                    burst: burst.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, RateLimiter, args, sup).await?;
                self.running.limiter = Some(LimiterRef {
                    actor: r.clone(),
                    burst,
                });
                r.get_cell()
            }
            Child::Storage => {
                let args = StorageArgs {
                    stores: self.stores.clone(),
                    live: self.live.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, Storage, args, sup).await?;
                self.running.storage = Some(r.clone());
                r.get_cell()
            }
            Child::Housekeeping => {
                let args = HousekeepingArgs {
                    settings: cfg.storage.clone(),
                    env: self.env.clone(),
                    storage: self
                        .running
                        .storage
                        .clone()
                        .ok_or_else(|| sibling("storage"))?,
                };
                let (r, _) = Actor::spawn_linked(None, Housekeeping, args, sup).await?;
                self.running.housekeeping = Some(r.clone());
                r.get_cell()
            }
            Child::Remotes => {
                let args = RemotesArgs {
                    remotes: cfg.remotes.clone(),
                    settings: cfg.collection.clone(),
                    supervision: cfg.supervision.clone(),
                    env: self.env.clone(),
                    limiter: self
                        .running
                        .limiter
                        .clone()
                        .ok_or_else(|| sibling("rate_limiter"))?,
                    storage: self
                        .running
                        .storage
                        .clone()
                        .ok_or_else(|| sibling("storage"))?,
                    stores: self.stores.clone(),
                    hooks: self.hooks.clone(),
                    pollers: self.pollers.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, RemoteSupervisor, args, sup).await?;
                self.running.remotes = Some(r.clone());
                r.get_cell()
            }
            Child::Scheduler => {
                let args = SchedulerArgs {
                    collection: cfg.collection.clone(),
                    intervals: cfg.metric_intervals(),
                    tasks: cfg.tasks.clone(),
                    env: self.env.clone(),
                    remotes: self
                        .running
                        .remotes
                        .clone()
                        .ok_or_else(|| sibling("remote_supervisor"))?,
                    storage: self
                        .running
                        .storage
                        .clone()
                        .ok_or_else(|| sibling("storage"))?,
                    stores: self.stores.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, Scheduler, args, sup).await?;
                self.running.scheduler = Some(r.clone());
                r.get_cell()
            }
            Child::Hooks => {
                let args = HooksArgs {
                    bus: self.hooks.clone(),
                    live: self.live.clone(),
                    supervision: cfg.supervision.clone(),
                    env: self.env.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, HookSupervisor, args, sup).await?;
                self.running.hooks = Some(r.clone());
                r.get_cell()
            }
        };
        self.refs.send_replace(self.running.clone());
        let slot = &mut self.slots[child as usize];
        slot.record.started(cell.get_id());
        slot.cell = Some(cell);
        Ok(())
    }

    fn unpublish(&mut self, child: Child) {
        let refs = &mut self.running;
        match child {
            Child::Limiter => {
                // Pollers that outlive it a moment must not take from a burst no live
                // limiter counts.
                if let Some(gone) = refs.limiter.take() {
                    gone.burst.close();
                }
            }
            Child::Storage => refs.storage = None,
            Child::Housekeeping => refs.housekeeping = None,
            Child::Remotes => refs.remotes = None,
            Child::Scheduler => refs.scheduler = None,
            Child::Hooks => refs.hooks = None,
        }
        self.refs.send_replace(self.running.clone());
    }

    /// Stops every child after `index`, last started first.
    async fn stop_after(&mut self, index: usize) {
        for i in (index + 1..CHILDREN.len()).rev() {
            self.stop_child(CHILDREN[i], "a sibling it depends on restarts")
                .await;
        }
    }

    async fn stop_child(&mut self, child: Child, reason: &str) {
        let slot = &mut self.slots[child as usize];
        // Its exit event is now stale and ignored.
        slot.record.current = None;
        if let Some(cell) = slot.cell.take() {
            let timeout = self.config.supervision.stop_timeout;
            if cell
                .stop_and_wait(Some(reason.to_string()), Some(timeout))
                .await
                .is_err()
            {
                tracing::warn!(
                    child = child.name(),
                    "child did not stop in time; killing it"
                );
                cell.kill();
            }
        }
        self.unpublish(child);
    }

    async fn reload(&mut self, config: EngineConfig) -> Result<ReloadReport, ActorProcessingErr> {
        let refs = self.running.clone();
        if let Some(limiter) = &refs.limiter {
            limiter.send(LimiterMsg::Reconfigure(config.limits.clone()));
        }
        if let Some(housekeeping) = &refs.housekeeping {
            let _ = housekeeping.send_message(HousekeepingMsg::Reconfigure(config.storage.clone()));
        }
        let mut report = match &refs.remotes {
            Some(remotes) => ractor::call!(remotes, |reply| RemotesMsg::Reload {
                remotes: config.remotes.clone(),
                settings: config.collection.clone(),
                supervision: config.supervision.clone(),
                reply,
            })?,
            None => ReloadReport::default(),
        };
        if let Some(hooks) = &refs.hooks {
            let _ = hooks.send_message(HooksMsg::Reconfigure(config.supervision.clone()));
        }
        let intervals = config.metric_intervals();
        report.timers_reset = config.collection != self.config.collection
            || config.tasks != self.config.tasks
            || intervals != self.config.metric_intervals();
        if let Some(scheduler) = &refs.scheduler {
            let _ = scheduler.send_message(SchedulerMsg::Reconfigure(
                config.collection.clone(),
                config.tasks.clone(),
                intervals,
            ));
        }
        self.config = config;
        Ok(report)
    }

    async fn shutdown(&mut self, grace: Duration) -> ShutdownReport {
        let started = Instant::now();
        self.shutting_down = true;
        let refs = self.running.clone();
        if let Some(scheduler) = &refs.scheduler {
            let _ = scheduler.send_message(SchedulerMsg::Quiesce);
        }
        let mut report = ShutdownReport::default();
        if let Some(remotes) = &refs.remotes {
            let drained = tokio::time::timeout(grace + Duration::from_millis(500), async {
                ractor::call!(remotes, |reply| RemotesMsg::Drain { grace, reply })
            })
            .await;
            report.cut_short = match drained {
                Ok(Ok(cut)) => cut,
                _ => Vec::new(),
            };
        }
        if !report.cut_short.is_empty() {
            tracing::warn!(remotes = ?report.cut_short,
                "shutdown grace period ended with these remotes' polls still in flight");
        }
        self.stop_child(Child::Scheduler, "shutdown").await;
        if let Some(remotes) = &refs.remotes {
            remotes
                .stop_children_and_wait(
                    Some("shutdown".into()),
                    Some(self.config.supervision.stop_timeout),
                )
                .await;
        }
        self.stop_child(Child::Remotes, "shutdown").await;
        self.stop_child(Child::Housekeeping, "shutdown").await;
        if let Some(storage) = &refs.storage {
            let flushed =
                tokio::time::timeout(self.config.supervision.stop_timeout.max(grace), async {
                    ractor::call!(storage, StorageMsg::Flush)
                })
                .await;
            report.flush_error = match flushed {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(err))) => Some(err.to_string()),
                Ok(Err(err)) => Some(format!("storage did not answer: {err}")),
                Err(_) => Some("flushing the stores did not finish in time".into()),
            };
        }
        // The hooks have seen every stored batch; stopping them flushes what they buffer.
        self.stop_child(Child::Hooks, "shutdown").await;
        self.stop_child(Child::Storage, "shutdown").await;
        self.stop_child(Child::Limiter, "shutdown").await;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        report
    }

    async fn tree(&self) -> TreeNode {
        let refs = self.running.clone();
        let mut children = Vec::new();
        for child in CHILDREN {
            let slot = &self.slots[child as usize];
            let mut node = TreeNode {
                name: child.name().to_string(),
                state: if slot.cell.is_some() {
                    "running"
                } else {
                    "restarting"
                }
                .to_string(),
                restarts: slot.record.restarts,
                last_error: slot.record.last_error.clone(),
                children: Vec::new(),
            };
            if child == Child::Hooks {
                if let Some(hooks) = &refs.hooks {
                    if let Ok(sub) = ractor::call_t!(hooks, HooksMsg::Tree, 2000) {
                        node.children = sub.children;
                    }
                }
            }
            if child == Child::Remotes {
                if let Some(remotes) = &refs.remotes {
                    if let Ok(sub) = ractor::call_t!(remotes, RemotesMsg::Tree, 2000) {
                        node.children = sub.children;
                        if node.state == "running" {
                            node.state = sub.state;
                        }
                    }
                }
            }
            children.push(node);
        }
        TreeNode {
            name: "supervisor".into(),
            state: if self.shutting_down {
                "stopping"
            } else {
                "running"
            }
            .into(),
            restarts: 0,
            last_error: None,
            children,
        }
    }
}

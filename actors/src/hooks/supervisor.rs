//! The hook supervisor: starts one runner per registered hook, one_for_one, restarts a
//! runner that crashed (within the restart intensity; beyond it the hook is marked
//! failed and left, never escalated — a hook cannot take the engine down), stops the
//! runners of hooks that were removed, and owns the dispatcher task that reads the
//! live feed of stored batches into the hooks' queues.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::bus::{HookBus, HookSlot};
use super::runner::{HookRunner, RunnerArgs, RunnerMsg};
use crate::config::SupervisionSettings;
use crate::env::Env;
use crate::storage::LiveFeed;
use crate::supervisor::{ChildRecord, Decision, Exit, Restart, TreeNode};

/// Messages of the hook supervisor.
#[derive(Debug)]
pub(crate) enum HooksMsg {
    /// Start runners for new hooks, stop those of removed ones; replies when done.
    Sync(Option<RpcReplyPort<()>>),
    /// Self-sent when a crashed runner's restart delay passed.
    Restart {
        /// The slot's id.
        slot: u64,
        /// Restart decisions of an older incarnation are ignored.
        generation: u64,
    },
    /// New supervision settings.
    Reconfigure(SupervisionSettings),
    /// Reply with the subtree.
    Tree(RpcReplyPort<TreeNode>),
}

/// Start arguments of the hook supervisor.
#[derive(Debug)]
pub(crate) struct HooksArgs {
    pub(crate) bus: Arc<HookBus>,
    pub(crate) live: Arc<LiveFeed>,
    pub(crate) supervision: SupervisionSettings,
    pub(crate) env: Env,
}

struct RunnerSlot {
    slot: Arc<HookSlot>,
    runner: Option<ActorRef<RunnerMsg>>,
    record: ChildRecord,
    failed: bool,
}

/// State of the hook supervisor.
pub(crate) struct HooksState {
    bus: Arc<HookBus>,
    supervision: SupervisionSettings,
    env: Env,
    runners: HashMap<u64, RunnerSlot>,
    dispatcher: JoinHandle<()>,
}

impl std::fmt::Debug for HooksState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HooksState")
            .field("runners", &self.runners.len())
            .finish()
    }
}

/// The hook supervisor actor.
#[derive(Debug, Default)]
pub(crate) struct HookSupervisor;

impl Actor for HookSupervisor {
    type Msg = HooksMsg;
    type State = HooksState;
    type Arguments = HooksArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: HooksArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Only what is stored from now on: a restart does not hand a batch twice.
        let mut feed = args.live.subscribe(Some(i64::MAX)).receiver;
        let bus = args.bus.clone();
        let dispatcher = tokio::spawn(async move {
            loop {
                match feed.recv().await {
                    Ok(stored) => bus.dispatch_batch(&stored),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(batches = n, "hooks fell behind the store feed");
                        bus.lagged(n);
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        let mut state = HooksState {
            bus: args.bus,
            supervision: args.supervision,
            env: args.env,
            runners: HashMap::new(),
            dispatcher,
        };
        state.sync(&myself).await?;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.dispatcher.abort();
        let ids: Vec<u64> = state.runners.keys().copied().collect();
        for id in ids {
            state.stop_runner(id, "hooks stopping").await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HooksMsg::Sync(reply) => {
                state.sync(&myself).await?;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            HooksMsg::Restart { slot, generation } => {
                let due = state.runners.get(&slot).is_some_and(|r| {
                    r.record.generation == generation && r.runner.is_none() && !r.failed
                });
                if due {
                    state.spawn(&myself, slot).await?;
                }
            }
            HooksMsg::Reconfigure(supervision) => state.supervision = supervision,
            HooksMsg::Tree(reply) => {
                let _ = reply.send(state.tree());
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
        let Some((&key, entry)) = state
            .runners
            .iter_mut()
            .find(|(_, r)| r.record.is_current(id))
        else {
            return Ok(());
        };
        entry.runner = None;
        let decision = entry
            .record
            .on_exit(&exit, &state.supervision, Instant::now());
        let text = entry.record.last_error.clone().unwrap_or_default();
        match decision {
            Decision::Restart(delay) => {
                tracing::warn!(hook = %entry.slot.name, exit = ?exit,
                    restart_in_ms = delay.as_millis() as u64, "hook crashed; restarting");
                entry.slot.set_state("restarting");
                entry.slot.crashed(text, entry.record.restarts);
                let generation = entry.record.generation;
                myself.send_after(delay, move || HooksMsg::Restart {
                    slot: key,
                    generation,
                });
            }
            Decision::Leave => {}
            Decision::Exhausted => {
                tracing::error!(hook = %entry.slot.name, error = %text,
                    "hook exceeded its restart intensity; it is left stopped");
                entry.failed = true;
                entry.slot.set_state("failed");
                entry.slot.crashed(text, entry.record.restarts);
            }
        }
        Ok(())
    }
}

impl HooksState {
    async fn sync(&mut self, myself: &ActorRef<HooksMsg>) -> Result<(), ActorProcessingErr> {
        let registered = self.bus.slots();
        let gone: Vec<u64> = self
            .runners
            .keys()
            .filter(|id| !registered.iter().any(|s| s.id == **id))
            .copied()
            .collect();
        for id in gone {
            self.stop_runner(id, "hook removed").await;
        }
        for slot in registered {
            if !self.runners.contains_key(&slot.id) {
                let id = slot.id;
                self.runners.insert(
                    id,
                    RunnerSlot {
                        slot,
                        runner: None,
                        record: ChildRecord::new(Restart::Permanent),
                        failed: false,
                    },
                );
                self.spawn(myself, id).await?;
            }
        }
        Ok(())
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<HooksMsg>,
        id: u64,
    ) -> Result<(), ActorProcessingErr> {
        let Some(entry) = self.runners.get_mut(&id) else {
            return Ok(());
        };
        let args = RunnerArgs {
            slot: entry.slot.clone(),
            clock: self.env.clock.clone(),
            #[cfg(feature = "fault-injection")]
            panics: self.env.panics.clone(),
        };
        let (runner, _) = Actor::spawn_linked(None, HookRunner, args, myself.get_cell()).await?;
        entry.record.started(runner.get_id());
        entry.runner = Some(runner);
        Ok(())
    }

    async fn stop_runner(&mut self, id: u64, reason: &str) {
        let Some(mut entry) = self.runners.remove(&id) else {
            return;
        };
        entry.record.current = None;
        if let Some(runner) = entry.runner.take() {
            if runner
                .stop_and_wait(
                    Some(reason.to_string()),
                    Some(self.supervision.stop_timeout),
                )
                .await
                .is_err()
            {
                tracing::warn!(hook = %entry.slot.name, "hook did not stop in time; killing it");
                runner.kill();
            }
        }
        entry.slot.set_state("stopped");
    }

    fn tree(&self) -> TreeNode {
        let mut entries: Vec<&RunnerSlot> = self.runners.values().collect();
        entries.sort_by_key(|r| r.slot.id);
        TreeNode {
            name: "hooks".into(),
            state: "running".into(),
            restarts: 0,
            last_error: None,
            children: entries
                .into_iter()
                .map(|r| TreeNode {
                    name: format!("hook:{}", r.slot.name),
                    state: if r.failed {
                        "failed"
                    } else if r.runner.is_some() {
                        "running"
                    } else {
                        "restarting"
                    }
                    .into(),
                    restarts: r.record.restarts,
                    last_error: r.record.last_error.clone(),
                    children: Vec::new(),
                })
                .collect(),
        }
    }
}

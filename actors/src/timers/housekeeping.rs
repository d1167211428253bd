//! The Housekeeping actor: the storage housekeeping cadences. It sends the metric journal
//! commit, the task journal apply and the task archive rotation check to the Storage
//! actor, each on its own aligned timer (the rotation check on the hour, so the daily
//! rotation happens within an hour after UTC midnight), and one rotation check at start.

use std::fmt;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::clock::next_aligned_tick;
use crate::config::StorageSettings;
use crate::env::Env;
use crate::storage::{HousekeepingOp, StorageMsg};

/// The cadences the Housekeeping actor keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cadence {
    /// Metric journal commit.
    Commit,
    /// Task journal apply.
    TaskJournal,
    /// Task archive rotation check.
    Rotate,
}

/// Messages of the Housekeeping actor.
#[derive(Debug)]
pub(crate) enum HousekeepingMsg {
    /// Self-sent when a cadence is due.
    Due {
        /// Which one.
        cadence: Cadence,
        /// Timers of an older generation are ignored.
        generation: u64,
    },
    /// The supervisor applies a reload that changed the cadences.
    Reconfigure(StorageSettings),
}

/// Start arguments of the Housekeeping actor.
#[derive(Debug)]
pub(crate) struct HousekeepingArgs {
    /// The cadences.
    pub settings: StorageSettings,
    /// Clock.
    pub env: Env,
    /// The storage writer (started before this actor).
    pub storage: ActorRef<StorageMsg>,
}

/// State of the Housekeeping actor.
pub(crate) struct HousekeepingState {
    settings: StorageSettings,
    env: Env,
    storage: ActorRef<StorageMsg>,
    generation: u64,
}

impl fmt::Debug for HousekeepingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HousekeepingState")
            .field("settings", &self.settings)
            .finish()
    }
}

/// The Housekeeping actor.
#[derive(Debug, Default)]
pub(crate) struct Housekeeping;

impl Actor for Housekeeping {
    type Msg = HousekeepingMsg;
    type State = HousekeepingState;
    type Arguments = HousekeepingArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: HousekeepingArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = HousekeepingState {
            settings: args.settings,
            env: args.env,
            storage: args.storage,
            generation: 1,
        };
        // A start in a new UTC day rotates at once rather than within the hour.
        state.send(HousekeepingOp::RotateTasks(state.env.clock.now_secs()));
        for cadence in [Cadence::Commit, Cadence::TaskJournal, Cadence::Rotate] {
            state.arm(&myself, cadence);
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
            HousekeepingMsg::Due {
                cadence,
                generation,
            } => {
                if generation != state.generation {
                    return Ok(());
                }
                state.send(match cadence {
                    Cadence::Commit => HousekeepingOp::CommitMetrics,
                    Cadence::TaskJournal => HousekeepingOp::ApplyTaskJournal,
                    Cadence::Rotate => HousekeepingOp::RotateTasks(state.env.clock.now_secs()),
                });
                state.arm(&myself, cadence);
            }
            HousekeepingMsg::Reconfigure(settings) => {
                if settings != state.settings {
                    state.settings = settings;
                    state.generation += 1;
                    for cadence in [Cadence::Commit, Cadence::TaskJournal, Cadence::Rotate] {
                        state.arm(&myself, cadence);
                    }
                }
            }
        }
        Ok(())
    }
}

impl HousekeepingState {
    fn send(&self, op: HousekeepingOp) {
        let _ = self.storage.send_message(StorageMsg::Housekeep(op));
    }

    fn arm(&self, myself: &ActorRef<HousekeepingMsg>, cadence: Cadence) {
        let period = match cadence {
            Cadence::Commit => self.settings.metric_commit_interval,
            Cadence::TaskJournal => self.settings.task_journal_interval,
            Cadence::Rotate => self.settings.rotation_check_interval,
        };
        let wait = next_aligned_tick(self.env.clock.now(), period);
        let generation = self.generation;
        myself.send_after(wait, move || HousekeepingMsg::Due {
            cadence,
            generation,
        });
    }
}

//! The Rotation actor: the storage housekeeping cadences. It sends the metric journal
//! commit, the task journal apply and the task archive rotation check to the Storage
//! actor, each on its own aligned timer (the rotation check on the hour, so the daily
//! rotation happens within an hour after UTC midnight), and one rotation check at start.

use std::fmt;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::clock::until_next_boundary;
use crate::config::HousekeepingSettings;
use crate::env::{Env, RefsRx};
use crate::storage::{Housekeeping, StorageMsg};

/// The cadences the Rotation actor keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Metric journal commit.
    Commit,
    /// Task journal apply.
    TaskJournal,
    /// Task archive rotation check.
    Rotate,
}

/// Messages of the Rotation actor.
#[derive(Debug)]
pub enum RotationMsg {
    /// Self-sent when a cadence is due.
    Due {
        /// Which one.
        cadence: Cadence,
        /// Timers of an older generation are ignored.
        generation: u64,
    },
    /// A reload changed the cadences.
    Reconfigure(HousekeepingSettings),
}

/// Start arguments of the Rotation actor.
#[derive(Debug)]
pub struct RotationArgs {
    /// The cadences.
    pub settings: HousekeepingSettings,
    /// Clock.
    pub env: Env,
    /// Reference to storage.
    pub refs: RefsRx,
}

/// State of the Rotation actor.
pub struct RotationState {
    settings: HousekeepingSettings,
    env: Env,
    refs: RefsRx,
    generation: u64,
}

impl fmt::Debug for RotationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotationState")
            .field("settings", &self.settings)
            .finish()
    }
}

/// The Rotation actor.
#[derive(Debug, Default)]
pub struct Rotation;

impl Actor for Rotation {
    type Msg = RotationMsg;
    type State = RotationState;
    type Arguments = RotationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RotationArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = RotationState {
            settings: args.settings,
            env: args.env,
            refs: args.refs,
            generation: 1,
        };
        // A start in a new UTC day rotates at once rather than within the hour.
        state.send(Housekeeping::RotateTasks(state.env.clock.now_secs()));
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
            RotationMsg::Due {
                cadence,
                generation,
            } => {
                if generation != state.generation {
                    return Ok(());
                }
                state.send(match cadence {
                    Cadence::Commit => Housekeeping::CommitMetrics,
                    Cadence::TaskJournal => Housekeeping::ApplyTaskJournal,
                    Cadence::Rotate => Housekeeping::RotateTasks(state.env.clock.now_secs()),
                });
                state.arm(&myself, cadence);
            }
            RotationMsg::Reconfigure(settings) => {
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

impl RotationState {
    fn send(&self, op: Housekeeping) {
        if let Some(storage) = &self.refs.borrow().storage {
            let _ = storage.send_message(StorageMsg::Housekeep(op));
        }
    }

    fn arm(&self, myself: &ActorRef<RotationMsg>, cadence: Cadence) {
        let period = match cadence {
            Cadence::Commit => self.settings.metric_commit_interval,
            Cadence::TaskJournal => self.settings.task_journal_interval,
            Cadence::Rotate => self.settings.rotation_check_interval,
        };
        let mut wait = until_next_boundary(self.env.clock.now(), period);
        if wait.is_zero() {
            wait = period;
        }
        let generation = self.generation;
        myself.send_after(wait, move || RotationMsg::Due {
            cadence,
            generation,
        });
    }
}

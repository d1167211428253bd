//! The actor that runs one hook: it drains the hook's queue one event at a time, runs
//! its ticks between events, and flushes it when stopped. A panic inside the hook fails
//! only this actor; the hook supervisor starts a new one on the same queue and object.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use super::bus::{HookEvent, HookSlot};
use crate::clock::Clock;

/// Messages of a hook runner.
#[derive(Debug)]
pub(crate) enum RunnerMsg {
    /// Events wait in the queue.
    Wake,
    /// The hook's tick is due.
    Tick,
}

/// Start arguments of a hook runner.
#[derive(Debug)]
pub(crate) struct RunnerArgs {
    pub(crate) slot: Arc<HookSlot>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Injected panics (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    pub(crate) panics: Option<Arc<crate::fault::PanicRates>>,
}

/// State of a hook runner.
#[derive(Debug)]
pub(crate) struct RunnerState {
    slot: Arc<HookSlot>,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "fault-injection")]
    panics: Option<Arc<crate::fault::PanicRates>>,
    ticks: Option<JoinHandle<()>>,
}

/// The hook runner actor.
#[derive(Debug, Default)]
pub(crate) struct HookRunner;

impl Actor for HookRunner {
    type Msg = RunnerMsg;
    type State = RunnerState;
    type Arguments = RunnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RunnerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ticks = args
            .slot
            .tick_every
            .map(|every| myself.send_interval(every, || RunnerMsg::Tick));
        args.slot.attach(myself);
        Ok(RunnerState {
            slot: args.slot,
            clock: args.clock,
            #[cfg(feature = "fault-injection")]
            panics: args.panics,
            ticks,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticks) = state.ticks.take() {
            ticks.abort();
        }
        state.slot.detach();
        state.slot.hook.lock().await.on_stop().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RunnerMsg::Wake => {
                let Some(event) = state.slot.pop() else {
                    return Ok(());
                };
                // The event is lost with the panic: a hook's queue is at most once.
                #[cfg(feature = "fault-injection")]
                if let Some(rates) = &state.panics {
                    let site = crate::fault::PanicSite::of_hook(&state.slot.name);
                    rates.maybe_panic(site, &state.slot.name);
                }
                let result = {
                    let mut hook = state.slot.hook.lock().await;
                    match &*event {
                        HookEvent::Batch(batch) => hook.on_batch(batch).await,
                        HookEvent::Status(change) => hook.on_status(change).await,
                    }
                };
                if let Err(err) = &result {
                    tracing::warn!(hook = %state.slot.name, error = %err, "hook failed on an event");
                }
                state
                    .slot
                    .handled(&event, result.err().map(|e| e.to_string()));
                // Go on draining; the wake-up that finds the queue empty ends the drain.
                let _ = myself.send_message(RunnerMsg::Wake);
            }
            RunnerMsg::Tick => {
                let now = state.clock.now_secs();
                let result = state.slot.hook.lock().await.on_tick(now).await;
                if let Err(err) = result {
                    tracing::warn!(hook = %state.slot.name, error = %err, "hook failed on its tick");
                    state.slot.tick_failed(err.to_string());
                }
            }
        }
        Ok(())
    }
}

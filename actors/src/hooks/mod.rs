//! Hooks: in-process consumers of every stored batch and every remote status change,
//! off the polling path.
//!
//! - `hook`: the [`Hook`] trait and what it is handed ([`HookBatch`] with per-second
//!   rates, [`StatusChange`]).
//! - `bus`: the registry, each hook's bounded queue (oldest dropped first, counted) and
//!   the fan-out.
//! - `rates`: counter and derive rates, computed once for all hooks.
//! - `runner`: the actor that runs one hook.
//! - `supervisor`: one_for_one over the runners, and the dispatcher reading Storage's
//!   feed.

mod bus;
mod hook;
mod rates;
mod runner;
mod supervisor;

pub(crate) use bus::HookBus;
pub use hook::{Hook, HookBatch, HookError, HookOptions, HookStatus, Sample, StatusChange};
pub(crate) use supervisor::{HookSupervisor, HooksArgs, HooksMsg};

//! The supervision tree (ractor 0.16 has no restart strategies of its own).
//!
//! - `top`: the engine's Supervisor — rest_for_one over the engine's actors, restart
//!   intensity and escalation, reload and bounded shutdown.
//! - `remote_supervisor`: one_for_one over the pollers, the reload diff, trigger fan-out
//!   and every remote's last status.
//! - `outage`: recovery after a local outage — canary probes while every remote fails,
//!   every backoff reset when one answers.
//! - `restart`: the OTP bookkeeping both use — restart types, intensity within a period,
//!   growing restart delays, stale events of an old incarnation.
//! - `tree`: the tree as the engine reports it.
//! - `directory`: the running poller of each remote, for triggers that skip the
//!   supervisor's mailbox.

mod directory;
mod outage;
mod remote_supervisor;
mod restart;
mod top;
mod tree;

pub(crate) use directory::PollerDirectory;
pub(crate) use remote_supervisor::{FanOut, RemotesMsg};
pub use remote_supervisor::{ReloadReport, TriggerResults};
pub(crate) use restart::{ChildRecord, Decision, Exit, Restart};
pub use top::ShutdownReport;
pub(crate) use top::{Refs, Supervisor, SupervisorArgs, SupervisorMsg};
pub use tree::TreeNode;

//! Everything driven by time.
//!
//! - `scheduler`: aligned metric ticks with a random start offset per cycle, and the
//!   task cadences (tracked every tick, running every 30 s, everything every 600 s).
//! - `housekeeping`: the storage cadences — metric journal commit, task journal apply,
//!   task archive rotation.

mod housekeeping;
mod scheduler;

pub(crate) use housekeeping::{Housekeeping, HousekeepingArgs, HousekeepingMsg};
pub use scheduler::SchedulerStats;
pub(crate) use scheduler::{Scheduler, SchedulerArgs, SchedulerMsg};

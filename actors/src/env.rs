//! What every actor of one engine shares: its clock, its randomness and its poll
//! counters. References to other actors are not here: each actor gets those of the
//! siblings started before it in its start arguments.

use std::sync::Arc;

use crate::clock::{Clock, Randomness};
use crate::poller::PollStats;

/// The clock, randomness and poll counters of one engine.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// Wall-clock time.
    pub(crate) clock: Arc<dyn Clock>,
    /// Random draws.
    pub(crate) rng: Arc<dyn Randomness>,
    /// Poll counters.
    pub(crate) stats: Arc<PollStats>,
    /// Injected panics (feature `fault-injection`; none unless the builder was given rates).
    #[cfg(feature = "fault-injection")]
    pub(crate) panics: Option<Arc<crate::fault::PanicRates>>,
}

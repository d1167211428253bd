//! The time and randomness seam: every timing rule of the engine reads the wall clock
//! and draws its jitter through these, so tests can pause tokio's clock and seed the
//! random numbers.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// Wall-clock time as seconds since the Unix epoch (with a fraction).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Duration;

    /// The current wall-clock time in whole seconds.
    fn now_secs(&self) -> i64 {
        self.now().as_secs() as i64
    }
}

/// A wall clock that advances with tokio's clock: the system time read once at
/// construction plus the tokio time elapsed since. Under `tokio::time::pause` it moves
/// only when the test advances time.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin_wall: Duration,
    origin: Instant,
}

impl TokioClock {
    /// Starts at the system's current time.
    pub fn system() -> Self {
        Self::starting_at(system_now())
    }

    /// Starts at a chosen wall time (tests pick one that makes alignment visible).
    pub fn starting_at(wall: Duration) -> Self {
        Self {
            origin_wall: wall,
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin_wall + self.origin.elapsed()
    }
}

/// The system's wall-clock time since the Unix epoch: the one place fleetpoll reads
/// `SystemTime`. Code that runs inside an engine reads its [`Clock`] instead, so tests
/// can move time; this is for command-line tools and for starting a clock.
pub fn system_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// [`system_now`] in whole seconds.
pub fn system_now_secs() -> i64 {
    system_now().as_secs() as i64
}

/// Random draws for offsets, delays and backoff jitter.
pub trait Randomness: Send + Sync + fmt::Debug + 'static {
    /// A uniformly drawn duration in `[low, high]` (returns `low` when `high <= low`).
    fn between(&self, low: Duration, high: Duration) -> Duration;
}

/// Thread-local OS-seeded randomness for production.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRandomness;

impl Randomness for ThreadRandomness {
    fn between(&self, low: Duration, high: Duration) -> Duration {
        if high <= low {
            return low;
        }
        let nanos = rand::rng().random_range(low.as_nanos()..=high.as_nanos());
        Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
    }
}

/// Seeded randomness: the same seed gives the same sequence (tests, the benchmark).
#[derive(Debug)]
pub struct SeededRandomness(Mutex<StdRng>);

impl SeededRandomness {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl Randomness for SeededRandomness {
    fn between(&self, low: Duration, high: Duration) -> Duration {
        if high <= low {
            return low;
        }
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let nanos = rng.random_range(low.as_nanos()..=high.as_nanos());
        Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
    }
}

/// The delay from `now` to the next wall-clock multiple of `interval` that lies after
/// `now`: when the timer of an aligned cadence is due again (a tick that fires exactly on
/// its boundary waits a whole interval for the next one).
pub(crate) fn next_aligned_tick(now: Duration, interval: Duration) -> Duration {
    match until_next_boundary(now, interval) {
        Duration::ZERO => interval,
        wait => wait,
    }
}

/// The delay from `now` to the next wall-clock multiple of `interval` (a tick exactly
/// on a boundary is due now, so `now` itself is returned as zero delay).
pub(crate) fn until_next_boundary(now: Duration, interval: Duration) -> Duration {
    let interval_ns = interval.as_nanos().max(1);
    let now_ns = now.as_nanos();
    let rem = now_ns % interval_ns;
    if rem == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos((interval_ns - rem) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_boundary_is_a_wall_clock_multiple() {
        let i = Duration::from_secs(600);
        assert_eq!(
            until_next_boundary(Duration::from_secs(1200), i),
            Duration::ZERO
        );
        assert_eq!(
            until_next_boundary(Duration::from_secs(1201), i),
            Duration::from_secs(599)
        );
        assert_eq!(
            until_next_boundary(Duration::from_millis(1_799_500), i),
            Duration::from_millis(500)
        );
        assert_eq!(next_aligned_tick(Duration::from_secs(1200), i), i);
        assert_eq!(
            next_aligned_tick(Duration::from_secs(1201), i),
            Duration::from_secs(599)
        );
    }

    #[test]
    fn seeded_draws_stay_in_range_and_repeat() {
        let a = SeededRandomness::new(7);
        let b = SeededRandomness::new(7);
        for _ in 0..1000 {
            let lo = Duration::from_millis(100);
            let hi = Duration::from_millis(900);
            let x = a.between(lo, hi);
            assert!(x >= lo && x <= hi, "{x:?} out of range");
            assert_eq!(x, b.between(lo, hi));
        }
        assert_eq!(
            a.between(Duration::from_secs(3), Duration::from_secs(1)),
            Duration::from_secs(3)
        );
    }
}

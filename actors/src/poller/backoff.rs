//! Per-remote retry backoff: exponential growth with full jitter up to a cap, reset on
//! success. Pure arithmetic; the poller owns one and asks it for the next delay.

use std::time::Duration;

use crate::clock::Randomness;

/// `base` doubled `doublings` times, but never more than `cap` (no overflow however many
/// doublings): the growth rule of retry backoff and of restart delays.
pub(crate) fn doubled_up_to(base: Duration, doublings: u32, cap: Duration) -> Duration {
    base.checked_mul(1u32 << doublings.min(31))
        .map_or(cap, |d| d.min(cap))
}

/// Exponential backoff with full jitter: after the n-th consecutive failure the delay
/// is drawn uniformly from `[0, min(cap, base · 2^(n−1))]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// New bounds (a reload); the failure count is kept.
    pub(crate) fn reconfigure(&mut self, base: Duration, cap: Duration) {
        self.base = base;
        self.cap = cap.max(base);
    }

    /// Consecutive failures since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The upper bound of the delay after `failures` consecutive failures.
    pub(crate) fn ceiling(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        doubled_up_to(self.base, failures - 1, self.cap)
    }

    /// Records a failure and draws the delay before the next attempt. A persistent
    /// failure (bad credentials, TLS) jumps straight to the cap's range.
    pub(crate) fn fail(&mut self, persistent: bool, rng: &dyn Randomness) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = if persistent {
            self.cap
        } else {
            self.ceiling(self.failures)
        };
        rng.between(Duration::ZERO, ceiling)
    }

    /// Records a success: the next failure starts from the base again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandomness;

    #[test]
    fn ceiling_doubles_from_base_up_to_cap() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(180));
        let ceilings: Vec<u64> = (1..=7).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, vec![10, 20, 40, 80, 160, 180, 180]);
        assert_eq!(b.ceiling(1000), Duration::from_secs(180));
    }

    #[test]
    fn delays_stay_within_bounds_grow_and_reset_on_success() {
        let rng = SeededRandomness::new(42);
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(180));
        let mut max_seen = Duration::ZERO;
        for n in 1..=20 {
            let d = b.fail(false, &rng);
            assert!(d <= b.ceiling(n), "failure {n}: {d:?} above its ceiling");
            max_seen = max_seen.max(d);
        }
        assert_eq!(b.failures(), 20);
        assert!(
            max_seen > Duration::from_secs(100),
            "20 draws never went past 100 s: {max_seen:?}"
        );
        b.reset();
        assert_eq!(b.failures(), 0);
        for _ in 0..50 {
            let mut fresh = b.clone();
            assert!(fresh.fail(false, &rng) <= Duration::from_secs(10));
        }
    }

    #[test]
    fn persistent_failures_use_the_cap_range() {
        let rng = SeededRandomness::new(1);
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(180));
        let mut above_base = 0;
        for _ in 0..100 {
            let mut fresh = b.clone();
            if fresh.fail(true, &rng) > Duration::from_secs(10) {
                above_base += 1;
            }
        }
        assert!(above_base > 50, "persistent delays look capped at the base");
        b.fail(true, &rng);
        assert_eq!(b.failures(), 1);
    }
}

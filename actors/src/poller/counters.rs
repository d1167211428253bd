//! Counters of one engine's polls: successes, failures by error class, and a histogram
//! of poll durations. Pollers add to them as polls end; the engine handle reads a
//! snapshot (the daemon exports it on `/metrics`). One instance per engine, shared
//! through its `Env` — nothing global.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::source::ErrorClass;

/// Upper bounds of the duration histogram's buckets, in seconds (Prometheus style:
/// each bucket counts polls at or below its bound; the last, +Inf, is the total).
pub const DURATION_BUCKETS_SECS: [f64; 10] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The live counters.
#[derive(Debug, Default)]
pub struct PollStats {
    ok: AtomicU64,
    failed: [AtomicU64; ErrorClass::ALL.len()],
    buckets: [AtomicU64; 10],
    count: AtomicU64,
    sum_micros: AtomicU64,
    outages: AtomicU64,
    canary_probes: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollStatsSnapshot {
    /// Metric polls that were stored.
    pub ok: u64,
    /// Failed metric polls by error class.
    pub failed: Vec<(ErrorClass, u64)>,
    /// Cumulative counts per bucket of `DURATION_BUCKETS_SECS`.
    pub duration_buckets: Vec<(f64, u64)>,
    /// Polls measured.
    pub duration_count: u64,
    /// Sum of their durations in seconds.
    pub duration_sum_secs: f64,
    /// Times every remote was failing at once (a suspected local outage).
    pub outages: u64,
    /// Canary probes sent during those outages.
    pub canary_probes: u64,
}

impl PollStats {
    /// Records a stored poll that took `took`.
    pub fn record_ok(&self, took: Option<Duration>) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.observe(took);
    }

    /// Records a failed poll.
    pub fn record_failure(&self, class: ErrorClass, took: Option<Duration>) {
        if let Some(i) = ErrorClass::ALL.iter().position(|c| *c == class) {
            self.failed[i].fetch_add(1, Ordering::Relaxed);
        }
        self.observe(took);
    }

    /// Records the start of a suspected local outage.
    pub(crate) fn record_outage(&self) {
        self.outages.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one canary probe.
    pub(crate) fn record_canary_probe(&self) {
        self.canary_probes.fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, took: Option<Duration>) {
        let Some(took) = took else { return };
        let secs = took.as_secs_f64();
        for (i, bound) in DURATION_BUCKETS_SECS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> PollStatsSnapshot {
        PollStatsSnapshot {
            ok: self.ok.load(Ordering::Relaxed),
            failed: ErrorClass::ALL
                .iter()
                .zip(&self.failed)
                .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
                .collect(),
            duration_buckets: DURATION_BUCKETS_SECS
                .iter()
                .zip(&self.buckets)
                .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
                .collect(),
            duration_count: self.count.load(Ordering::Relaxed),
            duration_sum_secs: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            outages: self.outages.load(Ordering::Relaxed),
            canary_probes: self.canary_probes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_failures_are_counted_by_class() {
        let s = PollStats::default();
        s.record_ok(Some(Duration::from_millis(80)));
        s.record_ok(Some(Duration::from_secs(3)));
        s.record_failure(ErrorClass::Timeout, Some(Duration::from_secs(60)));
        s.record_failure(ErrorClass::Timeout, None);
        let snap = s.snapshot();
        assert_eq!(snap.ok, 2);
        assert_eq!(snap.failed[1], (ErrorClass::Timeout, 2));
        assert_eq!(snap.duration_buckets[0], (0.05, 0));
        assert_eq!(snap.duration_buckets[1], (0.1, 1));
        assert_eq!(snap.duration_buckets[6], (5.0, 2));
        assert_eq!(snap.duration_buckets[9], (60.0, 3));
        assert_eq!(snap.duration_count, 3);
        assert!((snap.duration_sum_secs - 63.08).abs() < 1e-9);
    }
}

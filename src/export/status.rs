//! What one exporter reports: counters the hook updates as it sends, shared with the
//! API (`GET /api/v1/exporters`, `/metrics`). No address, URL or header appears here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

/// How many recent chunk lags are kept for the percentile.
const LAGS_KEPT: usize = 4096;

/// Counters of one exporter, updated by its hook.
#[derive(Debug, Default)]
pub struct ExporterStats {
    /// Points encoded and waiting for the receiver.
    pub(crate) queued: AtomicU64,
    /// Points the receiver accepted.
    pub(crate) sent: AtomicU64,
    /// Points dropped because the exporter's queue was full (oldest first).
    pub(crate) dropped: AtomicU64,
    /// Points the receiver refused (HTTP 4xx other than 429; not retried).
    pub(crate) rejected: AtomicU64,
    /// Failed sends (each retried later, or rejected).
    pub(crate) errors: AtomicU64,
    /// When a send last succeeded (Unix seconds, 0: never).
    pub(crate) last_success: AtomicI64,
    pub(crate) last_error: Mutex<Option<String>>,
    /// Recent (lag from store to acknowledgement in ms, points) per chunk.
    pub(crate) lags: Mutex<VecDeque<(u64, usize)>>,
}

impl ExporterStats {
    pub(crate) fn record_lag(&self, ms: u64, points: usize) {
        let mut l = self.lags.lock();
        if l.len() == LAGS_KEPT {
            l.pop_front();
        }
        l.push_back((ms, points));
    }

    /// The point-weighted 99th percentile of recent store-to-acknowledged lags (ms).
    pub fn lag_p99_ms(&self) -> Option<u64> {
        let mut l: Vec<(u64, usize)> = self.lags.lock().iter().copied().collect();
        let total: usize = l.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        l.sort_unstable();
        let want = (total as f64 * 0.99).ceil() as usize;
        let mut seen = 0;
        for (ms, n) in l {
            seen += n;
            if seen >= want {
                return Some(ms);
            }
        }
        None
    }

    /// Forgets the recent lags (a benchmark measures one cycle).
    pub fn reset_lags(&self) {
        self.lags.lock().clear();
    }
}

/// One exporter in `GET /api/v1/exporters`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExporterStatus {
    /// The configured name.
    pub name: String,
    /// `graphite`, `influxdb`, `statsd` or `prometheus-remote-write`.
    pub kind: String,
    /// `tcp`, `udp`, `http` or `https`.
    pub transport: String,
    /// Points waiting: in the hook's queue and encoded in the exporter.
    pub queued: u64,
    /// Points the receiver accepted.
    pub sent: u64,
    /// Points dropped under backpressure (the hook's queue and the exporter's).
    pub dropped: u64,
    /// Points the receiver refused (not retried).
    pub rejected: u64,
    /// Failed sends.
    pub errors: u64,
    /// The last failure's text.
    pub last_error: Option<String>,
    /// When a send last succeeded (Unix seconds).
    pub last_success: Option<i64>,
}

impl ExporterStats {
    /// The status, with the hook's own queue and drops (`hook`) added in.
    pub fn status(
        &self,
        name: &str,
        kind: &str,
        transport: &str,
        hook: Option<&fleetpoll_actors::HookStatus>,
    ) -> ExporterStatus {
        let (hq, hd) = hook.map_or((0, 0), |h| (h.queued_points as u64, h.dropped_points));
        let last = self.last_success.load(Ordering::Relaxed);
        ExporterStatus {
            name: name.to_string(),
            kind: kind.to_string(),
            transport: transport.to_string(),
            queued: self.queued.load(Ordering::Relaxed) + hq,
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed) + hd,
            rejected: self.rejected.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
            last_success: (last > 0).then_some(last),
        }
    }
}

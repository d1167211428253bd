//! The hook seam: the trait an in-process consumer of stored samples implements, and
//! what it is handed — stored batches with per-second rates beside the raw values, and
//! remote status changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use serde::Serialize;

use crate::model::{MetricBatch, MetricKind, RemoteId, UnixTime};
use crate::poller::{PollState, RemoteStatus};

/// What a hook returns when it could not handle an event: counted and shown in the
/// hook's status, and the hook goes on with the next event.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// One batch the Storage actor stored, as the hooks see it.
#[derive(Debug, Clone)]
pub struct HookBatch {
    /// Position in the store's feed (increases by one per stored batch).
    pub seq: u64,
    /// Whose batch.
    pub remote: RemoteId,
    /// The points, as stored.
    pub batch: Arc<MetricBatch>,
    /// When the store acknowledged the batch (monotonic clock).
    pub stored_at: Instant,
    /// Per point: the per-second rate of a counter or derive (NaN: none).
    rates: Arc<[f64]>,
}

impl HookBatch {
    /// A batch with its rates, one per point (NaN where there is none).
    pub(crate) fn new(
        seq: u64,
        remote: RemoteId,
        batch: Arc<MetricBatch>,
        stored_at: Instant,
        rates: Arc<[f64]>,
    ) -> Self {
        debug_assert_eq!(rates.len(), batch.points.len());
        Self {
            seq,
            remote,
            batch,
            stored_at,
            rates,
        }
    }

    /// A batch for tests and benchmarks of a hook: `rates` holds one entry per point.
    ///
    /// # Panics
    /// When `rates` does not hold one entry per point.
    pub fn with_rates(remote: RemoteId, batch: Arc<MetricBatch>, rates: Vec<Option<f64>>) -> Self {
        assert_eq!(rates.len(), batch.points.len(), "one rate per point");
        let rates: Arc<[f64]> = rates.into_iter().map(|r| r.unwrap_or(f64::NAN)).collect();
        Self::new(0, remote, batch, Instant::now(), rates)
    }

    /// Number of points in the batch.
    pub fn len(&self) -> usize {
        self.batch.points.len()
    }

    /// Whether the batch holds no point.
    pub fn is_empty(&self) -> bool {
        self.batch.points.is_empty()
    }

    /// The per-second rate at point `index` of a counter or derive: `None` for a gauge,
    /// for a series' first point and after a reset.
    pub fn rate(&self, index: usize) -> Option<f64> {
        self.rates.get(index).copied().filter(|r| !r.is_nan())
    }

    /// Every point with its series resolved, in store order.
    pub fn samples(&self) -> impl Iterator<Item = Sample<'_>> + '_ {
        self.batch.points.iter().enumerate().map(move |(i, p)| {
            let key = &self.batch.series[p.series as usize];
            Sample {
                entity: &key.entity,
                metric: &key.metric,
                kind: key.kind,
                series: p.series,
                timestamp: p.timestamp,
                value: p.value,
                rate: self.rate(i),
            }
        })
    }
}

/// One stored point with its series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// The entity (`node/pve1`, `qemu/100`, `datastore/store1`).
    pub entity: &'a str,
    /// The metric name.
    pub metric: &'a str,
    /// How the raw value is interpreted.
    pub kind: MetricKind,
    /// Index of the series in the batch.
    pub series: u32,
    /// When the value was measured.
    pub timestamp: UnixTime,
    /// The raw value.
    pub value: f64,
    /// The per-second rate of a counter or derive (`None` for a gauge, for a series'
    /// first point and after a reset).
    pub rate: Option<f64>,
}

impl Sample<'_> {
    /// The value a threshold compares: a gauge's value, a counter's or derive's rate.
    pub fn comparable(&self) -> Option<f64> {
        match self.kind {
            MetricKind::Gauge => Some(self.value),
            MetricKind::Counter | MetricKind::Derive => self.rate,
        }
    }
}

/// A remote's collection state changed, it was added, or it was removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    /// The remote.
    pub remote: RemoteId,
    /// The state before (`None`: the remote was just added).
    pub previous: Option<PollState>,
    /// The status now (`None`: the remote was removed).
    pub status: Option<RemoteStatus>,
    /// When the change was seen (Unix seconds).
    pub at: UnixTime,
}

impl StatusChange {
    /// The state now, `None` once the remote was removed.
    pub fn state(&self) -> Option<PollState> {
        self.status.as_ref().map(|s| s.state)
    }
}

/// An in-process consumer of what the engine stores: the rule engine and the exporters
/// are hooks, and an embedder registers its own with
/// [`EngineBuilder::hook`](crate::EngineBuilder::hook).
///
/// Each hook runs in its own supervised actor, off the polling path: it is handed one
/// event at a time from its own bounded queue, so a slow hook delays only itself (its
/// queue drops the oldest events when full, and counts them), and a hook that panics is
/// restarted with the same object. Errors are counted, never fatal.
#[async_trait]
pub trait Hook: Send + 'static {
    /// A batch was stored.
    async fn on_batch(&mut self, batch: &HookBatch) -> Result<(), HookError>;

    /// A remote's collection state changed.
    async fn on_status(&mut self, change: &StatusChange) -> Result<(), HookError> {
        let _ = change;
        Ok(())
    }

    /// How often [`on_tick`](Hook::on_tick) runs, if at all (read once, at
    /// registration).
    fn tick_every(&self) -> Option<Duration> {
        None
    }

    /// Runs every [`tick_every`](Hook::tick_every), between events, with the engine's
    /// wall-clock time: for flushing, for timeouts measured in wall time.
    async fn on_tick(&mut self, now: UnixTime) -> Result<(), HookError> {
        let _ = now;
        Ok(())
    }

    /// The hook is removed or the engine shuts down: flush what is buffered.
    async fn on_stop(&mut self) {}
}

/// How a hook's queue is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookOptions {
    /// Points the queue may hold (a status change counts as one); when a new event
    /// would exceed it, the oldest events are dropped and counted. The newest event is
    /// always kept.
    pub queue_max_points: usize,
}

impl Default for HookOptions {
    fn default() -> Self {
        Self {
            queue_max_points: 1_000_000,
        }
    }
}

/// What the engine reports about one hook (`EngineHandle::hooks`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookStatus {
    /// The name it was registered under.
    pub name: String,
    /// `running`, `restarting` (after a crash), `failed` (restarted too often).
    pub state: String,
    /// Events waiting in its queue.
    pub queued_events: usize,
    /// Points waiting in its queue.
    pub queued_points: usize,
    /// Batches handed to it.
    pub delivered_batches: u64,
    /// Points in those batches.
    pub delivered_points: u64,
    /// Status changes handed to it.
    pub delivered_status: u64,
    /// Batches dropped from its full queue (oldest first).
    pub dropped_batches: u64,
    /// Points in those batches.
    pub dropped_points: u64,
    /// Events it returned an error for.
    pub errors: u64,
    /// Restarts after a panic.
    pub restarts: u32,
    /// The last error or panic text.
    pub last_error: Option<String>,
}

//! The trend-line aggregate: the last hour of every entity's headline metric at one
//! row a minute, kept as the store takes each batch, so a remote's web page draws its
//! trend lines without reading its files (≈ 40 per remote). The headline is the CPU
//! share of nodes, hosts and guests, and `disk_used / disk_total` of storages and
//! datastores.
//!
//! A row covers `(end − 60 s, end]`, as a one-minute RRD row does, and holds the mean
//! of the samples in it; a sample more than the heartbeat (120 s) after the metric's
//! previous one counts for nothing, as the RRD makes that span unknown. For samples on
//! the minute (as PVE and PBS report them) a row is the RRD's AVERAGE row.
//!
//! It holds what was stored since the store was opened (nothing is replayed into it).
//! The store tells it, with a remote's first batch, the newest time already stored for
//! the remote (its cursor); memory holds everything after that. So
//! [`TrendAggregate::hour`] answers at once for a remote that had nothing stored before
//! (a new remote, a new store), and for one that had, once the batches since the open
//! cover the whole hour: in the first hour after a restart the page reads the files as
//! before. An entity is freed an hour after its last sample.

use std::collections::HashMap;
use std::sync::Arc;

use fleetpoll_actors::{MetricBatch, RemoteId};

use super::layout::PVE_HEARTBEAT;

/// Seconds per row.
pub const TREND_STEP_SECS: i64 = 60;
/// Rows per entity: one hour.
const ROWS: usize = 60;

/// Which metrics an entity's trend line shows: one (`cpu_current`) or the share of the
/// first in the second; `None` for an entity the remote page does not list.
pub fn headline(entity: &str) -> Option<&'static [&'static str]> {
    let kind = entity.split('/').next()?;
    match kind {
        "storage" | "datastore" => Some(&["disk_used", "disk_total"]),
        "node" | "host" | "qemu" | "lxc" => Some(&["cpu_current"]),
        _ => None,
    }
}

/// One entity's last hour: a ring of one-minute rows, each the sum and count of every
/// headline metric (one, or two for a share), ending at the newest row `head`. Kept as
/// flat arrays without a per-row tag (≈ 300 bytes for a one-metric entity): a row
/// belongs to the minute its place in the ring has within `(head − 60, head]`, and the
/// rows a later `head` passes over are cleared as it moves.
#[derive(Debug)]
struct EntityRows {
    /// Headline metrics per row: 1, or 2 when the line is the share of the first in
    /// the second.
    metrics: usize,
    /// The newest row's end in minutes (`end / 60`); 0 before the first sample.
    head: u32,
    /// `ROWS × metrics` sums and counts, row by row.
    sums: Box<[f32]>,
    counts: Box<[u8]>,
    newest: i64,
    /// Each metric's newest sample.
    last: [i64; 2],
}

impl EntityRows {
    fn new(share: bool) -> EntityRows {
        let metrics = if share { 2 } else { 1 };
        EntityRows {
            metrics,
            head: 0,
            sums: vec![0.0; ROWS * metrics].into_boxed_slice(),
            counts: vec![0; ROWS * metrics].into_boxed_slice(),
            newest: i64::MIN,
            last: [i64::MIN; 2],
        }
    }

    fn add(&mut self, metric: usize, ts: i64, value: f64) {
        let previous = self.last[metric];
        self.last[metric] = previous.max(ts);
        self.newest = self.newest.max(ts);
        if previous != i64::MIN && ts - previous > PVE_HEARTBEAT as i64 {
            return; // after a gap: the RRD's row is unknown too
        }
        // The row ending at or after `ts`: (end − 60, end] holds it.
        let Ok(minute) = u32::try_from(
            ts.div_euclid(TREND_STEP_SECS) + i64::from(ts.rem_euclid(TREND_STEP_SECS) != 0),
        ) else {
            return;
        };
        if self.head == 0 {
            self.head = minute;
        }
        if minute > self.head {
            // The ring moves on: the rows it passes over start empty.
            let passed = (minute - self.head).min(ROWS as u32);
            for m in minute + 1 - passed..=minute {
                let at = (m as usize % ROWS) * self.metrics;
                self.sums[at..at + self.metrics].fill(0.0);
                self.counts[at..at + self.metrics].fill(0);
            }
            self.head = minute;
        } else if self.head - minute >= ROWS as u32 {
            return; // older than the ring holds
        }
        let at = (minute as usize % ROWS) * self.metrics + metric;
        self.sums[at] += value as f32;
        self.counts[at] = self.counts[at].saturating_add(1);
    }

    /// The value of the row ending at `minute`, if it has one.
    fn value(&self, minute: i64) -> Option<f64> {
        let head = i64::from(self.head);
        if self.head == 0 || minute > head || head - minute >= ROWS as i64 {
            return None;
        }
        let at = minute.rem_euclid(ROWS as i64) as usize * self.metrics;
        let mean = |m: usize| {
            (self.counts[at + m] > 0)
                .then(|| f64::from(self.sums[at + m]) / f64::from(self.counts[at + m]))
        };
        if self.metrics == 2 {
            match (mean(0), mean(1)) {
                (Some(used), Some(total)) if total > 0.0 => Some(used / total),
                _ => None,
            }
        } else {
            mean(0)
        }
    }
}

#[derive(Debug)]
struct RemoteRows {
    /// The first time memory holds everything of (what was stored before the store
    /// was opened is no later than the one before it); rows
    /// after it are complete in memory.
    since: i64,
    entities: HashMap<Arc<str>, EntityRows>,
}

/// An entity's last hour, oldest row first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourTrend {
    /// Each row's end; row `t` covers `(t − 60, t]`.
    pub timestamps: Vec<i64>,
    /// The row's value (`None` without a sample).
    pub values: Vec<Option<f64>>,
}

/// The aggregate itself (inside [`RrdStore`](super::RrdStore)).
#[derive(Debug, Default)]
pub struct TrendAggregate {
    remotes: parking_lot::Mutex<HashMap<RemoteId, RemoteRows>>,
}

impl TrendAggregate {
    /// Whether a batch of `remote` was folded in since the store was opened (if not,
    /// [`TrendAggregate::add`] needs the remote's stored cursor).
    pub fn knows(&self, remote: &RemoteId) -> bool {
        self.remotes.lock().contains_key(remote)
    }

    /// Folds a stored batch in: one map lookup per entity, not per point. With the
    /// remote's first batch, `stored_before` is the newest time stored for it before
    /// this batch (its cursor; `None`: nothing); later it is not looked at.
    pub fn add(&self, remote: &RemoteId, stored_before: Option<i64>, batch: &MetricBatch) {
        let Some(newest) = batch.points.iter().map(|p| p.timestamp).max() else {
            return;
        };
        let mut entities: Vec<&Arc<str>> = Vec::new();
        // Per series: (index into `entities`, metric position) for a headline metric.
        let wanted: Vec<Option<(usize, usize)>> = batch
            .series
            .iter()
            .map(|s| {
                let metric = headline(&s.entity)?.iter().position(|m| **m == *s.metric)?;
                let e = match entities.iter().position(|e| ***e == *s.entity) {
                    Some(e) => e,
                    None => {
                        entities.push(&s.entity);
                        entities.len() - 1
                    }
                };
                Some((e, metric))
            })
            .collect();
        let mut updates: Vec<Vec<(usize, i64, f64)>> = vec![Vec::new(); entities.len()];
        for p in &batch.points {
            if let Some(Some((e, metric))) = wanted.get(p.series as usize) {
                updates[*e].push((*metric, p.timestamp, p.value));
            }
        }
        let mut remotes = self.remotes.lock();
        let of_remote = remotes.entry(remote.clone()).or_insert_with(|| RemoteRows {
            since: stored_before.map_or(i64::MIN, |t| t.saturating_add(1)),
            entities: HashMap::new(),
        });
        for (entity, points) in entities.into_iter().zip(updates) {
            let rows = of_remote
                .entities
                .entry(Arc::clone(entity))
                .or_insert_with(|| EntityRows::new(headline(entity).is_some_and(|h| h.len() == 2)));
            for (metric, ts, value) in points {
                rows.add(metric, ts, value);
            }
        }
        // Entities that stopped reporting leave an hour after their last sample.
        let horizon = newest - TREND_STEP_SECS * ROWS as i64;
        of_remote.entities.retain(|_, e| e.newest > horizon);
    }

    /// The last hour before `now` (the rows ending in `(now − 1 h, now]`) of every
    /// entity of `remote` that has a sample in it, or `None` when memory does not hold
    /// that whole hour (the remote had data stored before the store was opened less
    /// than an hour ago, or nothing of it was stored since): then the files answer.
    pub fn hour(&self, remote: &RemoteId, now: i64) -> Option<HashMap<String, HourTrend>> {
        let last = now.div_euclid(TREND_STEP_SECS);
        let first = last - ROWS as i64 + 1;
        let remotes = self.remotes.lock();
        let of_remote = remotes.get(remote)?;
        // The first row covers (first − 1, first] minutes: memory must hold it whole.
        if of_remote.since > (first - 1) * TREND_STEP_SECS + 1 {
            return None;
        }
        let timestamps: Vec<i64> = (first..=last).map(|m| m * TREND_STEP_SECS).collect();
        let trends = of_remote
            .entities
            .iter()
            .filter(|(_, e)| e.newest > (first - 1) * TREND_STEP_SECS)
            .map(|(entity, e)| {
                let values = (first..=last).map(|m| e.value(m)).collect();
                let trend = HourTrend {
                    timestamps: timestamps.clone(),
                    values,
                };
                (entity.to_string(), trend)
            })
            .collect();
        Some(trends)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::test_batches::gauges as batch;

    const T: i64 = 1_700_000_040; // on the minute

    #[test]
    fn memory_answers_at_once_for_a_new_remote_and_after_an_hour_for_one_stored_before() {
        let trends = TrendAggregate::default();
        let (new, old) = (RemoteId::new("new"), RemoteId::new("old"));
        for r in [&new, &old] {
            // `old` had samples up to T − 60 stored before the store was opened.
            let stored_before = (r == &old).then_some(T - 60);
            trends.add(
                r,
                stored_before,
                &batch(&[("qemu/100", "cpu_current", T, 0.5)]),
            );
            trends.add(
                r,
                None,
                &batch(&[("qemu/100", "cpu_current", T + 60, 0.25)]),
            );
        }
        assert_eq!(
            trends.hour(&new, T).unwrap()["qemu/100"].values[59],
            Some(0.5)
        );
        assert!(trends.hour(&old, T).is_none());
        // The hour's first row ends at T: memory holds (T − 60, T] whole.
        assert!(trends.hour(&old, T + 3539).is_none());
        let hour = trends.hour(&old, T + 3540).unwrap();
        let line = &hour["qemu/100"];
        assert_eq!(line.timestamps.len(), 60);
        assert_eq!(line.timestamps[0], T);
        assert_eq!(line.values[..2], [Some(0.5), Some(0.25)]);
        assert!(line.values[2..].iter().all(Option::is_none));
        // An hour after its last sample, it is not listed.
        assert!(trends.hour(&old, T + 3660).unwrap().is_empty());
        assert!(trends.hour(&RemoteId::new("other"), T).is_none());
    }

    #[test]
    fn rows_hold_the_mean_of_their_minute_and_storages_their_share() {
        let trends = TrendAggregate::default();
        let r = RemoteId::new("pve");
        trends.add(
            &r,
            None,
            &batch(&[
                ("node/n1", "cpu_current", T - 90, 0.0),
                ("node/n1", "cpu_current", T - 30, 0.25),
                ("node/n1", "cpu_current", T, 0.75),
                ("node/n1", "mem_used", T, 1.0),
                ("storage/n1/local", "disk_used", T, 1.0),
                ("storage/n1/local", "disk_total", T, 4.0),
                ("prometheus/x", "cpu_current", T, 1.0),
            ]),
        );
        let hour = trends.hour(&r, T + 10).unwrap();
        let node = &hour["node/n1"];
        assert_eq!(*node.timestamps.last().unwrap(), T);
        assert_eq!(*node.values.last().unwrap(), Some(0.5));
        assert_eq!(hour["storage/n1/local"].values.last().unwrap(), &Some(0.25));
        assert!(!hour.contains_key("prometheus/x"));
        assert_eq!(node.values[58], Some(0.0));
        // A sample after a gap longer than the heartbeat counts for nothing (the RRD's
        // row is unknown), the next one does.
        trends.add(
            &r,
            None,
            &batch(&[("node/n1", "cpu_current", T + 300, 1.0)]),
        );
        trends.add(
            &r,
            None,
            &batch(&[("node/n1", "cpu_current", T + 360, 1.0)]),
        );
        let node = &trends.hour(&r, T + 360).unwrap()["node/n1"];
        assert_eq!(node.values[58..], [None, Some(1.0)]);
    }

    #[test]
    fn the_ring_moves_on_clearing_the_minutes_it_passes_and_keeps_late_samples_of_its_hour() {
        let trends = TrendAggregate::default();
        let r = RemoteId::new("pve");
        let minute = |k: i64| T + 60 * k;
        let points: Vec<(&str, &str, i64, f64)> = (0..=90)
            .map(|k| ("qemu/1", "cpu_current", minute(k), k as f64))
            .collect();
        trends.add(&r, None, &batch(&points));
        let line = |now: i64| trends.hour(&r, now).unwrap()["qemu/1"].clone();
        let hour = line(minute(90));
        let want: Vec<Option<f64>> = (31..=90).map(|k| Some(k as f64)).collect();
        assert_eq!(
            hour.values, want,
            "the ring went round one and a half times"
        );
        // A late sample of the hour joins its row; one older than the ring is dropped.
        trends.add(
            &r,
            None,
            &batch(&[
                ("qemu/1", "cpu_current", minute(90) - 30, 100.0),
                ("qemu/1", "cpu_current", minute(20), 7.0),
            ]),
        );
        let hour = line(minute(90));
        assert_eq!(hour.values[59], Some(95.0));
        assert_eq!(hour.values[..59], want[..59]);
        // Hours later, after a gap: the rows it passed are empty, not last time's.
        trends.add(
            &r,
            None,
            &batch(&[("qemu/1", "cpu_current", minute(300), 1.0)]),
        );
        trends.add(
            &r,
            None,
            &batch(&[("qemu/1", "cpu_current", minute(301), 3.0)]),
        );
        let hour = line(minute(301));
        assert_eq!(hour.values[59], Some(3.0));
        assert!(hour.values[..59].iter().all(Option::is_none), "{hour:?}");
    }

    #[test]
    fn an_entity_without_a_sample_for_an_hour_is_freed() {
        let trends = TrendAggregate::default();
        let r = RemoteId::new("pve");
        trends.add(&r, None, &batch(&[("qemu/1", "cpu_current", T, 0.5)]));
        trends.add(
            &r,
            None,
            &batch(&[("qemu/2", "cpu_current", T + 3600, 0.5)]),
        );
        let remotes = trends.remotes.lock();
        let names: Vec<&str> = remotes[&r].entities.keys().map(|e| &**e).collect();
        assert_eq!(names, ["qemu/2"]);
    }
}

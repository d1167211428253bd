//! Per-second rates of counters and derives, computed once per stored batch for every
//! hook: the last point of each series is remembered across batches.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{MetricBatch, MetricKind, RemoteId, SeriesKey, UnixTime};

/// The last point of every counter and derive series, per remote.
#[derive(Debug, Default)]
pub(crate) struct RateTracker {
    last: HashMap<RemoteId, HashMap<SeriesKey, (UnixTime, f64)>>,
}

impl RateTracker {
    /// The rate at each point of `batch` (NaN for gauges, a series' first point, a
    /// point not newer than the one before, and a derive's reset).
    pub(crate) fn rates(&mut self, remote: &RemoteId, batch: &MetricBatch) -> Arc<[f64]> {
        let mut out = vec![f64::NAN; batch.points.len()];
        if batch.series.iter().all(|s| s.kind == MetricKind::Gauge) {
            return out.into();
        }
        let known = self.last.entry(remote.clone()).or_default();
        let mut prev: Vec<Option<(UnixTime, f64)>> = batch
            .series
            .iter()
            .map(|s| match s.kind {
                MetricKind::Gauge => None,
                _ => known.get(s).copied(),
            })
            .collect();
        let mut touched = vec![false; batch.series.len()];
        for (i, p) in batch.points.iter().enumerate() {
            let index = p.series as usize;
            let kind = batch.series[index].kind;
            if kind == MetricKind::Gauge {
                continue;
            }
            match prev[index] {
                Some((t0, _)) if p.timestamp <= t0 => continue,
                Some((t0, v0)) => out[i] = rate(kind, v0, p.value, (p.timestamp - t0) as f64),
                None => {}
            }
            prev[index] = Some((p.timestamp, p.value));
            touched[index] = true;
        }
        for (index, key) in batch.series.iter().enumerate() {
            if let (true, Some(point)) = (touched[index], prev[index]) {
                match known.get_mut(key) {
                    Some(slot) => *slot = point,
                    None => {
                        known.insert(key.clone(), point);
                    }
                }
            }
        }
        out.into()
    }

    /// Forgets a removed remote's series.
    pub(crate) fn forget(&mut self, remote: &RemoteId) {
        self.last.remove(remote);
    }
}

/// The per-second rate between two raw values `dt` seconds apart, as the RRD store
/// reads them: a derive that decreased was reset (no rate); a counter that decreased
/// wrapped at 32 bits, or else at 64.
fn rate(kind: MetricKind, v0: f64, v1: f64, dt: f64) -> f64 {
    let mut delta = v1 - v0;
    if delta < 0.0 {
        match kind {
            MetricKind::Counter => {
                delta += 4_294_967_296.0;
                if delta < 0.0 {
                    delta += 18_446_744_073_709_551_616.0 - 4_294_967_296.0;
                }
            }
            _ => return f64::NAN,
        }
    }
    delta / dt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricPoint;

    fn batch(kind: MetricKind, points: &[(i64, f64)]) -> MetricBatch {
        MetricBatch {
            series: vec![SeriesKey {
                entity: "qemu/100".into(),
                metric: "net_in".into(),
                kind,
            }],
            points: points
                .iter()
                .map(|&(timestamp, value)| MetricPoint {
                    series: 0,
                    timestamp,
                    value,
                })
                .collect(),
            dropped_future: 0,
        }
    }

    fn some(rates: &[f64]) -> Vec<Option<f64>> {
        rates.iter().map(|r| (!r.is_nan()).then_some(*r)).collect()
    }

    #[test]
    fn a_derive_rate_spans_batches_and_a_reset_gives_none() {
        let mut t = RateTracker::default();
        let r = RemoteId::new("pve");
        let first = t.rates(&r, &batch(MetricKind::Derive, &[(10, 100.0), (20, 300.0)]));
        assert_eq!(some(&first), vec![None, Some(20.0)]);
        let second = t.rates(&r, &batch(MetricKind::Derive, &[(30, 400.0), (40, 5.0)]));
        assert_eq!(
            some(&second),
            vec![Some(10.0), None],
            "a decrease is a reset"
        );
        let third = t.rates(&r, &batch(MetricKind::Derive, &[(50, 25.0)]));
        assert_eq!(some(&third), vec![Some(2.0)], "counted from the reset");
    }

    #[test]
    fn a_counter_wraps_at_32_bits_and_an_old_point_has_no_rate() {
        let mut t = RateTracker::default();
        let r = RemoteId::new("pve");
        let rates = t.rates(
            &r,
            &batch(
                MetricKind::Counter,
                &[(0, 4_294_967_290.0), (2, 4.0), (2, 9.0), (1, 9.0)],
            ),
        );
        assert_eq!(some(&rates), vec![None, Some(5.0), None, None]);
    }

    #[test]
    fn gauges_have_no_rate_and_remotes_are_apart() {
        let mut t = RateTracker::default();
        let g = t.rates(
            &RemoteId::new("a"),
            &batch(MetricKind::Gauge, &[(1, 1.0), (2, 2.0)]),
        );
        assert_eq!(some(&g), vec![None, None]);
        t.rates(&RemoteId::new("a"), &batch(MetricKind::Derive, &[(1, 1.0)]));
        let b = t.rates(&RemoteId::new("b"), &batch(MetricKind::Derive, &[(2, 5.0)]));
        assert_eq!(some(&b), vec![None], "another remote's series is its own");
        t.forget(&RemoteId::new("a"));
        let a = t.rates(&RemoteId::new("a"), &batch(MetricKind::Derive, &[(3, 5.0)]));
        assert_eq!(some(&a), vec![None], "forgotten");
    }
}

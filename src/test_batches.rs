//! Metric batches for unit tests, built point by point from names.

use fleetpoll_actors::{MetricBatch, MetricKind, MetricPoint, SeriesKey};

/// Adds one point of `entity`'s `metric` to `batch`, adding its series if it is new.
pub(crate) fn push(
    batch: &mut MetricBatch,
    entity: &str,
    metric: &str,
    kind: MetricKind,
    timestamp: i64,
    value: f64,
) {
    let key = SeriesKey {
        entity: entity.into(),
        metric: metric.into(),
        kind,
    };
    let series = match batch.series.iter().position(|k| *k == key) {
        Some(i) => i,
        None => {
            batch.series.push(key);
            batch.series.len() - 1
        }
    } as u32;
    batch.points.push(MetricPoint {
        series,
        timestamp,
        value,
    });
}

/// A batch of gauge points `(entity, metric, timestamp, value)`.
pub(crate) fn gauges(points: &[(&str, &str, i64, f64)]) -> MetricBatch {
    let mut batch = MetricBatch::default();
    for &(entity, metric, ts, value) in points {
        push(&mut batch, entity, metric, MetricKind::Gauge, ts, value);
    }
    batch
}

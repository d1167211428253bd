//! Points journalled but not yet written to their RRD file: per entity, the data
//! sources they need and one row of values per timestamp, kept in memory between
//! `store_metrics` and the next commit (see `docs/rrd-format.md`, "Commit cadence").

use fleetpoll_actors::MetricBatch;

use super::def::DsDef;
use super::layout::data_source_for;
use super::value::RawValue;

/// A point of a batch as staged: `(timestamp, index into the batch's series, value)`.
pub(crate) type TimedPoint = (i64, usize, f64);

/// One entity's journalled points that its file does not have yet, as a table: one
/// row per timestamp, one column per data source, NaN for unknown. Kept flat (no
/// allocation per row): a backfill holds millions of values here until the commit.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The data sources, in column order.
    pub(crate) defs: Vec<DsDef>,
    /// The rows' timestamps, oldest first.
    times: Vec<i64>,
    /// `times.len() × defs.len()` values, row after row.
    values: Vec<f64>,
    /// `(data-source name, full metric name)` of the columns whose metric name was
    /// shortened (see [`super::names`]).
    pub(crate) long_names: Vec<(String, String)>,
}

impl Pending {
    /// Values held, unknown ones included (a measure of memory use).
    pub(crate) fn value_count(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The oldest pending timestamp.
    pub(crate) fn first_time(&self) -> Option<i64> {
        self.times.first().copied()
    }

    /// The rows, oldest first: a timestamp and one value per data source (NaN for
    /// unknown), in the order of [`Pending::defs`].
    pub(crate) fn rows(&self) -> impl Iterator<Item = (i64, &[f64])> {
        let stride = self.defs.len().max(1);
        self.times
            .iter()
            .copied()
            .zip(self.values.chunks_exact(stride))
    }

    /// Makes room for a new data source: every row gains an unknown last column.
    fn add_column(&mut self, def: DsDef) -> usize {
        let width = self.defs.len();
        if !self.times.is_empty() {
            let mut widened = Vec::with_capacity(self.times.len() * (width + 1));
            for row in self
                .values
                .chunks_exact(width.max(1))
                .take(self.times.len())
            {
                widened.extend_from_slice(&row[..width]);
                widened.push(f64::NAN);
            }
            self.values = widened;
        }
        self.defs.push(def);
        width
    }

    /// Adds one entity's points of a batch (`points`: `(timestamp, series, value)`
    /// sorted by time), dropping timestamps at or before `after`; returns the newest
    /// timestamp added and how many values the table grew by (new columns included).
    pub(crate) fn add(
        &mut self,
        batch: &MetricBatch,
        points: &[TimedPoint],
        after: i64,
    ) -> (Option<i64>, usize) {
        let before = self.values.len();
        let first = points.partition_point(|&(time, _, _)| time <= after);
        let points = &points[first..];
        // Each series' column, worked out once per batch (new data sources first, so
        // the rows below are laid out at their final width).
        let mut column_of = vec![usize::MAX; batch.series.len()];
        for &(_, series, _) in points {
            if column_of[series] != usize::MAX {
                continue;
            }
            let key = &batch.series[series];
            let def = data_source_for(&key.metric, key.kind);
            // Metric names that map to the same data-source name share a column.
            let column = match self.defs.iter().position(|d| d.name == def.name) {
                Some(column) => column,
                None => {
                    if def.name != *key.metric {
                        self.long_names
                            .push((def.name.clone(), key.metric.to_string()));
                    }
                    self.add_column(def)
                }
            };
            column_of[series] = column;
        }
        let width = self.defs.len();
        // Exactly the rows of this batch: doubling would hold up to twice the values.
        let rows = points.chunk_by(|a, b| a.0 == b.0).count();
        self.values.reserve_exact(rows * width);
        self.times.reserve_exact(rows);
        let mut newest = None;
        for group in points.chunk_by(|a, b| a.0 == b.0) {
            let time = group[0].0;
            let row = self.values.len();
            self.values.resize(row + width, f64::NAN);
            for &(_, series, value) in group {
                self.values[row + column_of[series]] = value;
            }
            self.times.push(time);
            newest = Some(time);
        }
        (newest, self.values.len() - before)
    }

    /// Adds the rows of `newer`, all later than these, after these rows; both are
    /// widened to the data sources of either (unknown where a row had none).
    pub(crate) fn append(&mut self, mut newer: Pending) {
        if newer.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = newer;
            return;
        }
        for pair in std::mem::take(&mut newer.long_names) {
            if !self.long_names.contains(&pair) {
                self.long_names.push(pair);
            }
        }
        let columns: Vec<usize> = newer
            .defs
            .iter()
            .map(
                |def| match self.defs.iter().position(|d| d.name == def.name) {
                    Some(column) => column,
                    None => self.add_column(def.clone()),
                },
            )
            .collect();
        let width = self.defs.len();
        self.values.reserve_exact(newer.times.len() * width);
        self.times.reserve_exact(newer.times.len());
        for (time, row) in newer.rows() {
            let start = self.values.len();
            self.values.resize(start + width, f64::NAN);
            for (&column, &value) in columns.iter().zip(row) {
                self.values[start + column] = value;
            }
            self.times.push(time);
        }
    }

    /// The rows' timestamps, oldest first.
    pub(crate) fn times(&self) -> &[i64] {
        &self.times
    }

    /// The rows' values as updates for a file whose data source `c` of these rows is
    /// column `columns[c]` of `width` columns: `width` values per row of
    /// [`Pending::times`], in one table (not one allocation per row).
    pub(crate) fn updates(&self, columns: &[usize], width: usize) -> Vec<RawValue> {
        let mut values = vec![RawValue::Unknown; self.times.len() * width];
        for ((_, row), out) in self.rows().zip(values.chunks_exact_mut(width.max(1))) {
            for (c, &value) in row.iter().enumerate() {
                out[columns[c]] = RawValue::from_f64(value);
            }
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fleetpoll_actors::{MetricKind, SeriesKey};

    use super::*;

    fn pending(metrics: &[&str], times: &[i64]) -> Pending {
        let series: Vec<SeriesKey> = metrics
            .iter()
            .map(|m| SeriesKey {
                entity: Arc::from("qemu/100"),
                metric: Arc::from(*m),
                kind: MetricKind::Gauge,
            })
            .collect();
        let batch = MetricBatch {
            series,
            ..MetricBatch::default()
        };
        let points: Vec<TimedPoint> = times
            .iter()
            .flat_map(|&t| (0..metrics.len()).map(move |s| (t, s, (t + s as i64) as f64)))
            .collect();
        let mut pending = Pending::default();
        pending.add(&batch, &points, i64::MIN);
        pending
    }

    fn table(p: &Pending) -> Vec<(String, i64, Option<f64>)> {
        p.rows()
            .flat_map(|(time, row)| {
                p.defs
                    .iter()
                    .zip(row)
                    .map(move |(d, &v)| (d.name.clone(), time, (!v.is_nan()).then_some(v)))
            })
            .collect()
    }

    #[test]
    fn newer_rows_are_appended_after_older_ones_widened_to_every_column() {
        let mut older = pending(&["cpu", "mem"], &[60, 120]);
        let newer = pending(&["disk", "cpu"], &[180]);
        older.append(newer);
        assert_eq!(older.times(), &[60, 120, 180]);
        assert_eq!(older.value_count(), 9, "3 rows × 3 columns");
        let mut got = table(&older);
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut want = vec![
            ("cpu".to_string(), 60, Some(60.0)),
            ("mem".to_string(), 60, Some(61.0)),
            ("disk".to_string(), 60, None),
            ("cpu".to_string(), 120, Some(120.0)),
            ("mem".to_string(), 120, Some(121.0)),
            ("disk".to_string(), 120, None),
            ("cpu".to_string(), 180, Some(181.0)),
            ("mem".to_string(), 180, None),
            ("disk".to_string(), 180, Some(180.0)),
        ];
        want.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(got, want);

        let mut empty = Pending::default();
        empty.append(pending(&["cpu"], &[60]));
        assert_eq!(empty.times(), &[60]);
    }
}

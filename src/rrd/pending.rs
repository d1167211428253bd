//! Points journalled but not yet written to their RRD file: per entity, the data
//! sources they need and one row of values per timestamp, kept in memory between
//! `store_metrics` and the next commit (see `docs/rrd-format.md`, "Commit cadence").

use std::collections::HashMap;

use fleetpoll_actors::MetricBatch;

use super::def::DsDef;
use super::store::data_source_for;
use super::value::RawValue;

/// A point of a batch as staged: `(timestamp, index into the batch's series, value)`.
pub(crate) type TimedPoint = (i64, usize, f64);

/// One entity's journalled points that its file does not have yet.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The data sources the rows refer to, in column order of `rows`.
    pub(crate) defs: Vec<DsDef>,
    /// One update per timestamp, oldest first; a row may be shorter than `defs` (its
    /// later columns unknown) and NaN means unknown.
    pub(crate) rows: Vec<(i64, Vec<f64>)>,
}

impl Pending {
    /// Values held (a measure of memory use).
    pub(crate) fn value_count(&self) -> usize {
        self.rows.iter().map(|(_, v)| v.len()).sum()
    }

    /// Whether nothing is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds one entity's points of a batch (`points`: `(timestamp, series, value)`
    /// sorted by time), dropping timestamps at or before `after`; returns the newest
    /// timestamp added and how many values were added.
    pub(crate) fn add(
        &mut self,
        batch: &MetricBatch,
        points: &[TimedPoint],
        after: i64,
    ) -> (Option<i64>, usize) {
        let mut newest = None;
        let mut added = 0;
        // Each series' column, worked out once per batch.
        let mut column_of: HashMap<usize, usize> = HashMap::new();
        let first = points.partition_point(|&(time, _, _)| time <= after);
        for group in points[first..].chunk_by(|a, b| a.0 == b.0) {
            let time = group[0].0;
            let mut row: Vec<f64> = Vec::with_capacity(self.defs.len());
            for &(_, series, value) in group {
                let column = *column_of.entry(series).or_insert_with(|| {
                    let key = &batch.series[series];
                    let def = data_source_for(&key.metric, key.kind);
                    // Metric names that map to the same data-source name share a column.
                    match self.defs.iter().position(|d| d.name == def.name) {
                        Some(column) => column,
                        None => {
                            self.defs.push(def);
                            self.defs.len() - 1
                        }
                    }
                });
                if row.len() <= column {
                    row.resize(column + 1, f64::NAN);
                }
                row[column] = value;
            }
            added += row.len();
            self.rows.push((time, row));
            newest = Some(time);
        }
        (newest, added)
    }

    /// The rows as updates for a file whose data source `c` of these rows is column
    /// `columns[c]` of `width` columns.
    pub(crate) fn updates(&self, columns: &[usize], width: usize) -> Vec<(i64, Vec<RawValue>)> {
        self.rows
            .iter()
            .map(|(time, row)| {
                let mut values = vec![RawValue::Unknown; width];
                for (c, &value) in row.iter().enumerate() {
                    values[columns[c]] = RawValue::from_f64(value);
                }
                (*time, values)
            })
            .collect()
    }
}

//! Consolidation: primary data points (PDPs) flow into each archive's consolidated
//! data point (CDP) accumulators, and every completed CDP becomes a row.

use super::def::{Cf, RraDef};

/// The part-built consolidated point of one (archive, data source) pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CdpPrep {
    /// The accumulated value (sum for AVERAGE, extreme for MIN/MAX, latest for LAST);
    /// NaN while nothing known has been accumulated.
    pub value: f64,
    /// How many of the accumulated PDPs were unknown.
    pub unknown_pdps: u64,
}

impl CdpPrep {
    /// An empty accumulator that already counts `unknown_pdps` unknown points (the
    /// points of the current row that lie before the file's start).
    pub fn new(unknown_pdps: u64) -> Self {
        CdpPrep {
            value: f64::NAN,
            unknown_pdps,
        }
    }
}

/// The accumulator's value right after a row was completed.
fn identity(cf: Cf) -> f64 {
    match cf {
        Cf::Average => 0.0,
        Cf::Max => f64::NEG_INFINITY,
        Cf::Min => f64::INFINITY,
        Cf::Last => f64::NAN,
    }
}

/// Adds `count` known PDPs of value `pdp` to an accumulator.
fn accumulate(cf: Cf, acc: f64, pdp: f64, count: u64) -> f64 {
    if acc.is_nan() {
        return match cf {
            Cf::Average => pdp * count as f64,
            _ => pdp,
        };
    }
    match cf {
        Cf::Average => acc + pdp * count as f64,
        Cf::Min => {
            if pdp < acc {
                pdp
            } else {
                acc
            }
        }
        Cf::Max => {
            if pdp > acc {
                pdp
            } else {
                acc
            }
        }
        Cf::Last => pdp,
    }
}

/// The row value of a CDP completed by `count` final PDPs of value `pdp`, given what
/// was accumulated before them (`prep`, with its unknown count already including
/// those final PDPs when they are unknown).
fn complete(rra: &RraDef, prep: &CdpPrep, pdp: f64, count: u64) -> f64 {
    if prep.unknown_pdps as f64 > rra.steps as f64 * rra.xff {
        return f64::NAN;
    }
    match rra.cf {
        Cf::Average => {
            let acc = if prep.value.is_nan() { 0.0 } else { prep.value };
            let cur = if pdp.is_nan() { 0.0 } else { pdp };
            (acc + cur * count as f64) / (rra.steps - prep.unknown_pdps) as f64
        }
        Cf::Max => {
            let acc = if prep.value.is_nan() {
                f64::NEG_INFINITY
            } else {
                prep.value
            };
            let cur = if pdp.is_nan() { f64::NEG_INFINITY } else { pdp };
            if cur > acc {
                cur
            } else {
                acc
            }
        }
        Cf::Min => {
            let acc = if prep.value.is_nan() {
                f64::INFINITY
            } else {
                prep.value
            };
            let cur = if pdp.is_nan() { f64::INFINITY } else { pdp };
            if cur < acc {
                cur
            } else {
                acc
            }
        }
        Cf::Last => pdp,
    }
}

/// Where completed rows of one archive go.
pub(crate) trait RowSink {
    /// Append `repeat` rows, all holding `values` (one per data source).
    fn push_rows(&mut self, values: &[f64], repeat: u64);
}

/// Feeds `count` consecutive PDPs, the first of which has index `first_pdp` (the PDP
/// ending at `index × step`), all with the per-data-source values `pdps`, into one
/// archive's accumulators. The first row completed is consolidated from what was
/// accumulated; further full rows hold the PDP value itself, as rrdtool fills them,
/// and the PDPs left over start the next row. `row` is a buffer for the consolidated
/// row (its contents do not matter).
pub(crate) fn feed(
    rra: &RraDef,
    preps: &mut [CdpPrep],
    pdps: &[f64],
    first_pdp: u64,
    count: u64,
    row: &mut Vec<f64>,
    sink: &mut dyn RowSink,
) {
    if count == 0 {
        return;
    }
    if rra.steps == 1 {
        sink.push_rows(pdps, count);
        return;
    }
    let steps = rra.steps;
    let to_boundary = steps - (first_pdp - 1) % steps;
    if count < to_boundary {
        for (prep, &pdp) in preps.iter_mut().zip(pdps) {
            if pdp.is_nan() {
                prep.unknown_pdps += count;
            } else {
                prep.value = accumulate(rra.cf, prep.value, pdp, count);
            }
        }
        return;
    }
    // The first row completed is consolidated from what was accumulated.
    row.clear();
    row.extend(preps.iter_mut().zip(pdps).map(|(prep, &pdp)| {
        if pdp.is_nan() {
            prep.unknown_pdps += to_boundary;
        }
        complete(rra, prep, pdp, to_boundary)
    }));
    sink.push_rows(row, 1);
    // Further full rows repeat the PDP value.
    let left = count - to_boundary;
    sink.push_rows(pdps, left / steps);
    // What is left over starts the next row.
    let carried = left % steps;
    for (prep, &pdp) in preps.iter_mut().zip(pdps) {
        if carried == 0 || pdp.is_nan() {
            prep.value = identity(rra.cf);
            prep.unknown_pdps = if pdp.is_nan() { carried } else { 0 };
        } else {
            prep.value = match rra.cf {
                Cf::Average => pdp * carried as f64,
                _ => pdp,
            };
            prep.unknown_pdps = 0;
        }
    }
}

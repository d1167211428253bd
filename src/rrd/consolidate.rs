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
/// archive's accumulators. The first row completed within one part of an update is
/// consolidated from what was accumulated; further full rows hold the PDP value itself,
/// as rrdtool fills them.
pub(crate) fn feed(
    rra: &RraDef,
    preps: &mut [CdpPrep],
    pdps: &[f64],
    first_pdp: u64,
    mut count: u64,
    sink: &mut dyn RowSink,
) {
    let mut completed_before = false;
    let steps = rra.steps;
    let mut index = first_pdp;
    let mut row = vec![0.0; pdps.len()];
    while count > 0 {
        if steps == 1 {
            sink.push_rows(pdps, count);
            return;
        }
        let to_boundary = steps - (index - 1) % steps;
        if completed_before && to_boundary == steps && count >= steps {
            let full = count / steps;
            for (slot, &pdp) in row.iter_mut().zip(pdps) {
                *slot = pdp;
            }
            sink.push_rows(&row, full);
            count -= full * steps;
            index += full * steps;
            continue;
        }
        let take = count.min(to_boundary);
        if take == to_boundary {
            for ((prep, slot), &pdp) in preps.iter_mut().zip(row.iter_mut()).zip(pdps) {
                if pdp.is_nan() {
                    prep.unknown_pdps += take;
                }
                *slot = complete(rra, prep, pdp, take);
                prep.value = identity(rra.cf);
                prep.unknown_pdps = 0;
            }
            sink.push_rows(&row, 1);
            completed_before = true;
        } else {
            for (prep, &pdp) in preps.iter_mut().zip(pdps) {
                if pdp.is_nan() {
                    prep.unknown_pdps += take;
                } else {
                    prep.value = accumulate(rra.cf, prep.value, pdp, take);
                }
            }
        }
        count -= take;
        index += take;
    }
}

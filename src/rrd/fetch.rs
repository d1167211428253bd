//! Reading rows back: the choice of archive and the time window, as `rrdtool fetch`
//! makes them.

use super::database::{Rrd, MAX_TIME};
use super::def::Cf;
use super::error::RrdError;

/// The most rows a fetch returns.
pub const MAX_FETCH_ROWS: u64 = 1_000_000;

/// The most values (rows × data sources) a fetch returns.
pub const MAX_FETCH_VALUES: u64 = 16_000_000;

/// What a fetch asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The consolidation function wanted.
    pub cf: Cf,
    /// The start of the window (seconds since the epoch).
    pub start: i64,
    /// The end of the window.
    pub end: i64,
    /// The wished resolution in seconds; `1` (rrdtool's default) means the finest.
    pub resolution: u64,
}

/// The rows a fetch returns.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchResult {
    /// The window's start after rounding down to the archive's resolution.
    pub start: i64,
    /// The window's end after rounding up (an aligned end gains a row).
    pub end: i64,
    /// The resolution of the chosen archive.
    pub step: u64,
    /// Index of the chosen archive.
    pub archive: usize,
    /// The data-source names, in column order.
    pub names: Vec<String>,
    /// The rows: a timestamp `ts` (covering `(ts − step, ts]`) and one value per data
    /// source, NaN when unknown.
    pub rows: Vec<(i64, Vec<f64>)>,
}

/// The archive of `rrd` a fetch reads from ([`Rrd::choose_archive`]): among archives of
/// the same CF (or any one-step AVERAGE/MIN/MAX/LAST archive) the one whose span
/// covers `start` with the resolution closest to the wish; failing that, the one
/// covering most of the window.
pub(super) fn choose_archive(rrd: &Rrd, request: &FetchRequest) -> Result<usize, RrdError> {
    let mut best_full: Option<(usize, u64)> = None;
    let mut best_part: Option<(usize, i64, u64)> = None;
    for (i, rra) in rrd.rras.iter().enumerate() {
        if rra.cf != request.cf && rra.steps != 1 {
            continue;
        }
        let span_step = (rra.steps * rrd.step) as i64;
        let cal_end = rrd.last_update - rrd.last_update.rem_euclid(span_step);
        let cal_start = cal_end - span_step * rra.rows as i64;
        let step_diff = (request.resolution as i64).abs_diff(span_step);
        if cal_start <= request.start {
            if best_full.is_none_or(|(_, best)| step_diff < best) {
                best_full = Some((i, step_diff));
            }
        } else {
            // The part of the window from the archive's start on (`cal_start` lies
            // after the window's start here, so this cannot overflow).
            let covered = request.end - cal_start;
            let better = match best_part {
                None => true,
                Some((_, best_cover, best_diff)) => {
                    best_cover < covered || (best_cover == covered && step_diff < best_diff)
                }
            };
            if better {
                best_part = Some((i, covered, step_diff));
            }
        }
    }
    best_full
        .map(|(i, _)| i)
        .or(best_part.map(|(i, _, _)| i))
        .ok_or_else(|| {
            RrdError::Fetch(format!(
                "the RRD does not contain an RRA matching the chosen CF {}",
                request.cf
            ))
        })
}

/// The rows of the window from the chosen archive of `rrd` ([`Rrd::fetch`]).
pub(super) fn fetch(rrd: &Rrd, request: &FetchRequest) -> Result<FetchResult, RrdError> {
    if request.end < request.start {
        return Err(RrdError::Fetch(format!(
            "start ({}) should be less than end ({})",
            request.start, request.end
        )));
    }
    let time_range = -MAX_TIME..=MAX_TIME;
    if !time_range.contains(&request.start) || !time_range.contains(&request.end) {
        return Err(RrdError::Fetch(format!(
            "the window {}..{} must lie within {MAX_TIME} seconds of the epoch \
             (the end of year 9999)",
            request.start, request.end
        )));
    }
    let archive = choose_archive(rrd, request)?;
    if !rrd.rings[archive].is_loaded() {
        return Err(RrdError::Fetch(
            "the archive's rows are not loaded (the file was opened for updating only)".to_string(),
        ));
    }
    let rra = &rrd.rras[archive];
    let step = (rra.steps * rrd.step) as i64;
    let start = request.start - request.start.rem_euclid(step);
    let end = request.end + (step - request.end.rem_euclid(step));
    let ring = &rrd.rings[archive];
    let ds_count = rrd.ds.len();
    let newest = rrd.last_update - rrd.last_update.rem_euclid(step);
    let rows = rra.rows as i64;
    let count = ((end - start) / step) as u64;
    if count > MAX_FETCH_ROWS || count.saturating_mul(ds_count as u64) > MAX_FETCH_VALUES {
        return Err(RrdError::Fetch(format!(
            "the window from {start} to {end} holds {count} rows of {step} s, more than the \
             {MAX_FETCH_ROWS} rows ({MAX_FETCH_VALUES} values) a fetch returns; narrow the \
             window or ask for a coarser resolution"
        )));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut ts = start + step;
    while ts <= end {
        let back = (newest - ts) / step;
        let values = if ts <= newest && back < rows {
            let row = (ring.cur_row as i64 - back).rem_euclid(rows) as usize;
            ring.values[row * ds_count..(row + 1) * ds_count].to_vec()
        } else {
            vec![f64::NAN; ds_count]
        };
        out.push((ts, values));
        ts += step;
    }
    Ok(FetchResult {
        start,
        end,
        step: step as u64,
        archive,
        names: rrd.ds.iter().map(|d| d.name.clone()).collect(),
        rows: out,
    })
}

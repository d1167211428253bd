//! The in-memory RRD: definitions, the live state between updates and the ring
//! buffers, with rrdtool's update rules (heartbeat, rates, PDP building, consolidation).

use std::collections::BTreeMap;

use super::consolidate::{self, CdpPrep, RowSink};
use super::def::{DsDef, DsType, RraDef};
use super::error::RrdError;
use super::fetch::{self, FetchRequest, FetchResult};
use super::value::RawValue;

/// The part-built primary data point of one data source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PdpPrep {
    /// The raw value of the last update (for COUNTER/DERIVE differences).
    pub last_raw: RawValue,
    /// Known rate × seconds accumulated in the current step; NaN when none.
    pub value: f64,
    /// Unknown seconds accumulated in the current step.
    pub unknown_sec: u64,
}

/// One archive's ring buffer: `rows × ds_count` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Ring {
    /// The row written last (the newest row).
    pub cur_row: u64,
    /// The values, row after row, each row holding one value per data source; empty
    /// when the rows were not loaded (a file opened for updating only).
    pub values: Vec<f64>,
    /// Rows written since the last [`Rrd::take_changes`] while `values` is not
    /// loaded, by row index (empty otherwise).
    pub unloaded_rows: BTreeMap<u64, Vec<f64>>,
}

impl Ring {
    /// Whether the values are in memory.
    pub fn is_loaded(&self) -> bool {
        !self.values.is_empty()
    }
}

/// Which rows of which archives changed since the last [`Rrd::take_changes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Per archive, the rows written (may repeat; sorted by [`Changes::ranges`]).
    pub rows: Vec<Vec<u64>>,
}

impl Changes {
    /// Per archive, the changed rows as sorted, merged `start..end` ranges.
    pub fn ranges(&self) -> Vec<Vec<std::ops::Range<u64>>> {
        self.rows
            .iter()
            .map(|rows| {
                let mut rows = rows.clone();
                rows.sort_unstable();
                rows.dedup();
                let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
                for row in rows {
                    match ranges.last_mut() {
                        Some(last) if last.end == row => last.end = row + 1,
                        _ => ranges.push(row..row + 1),
                    }
                }
                ranges
            })
            .collect()
    }
}

/// The latest time a database takes (the last second of year 9999): its updates, its
/// start and the ends of a fetch window lie within this many seconds of the epoch, so
/// that no time arithmetic of an update or a fetch can overflow.
pub const MAX_TIME: i64 = 253_402_300_799;

/// The most values (rows × data sources, over all archives) a database holds: 1 GiB.
pub const MAX_VALUES: u64 = 1 << 27;

/// Checks that a database of this shape stays within the engine's arithmetic and
/// memory: a row of each archive covers at most [`MAX_TIME`] seconds and the whole
/// archive a span a timestamp can hold, and all archives hold at most [`MAX_VALUES`].
pub(crate) fn check_shape(step: u64, ds_count: usize, rras: &[RraDef]) -> Result<(), RrdError> {
    if step == 0 || step > MAX_TIME as u64 {
        return Err(RrdError::definition(
            format!("--step {step}"),
            format!("the step must be 1 to {MAX_TIME} seconds"),
        ));
    }
    let mut values: u64 = 0;
    for r in rras {
        let spec = || format!("RRA:{}:{}:{}:{}", r.cf, r.xff, r.steps, r.rows);
        let span = step
            .checked_mul(r.steps)
            .filter(|&span| span <= MAX_TIME as u64)
            .ok_or_else(|| {
                RrdError::definition(
                    spec(),
                    format!(
                        "a row would cover {} steps of {step} s, more than the \
                         {MAX_TIME} seconds a database addresses; use fewer steps",
                        r.steps
                    ),
                )
            })?;
        span.checked_mul(r.rows)
            .filter(|&whole| whole <= i64::MAX as u64)
            .ok_or_else(|| {
                RrdError::definition(
                    spec(),
                    "the archive would span more seconds than a timestamp holds; use fewer rows",
                )
            })?;
        values = r
            .rows
            .checked_mul(ds_count as u64)
            .and_then(|v| values.checked_add(v))
            .filter(|&v| v <= MAX_VALUES)
            .ok_or_else(|| {
                RrdError::definition(
                    spec(),
                    format!(
                        "the archives would hold more than {MAX_VALUES} values (1 GiB); \
                         use fewer rows or data sources"
                    ),
                )
            })?;
    }
    Ok(())
}

/// A round-robin database held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Rrd {
    pub(crate) step: u64,
    pub(crate) ds: Vec<DsDef>,
    pub(crate) rras: Vec<RraDef>,
    pub(crate) last_update: i64,
    pub(crate) pdp: Vec<PdpPrep>,
    /// Archive-major: `cdp[rra * ds_count + ds]`.
    pub(crate) cdp: Vec<CdpPrep>,
    pub(crate) rings: Vec<Ring>,
    pub(crate) changes: Changes,
}

impl Rrd {
    /// A new, empty database whose first step starts at `start` (its last update).
    pub fn create(
        step: u64,
        start: i64,
        ds: Vec<DsDef>,
        rras: Vec<RraDef>,
    ) -> Result<Rrd, RrdError> {
        if step == 0 {
            return Err(RrdError::definition(
                "--step 0",
                "the step must be at least 1",
            ));
        }
        if !(0..=MAX_TIME).contains(&start) {
            return Err(RrdError::definition(
                format!("--start {start}"),
                "the start must lie between 1970 and the end of year 9999",
            ));
        }
        if ds.is_empty() {
            return Err(RrdError::definition("", "at least one DS is needed"));
        }
        if rras.is_empty() {
            return Err(RrdError::definition("", "at least one RRA is needed"));
        }
        for (i, d) in ds.iter().enumerate() {
            d.validate(&d.name)?;
            if ds[..i].iter().any(|other| other.name == d.name) {
                return Err(RrdError::definition(&d.name, "duplicate data source name"));
            }
        }
        for r in &rras {
            r.validate(r.cf.as_str())?;
        }
        check_shape(step, ds.len(), &rras)?;
        let into_step = start as u64 % step;
        let step_start = start as u64 - into_step;
        let pdp = ds
            .iter()
            .map(|_| PdpPrep {
                last_raw: RawValue::Unknown,
                value: f64::NAN,
                unknown_sec: into_step,
            })
            .collect();
        let cdp = rras
            .iter()
            .flat_map(|r| {
                let before = step_start % (step * r.steps) / step;
                ds.iter().map(move |_| CdpPrep::new(before))
            })
            .collect();
        let rings = rras
            .iter()
            .map(|r| Ring {
                cur_row: r.rows - 1,
                values: vec![f64::NAN; (r.rows as usize) * ds.len()],
                unloaded_rows: BTreeMap::new(),
            })
            .collect();
        Ok(Rrd {
            step,
            changes: Changes {
                rows: vec![Vec::new(); rras.len()],
            },
            ds,
            rras,
            last_update: start,
            pdp,
            cdp,
            rings,
        })
    }

    /// Seconds per primary data point.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The data sources, in file order.
    pub fn data_sources(&self) -> &[DsDef] {
        &self.ds
    }

    /// The archives, in file order.
    pub fn archives(&self) -> &[RraDef] {
        &self.rras
    }

    /// Whether every archive's rows are in memory (see [`Ring::values`]).
    pub fn is_loaded(&self) -> bool {
        self.rings.iter().all(Ring::is_loaded)
    }

    /// The same database with one more data source appended, unknown until its first
    /// updates, as if it had been there from the start with no values. The rows
    /// must be loaded.
    pub fn with_data_source(&self, def: DsDef) -> Result<Rrd, RrdError> {
        def.validate(&def.name)?;
        if !self.is_loaded() {
            return Err(RrdError::definition(
                &def.name,
                "the archives' rows must be loaded to add a data source",
            ));
        }
        if self.ds.iter().any(|d| d.name == def.name) {
            return Err(RrdError::definition(
                &def.name,
                "duplicate data source name",
            ));
        }
        let old_count = self.ds.len();
        let step_start = self.last_update - self.last_update.rem_euclid(self.step as i64);
        let mut pdp = self.pdp.clone();
        pdp.push(PdpPrep {
            last_raw: RawValue::Unknown,
            value: f64::NAN,
            unknown_sec: (self.last_update - step_start) as u64,
        });
        let mut cdp = Vec::with_capacity(self.rras.len() * (old_count + 1));
        let mut rings = Vec::with_capacity(self.rras.len());
        for (r, rra) in self.rras.iter().enumerate() {
            cdp.extend_from_slice(&self.cdp[r * old_count..(r + 1) * old_count]);
            let before = step_start as u64 % (self.step * rra.steps) / self.step;
            cdp.push(CdpPrep::new(before));
            let ring = &self.rings[r];
            let mut values = Vec::with_capacity(rra.rows as usize * (old_count + 1));
            for row in ring.values.chunks(old_count) {
                values.extend_from_slice(row);
                values.push(f64::NAN);
            }
            rings.push(Ring {
                cur_row: ring.cur_row,
                values,
                unloaded_rows: BTreeMap::new(),
            });
        }
        let mut ds = self.ds.clone();
        ds.push(def);
        Ok(Rrd {
            step: self.step,
            ds,
            rras: self.rras.clone(),
            last_update: self.last_update,
            pdp,
            cdp,
            rings,
            changes: Changes {
                rows: vec![Vec::new(); self.rras.len()],
            },
        })
    }

    /// The time of the last accepted update (the start time before the first one).
    pub fn last_update(&self) -> i64 {
        self.last_update
    }

    /// The live state of each data source.
    pub fn pdp_preps(&self) -> &[PdpPrep] {
        &self.pdp
    }

    /// The live state of each (archive, data source) pair, archive-major.
    pub fn cdp_preps(&self) -> &[CdpPrep] {
        &self.cdp
    }

    /// The ring buffers, one per archive.
    pub fn rings(&self) -> &[Ring] {
        &self.rings
    }

    /// The rows changed since the last call, which is reset.
    pub fn take_changes(&mut self) -> Changes {
        let empty = Changes {
            rows: vec![Vec::new(); self.rras.len()],
        };
        std::mem::replace(&mut self.changes, empty)
    }

    /// Chooses the archive a fetch reads from, as `rrdtool fetch` does: among archives
    /// of the same CF (or any one-step AVERAGE/MIN/MAX/LAST archive) the one whose
    /// span covers `start` with the resolution closest to the wish; failing that, the
    /// one covering most of the window (see [`mod@fetch`]).
    pub fn choose_archive(&self, request: &FetchRequest) -> Result<usize, RrdError> {
        fetch::choose_archive(self, request)
    }

    /// Reads the rows of the window from the chosen archive.
    pub fn fetch(&self, request: &FetchRequest) -> Result<FetchResult, RrdError> {
        fetch::fetch(self, request)
    }

    /// Applies one update: `values` has one raw value per data source. An update at or
    /// before the last one is ignored and `Ok(false)` returned.
    pub fn update(&mut self, time: i64, values: &[RawValue]) -> Result<bool, RrdError> {
        self.update_with(time, values, &mut UpdateScratch::default())
    }

    /// Applies one update as [`Rrd::update`], working in `scratch` (kept by the caller
    /// across updates, so an update allocates nothing).
    pub(crate) fn update_with(
        &mut self,
        time: i64,
        values: &[RawValue],
        scratch: &mut UpdateScratch,
    ) -> Result<bool, RrdError> {
        if values.len() != self.ds.len() {
            return Err(RrdError::update(
                format!("{time}:…"),
                format!(
                    "expected {} values (one per data source), got {}",
                    self.ds.len(),
                    values.len()
                ),
            ));
        }
        if time > MAX_TIME {
            return Err(RrdError::update(
                format!("{time}:…"),
                format!("the time must not be after {MAX_TIME} (the end of year 9999)"),
            ));
        }
        if time <= self.last_update {
            return Ok(false);
        }
        let step = self.step as i64;
        let interval = (time - self.last_update) as f64;
        let UpdateScratch {
            amounts: pdp_new,
            first,
            rest,
            row,
        } = scratch;
        pdp_new.clear();
        pdp_new.extend(self.ds.iter().zip(self.pdp.iter_mut()).zip(values).map(
            |((def, prep), &raw)| {
                let amount = rate_times_seconds(def, prep.last_raw, raw, interval);
                prep.last_raw = raw;
                amount
            },
        ));

        let proc_step_start = self.last_update - self.last_update.rem_euclid(step);
        let occu_step_start = time - time.rem_euclid(step);
        if occu_step_start == proc_step_start {
            for (prep, &amount) in self.pdp.iter_mut().zip(pdp_new.iter()) {
                if amount.is_nan() {
                    prep.unknown_sec += interval as u64;
                } else if prep.value.is_nan() {
                    prep.value = amount;
                } else {
                    prep.value += amount;
                }
            }
            self.last_update = time;
            return Ok(true);
        }

        let post_int = (time - occu_step_start) as f64;
        let elapsed = ((occu_step_start - proc_step_start) / step) as u64;
        // rrdtool 1.7 handles an update that closes several PDPs in one of two ways.
        // If the previous update ended a step, every closed PDP gets the same value,
        // the update's average over all of them. Otherwise the update is split: the
        // PDP the previous update left part-filled is closed with its known share,
        // and the rest of the update is applied as an update of its own, from that
        // PDP's end, whose rate fills the further PDPs.
        let on_boundary = self.last_update == proc_step_start;
        let split = !on_boundary && elapsed > 1;
        let (first_end, first_span) = if split {
            (proc_step_start + step, self.step as f64)
        } else {
            (occu_step_start, (elapsed * self.step) as f64)
        };
        let pre_int = (first_end - self.last_update) as f64;
        first.clear();
        rest.clear();
        for ((def, prep), &amount) in self.ds.iter().zip(self.pdp.iter_mut()).zip(pdp_new.iter()) {
            // When splitting, rrdtool first applies an update of its own up to the
            // first PDP's end, carrying the share `amount × pre / interval`; the
            // order of these operations shows in its rounding, so it is kept.
            let first_amount = amount * pre_int / interval;
            let first_part = if split {
                first_amount / pre_int * pre_int
            } else {
                amount / interval * pre_int
            };
            let mut pre_unknown = 0.0;
            if amount.is_nan() {
                pre_unknown = pre_int;
            } else {
                if prep.value.is_nan() {
                    prep.value = 0.0;
                }
                prep.value += first_part;
            }
            // Only the unknown time accumulated before this update counts against the
            // first PDP, not the unknown tail this update closes it with; the
            // heartbeat is checked against the stretch that reaches the PDP's end.
            let too_unknown = self.step as f64 / 2.0 < prep.unknown_sec as f64;
            let heartbeat_span = if split { pre_int } else { interval };
            let beyond_heartbeat = heartbeat_span > def.heartbeat as f64;
            first.push(if too_unknown || beyond_heartbeat {
                f64::NAN
            } else {
                prep.value / (first_span - prep.unknown_sec as f64 - pre_unknown)
            });
            // The rest of a split update, as an update of its own that starts on a
            // step boundary: its PDPs all get its average over the whole PDPs it
            // covers (rate × span / span, rounding included).
            let rest_amount = amount - first_amount;
            let rest_rate = rest_amount / (interval - pre_int);
            let rest_span = ((elapsed - 1) * self.step) as f64;
            rest.push(rest_rate * rest_span / rest_span);
            if amount.is_nan() {
                prep.unknown_sec = post_int as u64;
                prep.value = f64::NAN;
            } else {
                prep.unknown_sec = 0;
                let rate = if split { rest_rate } else { amount / interval };
                prep.value = rate * post_int;
            }
        }

        let first_pdp = (proc_step_start / step) as u64 + 1;
        let ds_count = self.ds.len();
        for (r, rra) in self.rras.iter().enumerate() {
            let preps = &mut self.cdp[r * ds_count..(r + 1) * ds_count];
            let mut sink = RingSink {
                ring: &mut self.rings[r],
                rows: rra.rows,
                written: 0,
                changed: &mut self.changes.rows[r],
            };
            // Each part writes at most one ring's worth of rows (its first row
            // consolidated normally, later ones repeating the part's value).
            if split {
                consolidate::feed(rra, preps, first, first_pdp, 1, row, &mut sink);
                sink.written = 0;
                let (next, count) = (first_pdp + 1, elapsed - 1);
                consolidate::feed(rra, preps, rest, next, count, row, &mut sink);
            } else {
                consolidate::feed(rra, preps, first, first_pdp, elapsed, row, &mut sink);
            }
        }
        self.last_update = time;
        Ok(true)
    }
}

/// The working buffers of [`Rrd::update_with`], one value per data source each.
#[derive(Clone, Debug, Default)]
pub(crate) struct UpdateScratch {
    /// Each data source's rate × seconds of the update.
    amounts: Vec<f64>,
    /// The PDP values the update closes first.
    first: Vec<f64>,
    /// The PDP values of the rest of a split update.
    rest: Vec<f64>,
    /// A consolidated row being built.
    row: Vec<f64>,
}

/// The known rate × seconds one update contributes, or NaN when unknown: the
/// heartbeat was exceeded, the value is `U`, a counter has no previous value, or the
/// rate lies outside the data source's bounds.
fn rate_times_seconds(def: &DsDef, previous: RawValue, raw: RawValue, interval: f64) -> f64 {
    if interval > def.heartbeat as f64 || raw.is_unknown() {
        return f64::NAN;
    }
    let (amount, rate) = match def.kind {
        DsType::Gauge => {
            let v = raw.as_f64();
            (v * interval, v)
        }
        DsType::Counter | DsType::Derive => {
            if previous.is_unknown() {
                return f64::NAN;
            }
            let diff = if def.kind == DsType::Counter {
                raw.counter_difference(previous)
            } else {
                raw.difference(previous)
            };
            (diff, diff / interval)
        }
        DsType::Absolute => {
            let v = raw.as_f64();
            (v, v / interval)
        }
    };
    let above = def.max.is_some_and(|max| rate > max);
    let below = def.min.is_some_and(|min| rate < min);
    if !rate.is_nan() && (above || below) {
        return f64::NAN;
    }
    amount
}

/// Writes completed rows into a ring buffer and records which rows changed.
///
/// Like rrdtool, one part of an update writes at most one ring's worth of rows: when
/// it completes more rows than the archive holds, its first row (the consolidation of
/// the points before a gap) is kept and only the following ones are capped.
struct RingSink<'a> {
    ring: &'a mut Ring,
    rows: u64,
    written: u64,
    changed: &'a mut Vec<u64>,
}

impl RowSink for RingSink<'_> {
    fn push_rows(&mut self, values: &[f64], repeat: u64) {
        let count = repeat.min(self.rows - self.written);
        for _ in 0..count {
            self.ring.cur_row = (self.ring.cur_row + 1) % self.rows;
            if self.ring.is_loaded() {
                let start = self.ring.cur_row as usize * values.len();
                self.ring.values[start..start + values.len()].copy_from_slice(values);
            } else {
                self.ring
                    .unloaded_rows
                    .insert(self.ring.cur_row, values.to_vec());
            }
            self.changed.push(self.ring.cur_row);
        }
        self.written += count;
    }
}

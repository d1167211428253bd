//! [`RrdStore`]: the engine's [`MetricStore`] on RRD files — one file per (remote,
//! entity) holding all the entity's metrics in the Proxmox VE 9 layout, behind a
//! synced journal that is replayed on start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fleetpoll_actors::{
    Cursor, MetricBatch, MetricKind, MetricStore, MetricWrite, RemoteId, StoreError,
};
use serde::{Deserialize, Serialize};

use super::crc::crc32;
use super::def::{Cf, DsDef, DsType, RraDef, MAX_DS_NAME_LEN};
use super::error::RrdError;
use super::file::RrdFile;
use super::journal::Journal;
use super::value::RawValue;
use super::Rrd;

/// Seconds per primary data point in the Proxmox VE 9 layout.
pub const PVE_STEP: u64 = 60;
/// Heartbeat of every data source in that layout.
pub const PVE_HEARTBEAT: u64 = 120;
/// `(PDPs per row, rows)` of its archives, each kept as AVERAGE and MAX.
pub const PVE_ARCHIVES: [(u64, u64); 4] = [(1, 1440), (30, 1440), (360, 1440), (10080, 570)];

/// How many files are kept open (and in memory) at once.
const OPEN_FILES: usize = 256;

/// The archives of the Proxmox VE 9 layout.
pub fn pve_archives() -> Vec<RraDef> {
    PVE_ARCHIVES
        .iter()
        .flat_map(|&(steps, rows)| {
            [Cf::Average, Cf::Max].map(|cf| RraDef {
                cf,
                xff: 0.5,
                steps,
                rows,
            })
        })
        .collect()
}

/// The data source a metric is stored as: GAUGE with min 0, counters with min 0 (a
/// DERIVE reset becomes unknown), heartbeat 120 s.
pub fn data_source_for(metric: &str, kind: MetricKind) -> DsDef {
    DsDef {
        name: ds_name(metric),
        kind: match kind {
            MetricKind::Gauge => DsType::Gauge,
            MetricKind::Counter => DsType::Counter,
            MetricKind::Derive => DsType::Derive,
        },
        heartbeat: PVE_HEARTBEAT,
        min: Some(0.0),
        max: None,
    }
}

/// A metric name as a data-source name: other characters than `[A-Za-z0-9_]` become
/// `_`; names longer than 19 characters keep 11 and gain a hash of the full name.
pub fn ds_name(metric: &str) -> String {
    let clean: String = metric
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !clean.is_empty() && clean.len() <= MAX_DS_NAME_LEN {
        return clean;
    }
    format!(
        "{:.11}_{:07x}",
        clean,
        crc32(metric.as_bytes()) & 0x0FFF_FFFF
    )
}

/// A name as one path component: `[A-Za-z0-9_.-]` kept (a leading `.` escaped), every
/// other byte as `%XX`.
fn file_component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One journal record: a remote's batch as received.
#[derive(Serialize, Deserialize)]
struct Record {
    remote: RemoteId,
    batch: MetricBatch,
}

/// One entity's points: timestamp -> `(index into the batch's series, value)`.
type PointsByTime = BTreeMap<i64, Vec<(usize, f64)>>;

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    journal: Journal,
    open: HashMap<PathBuf, RrdFile>,
    cursors: HashMap<RemoteId, Cursor>,
}

/// Metric storage on RRD files under one directory:
/// `DIR/<remote>/<entity>.rrd` (names escaped) and `DIR/journal`.
#[derive(Debug)]
pub struct RrdStore {
    inner: Mutex<Inner>,
}

/// What opening a store found in its journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Journal records applied again to the files.
    pub replayed: usize,
    /// Bytes of a torn or corrupt journal tail that were cut off.
    pub discarded_bytes: u64,
    /// Records that could not be applied (e.g. to a corrupt file), one message each;
    /// the store opens anyway and the rest of the journal is applied.
    pub errors: Vec<String>,
}

impl RrdStore {
    /// Opens the store in `dir` (created if missing) and replays its journal into the
    /// files; updates the files already had are ignored, so replay is idempotent.
    pub fn open(dir: &Path) -> Result<(RrdStore, Recovery), RrdError> {
        std::fs::create_dir_all(dir).map_err(|source| RrdError::Io {
            path: dir.to_path_buf(),
            io: source,
        })?;
        let (journal, replay) = Journal::open(&dir.join("journal"))?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            journal,
            open: HashMap::new(),
            cursors: HashMap::new(),
        };
        let mut recovery = Recovery {
            replayed: 0,
            discarded_bytes: replay.discarded_bytes,
            errors: Vec::new(),
        };
        for payload in &replay.records {
            let result = serde_json::from_slice::<Record>(payload)
                .map_err(|err| RrdError::Corrupt {
                    path: dir.join("journal"),
                    reason: format!("a record with an intact checksum does not parse: {err}"),
                })
                .and_then(|record| inner.apply(&record.remote, &record.batch));
            match result {
                Ok(_) => recovery.replayed += 1,
                Err(err) => recovery.errors.push(err.to_string()),
            }
        }
        Ok((
            RrdStore {
                inner: Mutex::new(inner),
            },
            recovery,
        ))
    }

    /// The file that holds an entity's metrics.
    pub fn file_path(dir: &Path, remote: &RemoteId, entity: &str) -> PathBuf {
        dir.join(file_component(remote.as_str()))
            .join(format!("{}.rrd", file_component(entity)))
    }

    /// Reads a stored entity's rows, as [`Rrd::fetch`]; `None` if nothing was stored.
    pub fn fetch(
        &self,
        remote: &RemoteId,
        entity: &str,
        request: &super::FetchRequest,
    ) -> Result<Option<super::FetchResult>, RrdError> {
        let mut inner = self.lock();
        let path = RrdStore::file_path(&inner.dir, remote, entity);
        if !inner.open.contains_key(&path) && !path.exists() {
            return Ok(None);
        }
        let file = inner.file(&path, None)?;
        file.fetch(request).map(Some)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves files consistent (each write is
        // positioned and the journal replays), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// The open file at `path`, opening it, or creating it with the data sources and
    /// start time in `create` when it does not exist.
    fn file(
        &mut self,
        path: &Path,
        create: Option<(&[DsDef], i64)>,
    ) -> Result<&mut RrdFile, RrdError> {
        if !self.open.contains_key(path) {
            if self.open.len() >= OPEN_FILES {
                let victim = self.open.keys().next().cloned();
                if let Some(file) = victim.and_then(|v| self.open.remove(&v)) {
                    file.sync()?;
                }
            }
            let file = match create {
                Some((defs, start)) if !path.exists() => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|source| RrdError::Io {
                            path: parent.to_path_buf(),
                            io: source,
                        })?;
                    }
                    let rrd = Rrd::create(PVE_STEP, start, defs.to_vec(), pve_archives())?;
                    RrdFile::create(path, rrd)?
                }
                _ => RrdFile::open(path)?,
            };
            self.open.insert(path.to_path_buf(), file);
        }
        Ok(self.open.get_mut(path).expect("inserted above"))
    }

    /// The file for an entity, created or grown (one rewrite) so that it has every
    /// data source in `defs`; returns the column of each.
    fn file_with(
        &mut self,
        path: &Path,
        defs: &[DsDef],
        start: i64,
    ) -> Result<Vec<usize>, RrdError> {
        let file = self.file(path, Some((defs, start)))?;
        let mut rrd = None;
        for def in defs {
            let current = rrd.as_ref().unwrap_or(file.rrd());
            if !current.data_sources().iter().any(|d| d.name == def.name) {
                rrd = Some(current.with_data_source(def.clone())?);
            }
        }
        if let Some(grown) = rrd {
            let old = self.open.remove(path).expect("opened above");
            self.open.insert(path.to_path_buf(), old.replace(grown)?);
        }
        let names = self.open[path].rrd().data_sources();
        Ok(defs
            .iter()
            .map(|def| {
                names
                    .iter()
                    .position(|d| d.name == def.name)
                    .expect("added above")
            })
            .collect())
    }

    /// Applies one remote's batch to its files; returns how many points were ignored
    /// (at or before their file's last update).
    fn apply(&mut self, remote: &RemoteId, batch: &MetricBatch) -> Result<usize, RrdError> {
        let mut by_entity: BTreeMap<&str, PointsByTime> = BTreeMap::new();
        for point in &batch.points {
            let Some(series) = batch.series.get(point.series as usize) else {
                continue;
            };
            by_entity
                .entry(&series.entity)
                .or_default()
                .entry(point.timestamp)
                .or_default()
                .push((point.series as usize, point.value));
        }
        // One entity's failure (a corrupt file) does not stop the others; the first
        // error is returned.
        let mut ignored = 0;
        let mut first_error = None;
        for (entity, times) in by_entity {
            match self.apply_entity(remote, batch, entity, times) {
                Ok(n) => ignored += n,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        let cursor = self.cursors.entry(remote.clone()).or_default();
        *cursor = cursor.advance(batch.newest());
        Ok(ignored)
    }

    /// Applies one entity's points (by time) to its file.
    fn apply_entity(
        &mut self,
        remote: &RemoteId,
        batch: &MetricBatch,
        entity: &str,
        times: PointsByTime,
    ) -> Result<usize, RrdError> {
        let path = RrdStore::file_path(&self.dir, remote, entity);
        // A new file starts just before its first point, so that point counts.
        let start = times.keys().next().map_or(0, |&t| (t - 1).max(0));
        // Every metric this batch has for the entity must be a data source.
        let mut series_order: Vec<usize> = Vec::new();
        for points in times.values() {
            for &(series, _) in points {
                if !series_order.contains(&series) {
                    series_order.push(series);
                }
            }
        }
        // Metric names that map to the same data-source name share its column.
        let mut defs: Vec<DsDef> = Vec::new();
        let mut def_of_series: Vec<(usize, usize)> = Vec::new();
        for series in series_order {
            let key = &batch.series[series];
            let def = data_source_for(&key.metric, key.kind);
            let index = match defs.iter().position(|d| d.name == def.name) {
                Some(index) => index,
                None => {
                    defs.push(def);
                    defs.len() - 1
                }
            };
            def_of_series.push((series, index));
        }
        let def_columns = self.file_with(&path, &defs, start)?;
        let columns: HashMap<usize, usize> = def_of_series
            .into_iter()
            .map(|(series, index)| (series, def_columns[index]))
            .collect();
        let file = self.file(&path, None)?;
        let width = file.rrd().data_sources().len();
        let updates: Vec<(i64, Vec<RawValue>)> = times
            .into_iter()
            .map(|(time, points)| {
                let mut values = vec![RawValue::Unknown; width];
                for (series, value) in points {
                    values[columns[&series]] = RawValue::from_f64(value);
                }
                (time, values)
            })
            .collect();
        file.update(&updates)
    }
}

fn store_error(err: RrdError) -> StoreError {
    StoreError(err.to_string())
}

impl MetricStore for RrdStore {
    fn store_metrics(&self, writes: &[MetricWrite]) -> Vec<Result<Cursor, StoreError>> {
        let mut inner = self.lock();
        let records: Result<Vec<Vec<u8>>, _> = writes
            .iter()
            .map(|w| {
                serde_json::to_vec(&Record {
                    remote: w.remote.clone(),
                    batch: w.batch.clone(),
                })
            })
            .collect();
        let journalled = match records {
            Ok(records) => inner.journal.append(&records).map_err(store_error),
            Err(err) => Err(StoreError(format!("cannot encode a journal record: {err}"))),
        };
        if let Err(err) = journalled {
            return writes.iter().map(|_| Err(err.clone())).collect();
        }
        writes
            .iter()
            .map(|w| {
                inner.apply(&w.remote, &w.batch).map_err(store_error)?;
                Ok(inner.cursors[&w.remote])
            })
            .collect()
    }

    fn cursor(&self, remote: &RemoteId) -> Cursor {
        let mut inner = self.lock();
        if let Some(cursor) = inner.cursors.get(remote) {
            return *cursor;
        }
        // Not seen since start: the newest last update among the remote's files.
        let dir = inner.dir.join(file_component(remote.as_str()));
        let newest = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "rrd"))
            .filter_map(|e| RrdFile::peek_last_update(&e.path()).ok())
            .filter(|&t| t > 0)
            .max();
        let cursor = Cursor(newest);
        inner.cursors.insert(remote.clone(), cursor);
        cursor
    }

    fn commit(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for file in inner.open.values() {
            file.sync().map_err(store_error)?;
        }
        inner.journal.clear().map_err(store_error)
    }
}

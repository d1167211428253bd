//! [`RrdStore`]: the engine's [`MetricStore`](fleetpoll_actors::MetricStore) on RRD files — one file per (remote,
//! entity) holding all the entity's metrics in the Proxmox VE 9 layout, behind a
//! synced journal. `store_metrics` only journals (and keeps the points in memory);
//! `commit` writes them into the files on the engine's cadence. The directory is locked
//! for the store's life; a damaged entity file is set aside (see [`super::damage`]), and
//! the points of an entity whose file cannot be written are quarantined (see
//! [`super::quarantine`]), so one bad file never holds up the journal.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use fleetpoll_actors::{Cursor, MetricBatch, RemoteId};

use super::cache::FileCache;
use super::damage::{DamageLog, DamagedFile};
use super::error::RrdError;
use super::file::RrdFile;
use super::journal::{Journal, JournalDamage};
use super::names::{self, KnownNames};
use super::pending::{Pending, TimedPoint};
use super::quarantine::{Quarantine, QuarantinedEntity};
use super::query::{Query, QueryResult};
use super::record;
use crate::durable::{
    create_dir_all_synced, sync_dir, FileLock, KernelSyncFs, SyncFs, WrittenFilesystems,
};

/// The lock file held by the open store, in its directory.
pub const LOCK_FILE: &str = "store.lock";

mod commit;
mod metric_store;

// The tests of `src/rrd/file.rs` still import these two from here.
#[cfg(test)]
pub(crate) use super::layout::{data_source_for, pve_archives};

/// How many files are kept open (and in memory) at once: 16 files of 12 data sources
/// hold about 15 MB. A commit walks every entity once, so a larger cache would not
/// save it reads; it serves the entities whose graphs are being looked at.
const OPEN_FILES: usize = 16;

/// Pending values (journalled, not yet in the files) above which `store_metrics`
/// commits early, to bound memory: 2 M values ≈ 17 MB. One commit interval of 30 min
/// at one point a minute for 50,000 entities × 12 metrics is 18 M values, and the
/// first poll of every remote brings 30 minutes of history at 10 s — 18 M values for
/// 1,000 remotes — so large fleets commit early several times per interval; each
/// commit writes an entity's file once, whatever number of points it has pending.
const MAX_PENDING_VALUES: usize = 2 << 20;

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

/// The entity name a file name stands for (the inverse of [`file_component`]), or
/// `None` when the name is not one the store writes.
fn entity_of_file_name(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".rrd")?;
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What the store knows about one entity between commits.
#[derive(Debug, Default)]
struct Entity {
    /// The newest time in its file or pending; later points at or before it are
    /// ignored. `None`: no file and nothing pending.
    last: Option<i64>,
    /// Journalled points not yet in the file.
    pending: Pending,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    journal: Journal,
    files: FileCache,
    entities: HashMap<PathBuf, Entity>,
    /// Values pending over all entities.
    pending_values: usize,
    cursors: HashMap<RemoteId, Cursor>,
    /// Damaged files set aside since the store was opened.
    damage: DamageLog,
    /// Points set aside because their entity's file could not be written.
    quarantine: Quarantine,
    /// The journal found at open is being replayed (until a commit succeeds): rows on
    /// disk may be newer than their checksums where a commit was cut short (see
    /// [`RrdFile::set_replaying`]).
    replaying: bool,
    /// The full names of shortened data sources, by file.
    names: KnownNames,
    /// The entities a commit has checked out and is writing (see [`commit`]).
    writing: HashSet<PathBuf>,
    /// How the written file systems are synced at a commit.
    sync: Arc<dyn SyncFs>,
    /// A file system sync failed since the store was opened: the kernel may have
    /// dropped the unwritten pages (and a later `syncfs` on the same handle reports
    /// success, the error having been reported once), so the sealed journal is kept,
    /// and replayed at the next open, instead of released.
    sync_failed: bool,
}

/// Metric storage on RRD files under one directory:
/// `DIR/<remote>/<entity>.rrd` (names escaped) and `DIR/journal`.
///
/// Durability comes from the journal: `store_metrics` appends and syncs it, then keeps
/// the points in memory; [`MetricStore::commit`](fleetpoll_actors::MetricStore::commit)
/// writes them into the files (only the changed rows, several files at once on a few
/// threads), syncs the file system they are on (one `syncfs` after the last write, not
/// one sync per file) and only then empties the journal. A fetch of an entity first
/// writes that entity's pending points into its (cached) file, so queries always see
/// every stored point.
#[derive(Debug)]
pub struct RrdStore {
    shared: Arc<Shared>,
}

/// What the store and its background commits share.
#[derive(Debug)]
struct Shared {
    /// Held briefly: a commit writes files without it (see [`commit`]).
    inner: parking_lot::Mutex<Inner>,
    /// Signalled when a commit checks an entity back in (see [`Inner::writing`]).
    checked_in: parking_lot::Condvar,
    /// Held through a whole commit: commits run one at a time.
    committing: Mutex<()>,
    /// An early commit runs in the background.
    early: AtomicBool,
    /// The store's directory (named by a failed sync).
    dir: PathBuf,
    /// How the written file systems are synced (as [`Inner::sync`]).
    sync: Arc<dyn SyncFs>,
    /// The directory's lock ([`LOCK_FILE`]), held while the store is open.
    _lock: FileLock,
    /// Every guest's and node's CPU and memory of the last hour, for the top lists.
    top: super::top::TopAggregate,
    /// Every entity's headline metric of the last hour, for a remote's trend lines.
    trend: super::trend::TrendAggregate,
}

/// What opening a store found in its journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Journal records applied again to the files.
    pub replayed: usize,
    /// Bytes of a torn or corrupt journal tail that were cut off.
    pub discarded_bytes: u64,
    /// Records that could not be applied (e.g. to a file that could not be written),
    /// one message each; the store opens anyway and the rest of the journal is applied.
    pub errors: Vec<String>,
    /// The unreadable ends of the journal files, kept aside (also logged at WARN).
    pub damaged_journal: Vec<JournalDamage>,
}

impl RrdStore {
    /// Opens the store in `dir` (created if missing), replays its journal into the
    /// files and empties it; points the files already had are ignored, so replay is
    /// idempotent. The directory is locked ([`LOCK_FILE`]) until the store is dropped:
    /// while another process (or handle) has it open this fails with
    /// [`RrdError::Locked`]. An unreadable end of the journal is copied aside
    /// (`journal.damaged-<unix time>`) and reported at WARN.
    pub fn open(dir: &Path) -> Result<(RrdStore, Recovery), RrdError> {
        RrdStore::open_with(dir, Arc::new(KernelSyncFs))
    }

    /// Opens the store as [`RrdStore::open`], syncing its file systems through `sync`
    /// (a test's stand-in for the kernel's `syncfs`).
    pub(crate) fn open_with(
        dir: &Path,
        sync: Arc<dyn SyncFs>,
    ) -> Result<(RrdStore, Recovery), RrdError> {
        // Synced into its parent: a new store's journal is no more durable than its name.
        create_dir_all_synced(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = FileLock::try_exclusive(&lock_path)?.ok_or_else(|| RrdError::Locked {
            dir: dir.to_path_buf(),
            lock: lock_path.clone(),
        })?;
        // Opened before any file is written: its `syncfs` answers for every later write.
        let filesystems = WrittenFilesystems::new(dir)?;
        let (journal, replay) = Journal::open(&dir.join("journal"))?;
        sync_dir(dir)?;
        for damage in &replay.damaged {
            tracing::warn!(
                journal = %damage.path.display(),
                offset = damage.offset,
                bytes = damage.bytes,
                kept_in = %damage.kept_in.display(),
                "{damage}"
            );
        }
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            journal,
            files: FileCache::new(OPEN_FILES, filesystems),
            entities: HashMap::new(),
            pending_values: 0,
            cursors: HashMap::new(),
            damage: DamageLog::default(),
            quarantine: Quarantine::new(dir),
            replaying: !replay.records.is_empty(),
            names: KnownNames::default(),
            writing: HashSet::new(),
            sync: sync.clone(),
            sync_failed: false,
        };
        let mut recovery = Recovery {
            replayed: 0,
            discarded_bytes: replay.discarded_bytes,
            errors: Vec::new(),
            damaged_journal: replay.damaged.clone(),
        };
        for payload in &replay.records {
            let result = record::decode(payload)
                .map_err(|reason| RrdError::Corrupt {
                    path: dir.join("journal"),
                    reason: format!("a record with an intact checksum does not decode: {reason}"),
                })
                .and_then(|(remote, batch)| inner.stage(&remote, &batch));
            match result {
                Ok(()) => recovery.replayed += 1,
                Err(err) => recovery.errors.push(err.to_string()),
            }
        }
        match inner.commit() {
            // Every replayed block is written: from now on a block that fails its
            // checksum is damage.
            Ok(()) => inner.replaying = false,
            // Entities left pending may still hold torn blocks: the next commit that
            // succeeds ends the replay.
            Err(err) => recovery.errors.push(err.to_string()),
        }
        Ok((
            RrdStore {
                shared: Arc::new(Shared {
                    inner: parking_lot::Mutex::new(inner),
                    checked_in: parking_lot::Condvar::new(),
                    committing: Mutex::new(()),
                    early: AtomicBool::new(false),
                    top: super::top::TopAggregate::default(),
                    trend: super::trend::TrendAggregate::default(),
                    dir: dir.to_path_buf(),
                    sync,
                    _lock: lock,
                }),
            },
            recovery,
        ))
    }

    /// The file that holds an entity's metrics.
    pub fn file_path(dir: &Path, remote: &RemoteId, entity: &str) -> PathBuf {
        dir.join(file_component(remote.as_str()))
            .join(format!("{}.rrd", file_component(entity)))
    }

    /// Reads a stored entity's rows, as [`Rrd::fetch`](super::Rrd::fetch); `None` if
    /// nothing was stored. Points not yet committed are written into the entity's file
    /// first (not synced; the journal still holds them), so the answer includes every
    /// stored point; an entity a commit is writing is answered once it is written.
    ///
    /// A file found damaged (every block of rows is verified when it is read) is set
    /// aside and the answer is [`RrdError::Damaged`], naming it; so is the answer for
    /// an entity whose damaged file was set aside and that has stored nothing since.
    /// Once new points are stored the entity answers from its fresh file.
    pub fn fetch(
        &self,
        remote: &RemoteId,
        entity: &str,
        request: &super::FetchRequest,
    ) -> Result<Option<super::FetchResult>, RrdError> {
        let path = RrdStore::file_path(&self.shared.dir, remote, entity);
        let mut inner = self.wait_written(self.lock(), &path);
        inner.flush(&path)?;
        if !inner.files.contains(&path) && !path.exists() {
            return match inner.damage.of(&path) {
                Some(damaged) => Err(damaged.error()),
                None => Ok(None),
            };
        }
        let fetched = match inner.files.get_or_open(&path, || RrdFile::open(&path)) {
            Ok(file) => file.load().and_then(|()| file.fetch(request)),
            Err(err) => Err(err),
        };
        match fetched {
            Err(RrdError::Corrupt {
                path: damaged,
                reason,
            }) if damaged == path => Err(inner.set_aside(&path, reason)?),
            other => other.map(Some),
        }
    }

    /// How many damaged files the store has set aside since it was opened.
    pub fn damaged_file_count(&self) -> u64 {
        self.lock().damage.count()
    }

    /// The damaged files set aside most recently (up to 100), oldest first.
    pub fn damaged_files(&self) -> Vec<DamagedFile> {
        self.lock().damage.recent()
    }

    /// The damaged files of one remote among [`RrdStore::damaged_files`] (for its
    /// status).
    pub fn damaged_files_of(&self, remote: &RemoteId) -> Vec<DamagedFile> {
        let inner = self.lock();
        let remote_dir = inner.dir.join(file_component(remote.as_str()));
        let mut found = inner.damage.recent();
        found.retain(|d| d.path.parent() == Some(remote_dir.as_path()));
        found
    }

    /// The file that holds points set aside because their entity's file could not be
    /// written (see [`super::quarantine`]).
    pub fn quarantine_file(&self) -> PathBuf {
        self.lock().quarantine.file().to_path_buf()
    }

    /// How many rows (timestamps of one entity) were quarantined since the store was
    /// opened.
    pub fn quarantined_rows(&self) -> u64 {
        self.lock().quarantine.rows()
    }

    /// The entities whose points were quarantined since the store was opened, by file.
    pub fn quarantined(&self) -> Vec<QuarantinedEntity> {
        self.lock().quarantine.entities()
    }

    /// Answers a query at time `now` (the end of a timeframe); `None` when the entity
    /// has never been stored. Points not yet committed are included. Asking for a
    /// metric the entity does not have, or a CF other than AVERAGE or MAX, is an
    /// error naming it. The fetch and the selection are [`Query`]'s.
    pub fn query(
        &self,
        remote: &RemoteId,
        query: &Query,
        now: i64,
    ) -> Result<Option<QueryResult>, RrdError> {
        let request = query.fetch_request(now)?;
        match self.fetch(remote, &query.entity, &request)? {
            Some(fetched) => {
                let mut result = query.select(remote, fetched)?;
                let path = RrdStore::file_path(&self.lock().dir, remote, &query.entity);
                let full = names::read(&path);
                for metric in &mut result.metrics {
                    if let Some(name) = full.get(&metric.name) {
                        metric.name = name.clone();
                    }
                }
                Ok(Some(result))
            }
            None => Ok(None),
        }
    }

    /// The top `n` guests and nodes of `remotes` by CPU and memory over the hour before
    /// `now`, from the aggregate kept at store time (no file is read).
    pub fn top(&self, remotes: &[RemoteId], now: i64, n: usize) -> super::top::TopLists {
        self.shared.top.top(remotes, now, n)
    }

    /// The last hour of the headline metric (CPU share, or a storage's used share) of
    /// every entity of `remote` with a sample in it, from memory; `None` while memory
    /// does not hold that whole hour (see [`super::trend`]): then query the files.
    pub fn hour_trends(
        &self,
        remote: &RemoteId,
        now: i64,
    ) -> Option<std::collections::HashMap<String, super::trend::HourTrend>> {
        self.shared.trend.hour(remote, now)
    }

    /// The entities stored for a remote (committed or pending), sorted; empty when
    /// the remote has none.
    pub fn entities(&self, remote: &RemoteId) -> Result<Vec<String>, RrdError> {
        let inner = self.lock();
        let remote_dir = inner.dir.join(file_component(remote.as_str()));
        let mut names = Vec::new();
        match std::fs::read_dir(&remote_dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|source| RrdError::Io {
                        path: remote_dir.clone(),
                        io: source,
                    })?;
                    if let Some(name) = entry.file_name().to_str().and_then(entity_of_file_name) {
                        names.push(name);
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RrdError::Io {
                    path: remote_dir,
                    io: source,
                })
            }
        }
        for (path, entity) in &inner.entities {
            let stored = !entity.pending.is_empty() || inner.writing.contains(path);
            if stored && path.parent() == Some(remote_dir.as_path()) {
                let file_name = path.file_name().and_then(|n| n.to_str());
                names.extend(file_name.and_then(entity_of_file_name));
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.shared.lock()
    }
}

impl Inner {
    /// Keeps one remote's (journalled) batch in memory until the next commit and
    /// advances its cursor. Points at or before their entity's newest time are
    /// dropped. An entity whose file cannot be read for a fault of its own has its
    /// points quarantined; one that cannot be read for the store's (or whose points
    /// cannot be quarantined) fails alone: the first such error is returned and the
    /// cursor is then left as it was.
    fn stage(&mut self, remote: &RemoteId, batch: &MetricBatch) -> Result<(), RrdError> {
        // Each series' entity, worked out once; then each entity's points in time
        // order (a stable sort keeps a batch's order among equal timestamps).
        let mut entities: Vec<&str> = Vec::new();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let entity_of_series: Vec<usize> = batch
            .series
            .iter()
            .map(|key| {
                *index_of.entry(&key.entity).or_insert_with(|| {
                    entities.push(&key.entity);
                    entities.len() - 1
                })
            })
            .collect();
        // Counted first, so each entity's points are one exact allocation (a fleet's
        // first poll brings millions of points).
        let mut counts = vec![0usize; entities.len()];
        for point in &batch.points {
            if let Some(&entity) = entity_of_series.get(point.series as usize) {
                counts[entity] += 1;
            }
        }
        let mut by_entity: Vec<Vec<TimedPoint>> =
            counts.into_iter().map(Vec::with_capacity).collect();
        for point in &batch.points {
            if let Some(&entity) = entity_of_series.get(point.series as usize) {
                by_entity[entity].push((point.timestamp, point.series as usize, point.value));
            }
        }
        for points in &mut by_entity {
            if !points.is_sorted_by_key(|&(time, _, _)| time) {
                points.sort_by_key(|&(time, _, _)| time);
            }
        }
        let by_entity = entities.into_iter().zip(by_entity);
        let mut first_error = None;
        for (entity, points) in by_entity {
            let path = RrdStore::file_path(&self.dir, remote, entity);
            if !self.entities.contains_key(&path) {
                let last = if self.files.contains(&path) || path.exists() {
                    match RrdFile::peek_last_update(&path) {
                        Ok(last) => Some(last),
                        // The entity starts afresh; the others go on.
                        Err(RrdError::Corrupt { reason, .. }) => {
                            match self.set_aside(&path, reason) {
                                Ok(_) => None,
                                Err(err) => {
                                    first_error.get_or_insert(err);
                                    continue;
                                }
                            }
                        }
                        Err(err) if err.is_entity_fault() => {
                            let mut quarantined = Pending::default();
                            quarantined.add(batch, &points, i64::MIN);
                            if let Err(err) = self.quarantine.set_aside(&path, &quarantined, &err) {
                                first_error.get_or_insert(err);
                            }
                            continue;
                        }
                        Err(err) => {
                            first_error.get_or_insert(err);
                            continue;
                        }
                    }
                } else {
                    None
                };
                self.entities.insert(
                    path.clone(),
                    Entity {
                        last,
                        pending: Pending::default(),
                    },
                );
            }
            let state = self.entities.get_mut(&path).expect("inserted above");
            let after = state.last.unwrap_or(i64::MIN);
            let (newest, added) = state.pending.add(batch, &points, after);
            if newest.is_some() {
                state.last = newest;
            }
            self.pending_values += added;
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        let cursor = self.cursors.entry(remote.clone()).or_default();
        *cursor = cursor.advance(batch.newest());
        Ok(())
    }

    /// Moves an entity's damaged file aside (out of the cache first), so that the
    /// entity starts a fresh one; returns the [`RrdError::Damaged`] saying so.
    fn set_aside(&mut self, path: &Path, reason: String) -> Result<RrdError, RrdError> {
        drop(self.files.take(path));
        self.damage.set_aside(path, reason)
    }
}

impl Shared {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves files consistent (each write is
        // positioned and the journal replays), so the lock has no poisoning.
        self.inner.lock()
    }
}

//! [`TaskCache`]: the rotating task cache of one directory, the engine's
//! [`TaskStore`]. Opening loads every file into the in-memory index (archives, then the
//! active file, then the journal), repairs what a crash or corruption left, and folds
//! the journal into the active file. Merging (`merge.rs`) and the file writes
//! (`apply.rs`, `rotation.rs`) are free functions its methods call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fleetpoll_actors::{RemoteId, StoreError, TaskQuery, TaskRef, TaskStore, TaskWrite, UnixTime};

use super::apply::apply_locked;
use super::error::TaskCacheError;
use super::files::{
    lock_writer, FileLock, LockKind, ACTIVE, IO_LOCK, JOURNAL, STATE, TRACKED, WRITER_LOCK,
};
use super::filter::{query, TaskFilter, TaskPage};
use super::index::{Index, Merged};
use super::journal::JournalEntry;
use super::load::load;
use super::merge;
use super::rotation::housekeep;
use super::snapshot::{self, SNAPSHOT_BEHIND_BYTES};
use super::state::{load_tracked, save_cutoffs, Cutoffs};
use crate::durable::{create_dir_all_synced, sync_dir, Journal, Replay};

/// First fetch of a node without a cutoff: the last 7 days.
pub const BACKFILL_SECS: i64 = 7 * 86_400;

/// What the cache holds in memory, behind the read-write lock queries share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) index: Index,
    pub(crate) cutoffs: Cutoffs,
    /// The UTC day of the active file.
    pub(crate) active_day: i64,
}

/// What only the writing handle has.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) journal: Journal,
    /// Slots changed since the journal was last applied.
    pub(crate) pending: Vec<u32>,
    /// The active file's bytes the snapshot on disk covers (`None`: there is no usable
    /// one).
    pub(crate) snapshot_covered: Option<u64>,
    _writer_lock: FileLock,
}

/// The rotating task cache of one directory (see `docs/task-cache.md`).
///
/// One handle per directory may write ([`TaskCache::open`]); any number of handles in
/// other processes may read ([`TaskCache::open_read_only`]). Queries are answered from
/// memory and may run concurrently with a write.
#[derive(Debug)]
pub struct TaskCache {
    pub(crate) dir: PathBuf,
    pub(crate) inner: RwLock<Inner>,
    pub(crate) writer: Mutex<Option<Writer>>,
    tracked: Mutex<Vec<TaskRef>>,
    problems: Vec<TaskCacheError>,
    /// Whether the last load used the snapshot.
    from_snapshot: AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The day number as stored in a slot.
pub(crate) fn slot_day(day: i64) -> u16 {
    day.clamp(0, i64::from(u16::MAX)) as u16
}

impl TaskCache {
    /// Opens (creating) the cache in `dir` for writing. `now` dates a new active file.
    /// Fails if another process has the cache open for writing.
    pub fn open(dir: impl AsRef<Path>, now: UnixTime) -> Result<TaskCache, TaskCacheError> {
        let dir = dir.as_ref().to_path_buf();
        // Synced into its parent: a new cache's journal is no more durable than its name.
        create_dir_all_synced(&dir)?;
        let writer_lock = lock_writer(&dir.join(WRITER_LOCK))?;
        let io = FileLock::acquire(&dir.join(IO_LOCK), LockKind::Exclusive)?;
        let mut problems = Vec::new();
        // Opening cuts a torn tail off the journal; a record that does not decode is
        // cut below.
        let (mut journal, found) = Journal::open(&dir.join(JOURNAL))?;
        // The journal may have just been created: its name must be as durable as the
        // records fsynced into it later.
        sync_dir(&dir)?;
        let loaded = load(&dir, Some(now), &found, &mut problems)?;
        drop(found);
        if loaded.journal_valid_len < journal.len() {
            journal.truncate(loaded.journal_valid_len)?;
        }
        let tracked = load_tracked(&dir.join(TRACKED), true, &mut problems)?;
        drop(io);
        let cache = TaskCache {
            dir,
            inner: RwLock::new(loaded.inner),
            writer: Mutex::new(Some(Writer {
                journal,
                pending: loaded.pending,
                snapshot_covered: loaded.snapshot_covered,
                _writer_lock: writer_lock,
            })),
            tracked: Mutex::new(tracked),
            problems,
            from_snapshot: AtomicBool::new(loaded.snapshot_covered.is_some()),
        };
        {
            let mut writer = lock(&cache.writer);
            if let Some(writer) = writer.as_mut() {
                apply_locked(&cache, writer)?;
                let _io = FileLock::acquire(&cache.dir.join(IO_LOCK), LockKind::Exclusive)?;
                if housekeep(&cache)?.changed {
                    // Archives were compressed or expired: the snapshot names the old ones.
                    writer.snapshot_covered = None;
                }
            }
        }
        if loaded.cutoffs_reset {
            cache.save_state()?;
        }
        if let Some(writer) = lock(&cache.writer).as_mut() {
            cache.snapshot_if_behind(writer);
        }
        for p in &cache.problems {
            tracing::warn!(error = %p, "task cache recovered from a problem on open");
        }
        Ok(cache)
    }

    /// Opens the cache in `dir` for reading only: a consistent snapshot of what the
    /// writer had stored, including its journal. Nothing on disk is changed.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<TaskCache, TaskCacheError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(TaskCacheError::io(&dir, "open directory")(
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let io = FileLock::acquire(&dir.join(IO_LOCK), LockKind::Shared)?;
        let mut problems = Vec::new();
        let found = Replay::read(&dir.join(JOURNAL))?;
        let loaded = load(&dir, None, &found, &mut problems)?;
        let tracked = load_tracked(&dir.join(TRACKED), false, &mut problems)?;
        drop(io);
        Ok(TaskCache {
            dir,
            from_snapshot: AtomicBool::new(loaded.snapshot_covered.is_some()),
            inner: RwLock::new(loaded.inner),
            writer: Mutex::new(None),
            tracked: Mutex::new(tracked),
            problems,
        })
    }

    /// Loads a fresh snapshot into a read-only handle (as costly as opening it) and
    /// returns the problems this load found. On the writing handle, which is always
    /// current, it does nothing.
    pub fn reload(&self) -> Result<Vec<TaskCacheError>, TaskCacheError> {
        if lock(&self.writer).is_some() {
            return Ok(Vec::new());
        }
        let io = FileLock::acquire(&self.dir.join(IO_LOCK), LockKind::Shared)?;
        let mut problems = Vec::new();
        let found = Replay::read(&self.dir.join(JOURNAL))?;
        let loaded = load(&self.dir, None, &found, &mut problems)?;
        let tracked = load_tracked(&self.dir.join(TRACKED), false, &mut problems)?;
        drop(io);
        *write(&self.inner) = loaded.inner;
        self.from_snapshot
            .store(loaded.snapshot_covered.is_some(), Ordering::Relaxed);
        *lock(&self.tracked) = tracked;
        Ok(problems)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Problems found and recovered from while opening (corrupt files set aside, a torn
    /// journal tail); each names its file and what was done.
    pub fn problems(&self) -> &[TaskCacheError] {
        &self.problems
    }

    /// Whether the last load read the index snapshot (and only the active file's lines
    /// after it) rather than every data file.
    pub fn loaded_from_snapshot(&self) -> bool {
        self.from_snapshot.load(Ordering::Relaxed)
    }

    /// Number of cached tasks.
    pub fn len(&self) -> usize {
        read(&self.inner).index.len()
    }

    /// Whether the cache holds no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The UTC day (days since the epoch) of the active file.
    pub fn active_day(&self) -> i64 {
        read(&self.inner).active_day
    }

    /// The tasks matching `filter`, newest first, with the total number of matches.
    pub fn query(&self, filter: &TaskFilter) -> TaskPage {
        query(&read(&self.inner).index, filter)
    }

    /// Merges the batches (idempotent: tasks already cached in the same or a later state
    /// are skipped), journals what changed with one fsync per group of up to 16 Ki
    /// tasks, then updates memory and the cutoffs of each batch's complete nodes.
    /// Returning means the batches survive a crash. The merge is `merge.rs`'s.
    pub fn store(&self, writes: &[TaskWrite]) -> Result<(), TaskCacheError> {
        merge::store(self, writes)
    }

    /// Folds the journal into the active file, writes the state file, and empties the
    /// journal; then writes the index snapshot again if the active file has grown past
    /// it by [`SNAPSHOT_BEHIND_BYTES`] and by what it covers of the file
    /// (`docs/task-cache.md`).
    pub fn apply(&self) -> Result<(), TaskCacheError> {
        let mut guard = lock(&self.writer);
        let Some(writer) = guard.as_mut() else {
            return Err(self.read_only());
        };
        apply_locked(self, writer)?;
        self.snapshot_if_behind(writer);
        Ok(())
    }

    /// Writes the snapshot if there is no usable one, or if the active file has grown
    /// past it by [`SNAPSHOT_BEHIND_BYTES`] and by at least what it covers of it (so a
    /// backfill that fills the active file at once writes a doubling series of
    /// snapshots, not one per 16 MiB, and an open decodes at most about half of the
    /// active file). The caller holds the writer and has applied the journal. A failure
    /// is logged: the snapshot only makes opening faster.
    pub(crate) fn snapshot_if_behind(&self, writer: &mut Writer) {
        let active = std::fs::metadata(self.dir.join(ACTIVE)).map_or(0, |m| m.len());
        let behind = writer.snapshot_covered.is_none_or(|covered| {
            let tail = active.saturating_sub(covered);
            tail >= SNAPSHOT_BEHIND_BYTES && tail >= covered
        });
        if behind {
            self.write_snapshot(writer);
        }
    }

    /// Writes the snapshot of memory as it is (the caller holds the writer and has
    /// applied the journal).
    pub(crate) fn write_snapshot(&self, writer: &mut Writer) {
        let started = tokio::time::Instant::now();
        match snapshot::write(&self.dir, &read(&self.inner)) {
            Ok(covered) => {
                writer.snapshot_covered = Some(covered);
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "wrote the task cache snapshot"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "writing the task cache snapshot failed; the next open reads every data file");
            }
        }
    }

    /// Rotates when `now` lies in a later UTC day than the active file: the journal is
    /// applied, the active file becomes that day's archive, archives older than the
    /// newest two are compressed, those beyond seven are deleted (and their tasks leave
    /// memory). Returns whether a rotation happened. The file work is in `rotation.rs`.
    pub fn rotate_at(&self, now: UnixTime) -> Result<bool, TaskCacheError> {
        super::rotation::rotate_at(self, now)
    }

    /// The stored cutoffs of a remote, per node.
    pub fn cutoffs(&self, remote: &RemoteId) -> BTreeMap<String, UnixTime> {
        read(&self.inner)
            .cutoffs
            .get(remote)
            .cloned()
            .unwrap_or_default()
    }

    /// The tracked tasks saved last.
    pub fn tracked(&self) -> Vec<TaskRef> {
        lock(&self.tracked).clone()
    }

    /// Replaces the tracked tasks, durably.
    pub fn set_tracked(&self, tracked: &[TaskRef]) -> Result<(), TaskCacheError> {
        let writer = lock(&self.writer);
        if writer.is_none() {
            return Err(self.read_only());
        }
        super::state::save_tracked(&self.dir.join(TRACKED), tracked)?;
        *lock(&self.tracked) = tracked.to_vec();
        Ok(())
    }

    pub(crate) fn read_only(&self) -> TaskCacheError {
        TaskCacheError::ReadOnly {
            path: self.dir.clone(),
        }
    }

    /// Writes the cutoffs (the last write of every change).
    pub(crate) fn save_state(&self) -> Result<(), TaskCacheError> {
        let cutoffs = read(&self.inner).cutoffs.clone();
        save_cutoffs(&self.dir.join(STATE), &cutoffs)
    }
}

fn store_error(e: &TaskCacheError) -> StoreError {
    StoreError(e.to_string())
}

impl TaskStore for TaskCache {
    fn store_tasks(&self, writes: &[TaskWrite]) -> Vec<Result<(), StoreError>> {
        match self.store(writes) {
            Ok(()) => writes.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "storing tasks failed");
                writes.iter().map(|_| Err(store_error(&e))).collect()
            }
        }
    }

    /// The stored cutoffs, none older than the backfill window: a task that stays
    /// "running" because the remote forgot it must not make every poll list more than
    /// the cache keeps.
    fn task_query(&self, remote: &fleetpoll_actors::RemoteId, now: UnixTime) -> TaskQuery {
        let default_since = now - BACKFILL_SECS;
        let mut cutoffs = self.cutoffs(remote);
        for c in cutoffs.values_mut() {
            *c = (*c).max(default_since);
        }
        TaskQuery {
            cutoffs,
            default_since,
            ..TaskQuery::default()
        }
    }

    fn has_running(&self, remote: &fleetpoll_actors::RemoteId) -> bool {
        let inner = read(&self.inner);
        inner
            .index
            .remote_id(remote)
            .is_some_and(|r| inner.index.has_running(r))
    }

    fn rotate(&self, now: UnixTime) -> Result<bool, StoreError> {
        self.rotate_at(now).map_err(|e| store_error(&e))
    }

    fn apply_journal(&self) -> Result<(), StoreError> {
        self.apply().map_err(|e| store_error(&e))
    }

    fn save_tracked(&self, tracked: &[TaskRef]) -> Result<(), StoreError> {
        self.set_tracked(tracked).map_err(|e| store_error(&e))
    }

    fn load_tracked(&self) -> Vec<TaskRef> {
        self.tracked()
    }
}

/// Sets the cutoffs of `remote`'s complete keys from the index.
pub(crate) fn advance_cutoffs(inner: &mut Inner, remote: &str, complete: &[String]) {
    let computed = complete_cutoffs(inner, remote, complete);
    set_cutoffs(inner, remote, computed);
}

/// The cutoffs of `remote`'s complete keys as the index has them now (computed under
/// the shared lock; [`set_cutoffs`] stores them).
pub(crate) fn complete_cutoffs(
    inner: &Inner,
    remote: &str,
    complete: &[String],
) -> Vec<(String, UnixTime)> {
    if complete.is_empty() {
        return Vec::new();
    }
    let Some(r) = inner.index.remote_id(&RemoteId::new(remote)) else {
        return Vec::new();
    };
    let computed = inner.index.cutoffs_of(r);
    complete
        .iter()
        .filter_map(|key| Some((key.clone(), *computed.get(key.as_str())?)))
        .collect()
}

/// Stores cutoffs of `remote`.
pub(crate) fn set_cutoffs(inner: &mut Inner, remote: &str, cutoffs: Vec<(String, UnixTime)>) {
    if cutoffs.is_empty() {
        return;
    }
    inner
        .cutoffs
        .entry(RemoteId::new(remote))
        .or_default()
        .extend(cutoffs);
}

/// Merges a journal entry into memory; returns the new and changed slots.
pub(crate) fn merge_entry(inner: &mut Inner, entry: &JournalEntry<'_>) -> Vec<u32> {
    let day = slot_day(inner.active_day);
    let Some(r) = inner.index.intern_remote(&entry.r) else {
        tracing::warn!(remote = %entry.r, "task cache holds 65,535 remotes; journalled tasks of another one are skipped");
        return Vec::new();
    };
    let mut changed = Vec::new();
    for t in &entry.t {
        if let Merged::New(i) | Merged::Finished(i) = inner.index.merge(r, t, day) {
            changed.push(i);
        }
    }
    changed
}

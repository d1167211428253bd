//! The commit path of [`RrdStore`]: pending points written into their entities' files
//! on several threads, the written file systems synced (one `syncfs` each), and only
//! then the journal's sealed part released.
//!
//! An entity's file is written in three steps: it is *checked out* under the store's
//! lock (its pending points and its cached file taken, the entity marked as being
//! written), written without the lock, and *checked in* under the lock again (the file
//! back in the cache, its file system noted for the sync, a failure handled). While an
//! entity is checked out, points stored for it wait in its fresh pending table and a
//! query of it waits for the check-in, so one entity's writes never overlap or reorder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Entity, Inner, RrdStore, Shared};
use crate::durable::{sync_dir, sync_filesystems};
use crate::rrd::error::RrdError;
use crate::rrd::file::RrdFile;
use crate::rrd::layout::{self, PVE_STEP};
use crate::rrd::pending::Pending;
use crate::rrd::Rrd;

/// At most this many threads write files in one commit (the caller's included): past
/// a few, the file system's own locks and the device are the limit.
const MAX_COMMIT_THREADS: usize = 4;

/// An entity's pending points taken out of the store to be written.
#[derive(Debug)]
pub(super) struct CheckedOut {
    /// The points to write.
    pending: Pending,
    /// The entity's file, when the cache had it open.
    file: Option<RrdFile>,
    /// Whether the journal found at open is still being replayed (see
    /// [`RrdFile::set_replaying`]).
    replaying: bool,
}

/// What writing a checked-out entity left: the file (when it could be opened or
/// created), to go back into the cache and be synced, and whether the points are in it.
#[derive(Debug)]
pub(super) struct Written {
    file: Option<RrdFile>,
    result: Result<(), RrdError>,
}

impl CheckedOut {
    /// Writes the points into the entity's file at `path` (created, or grown by new
    /// data sources, as needed), needing no lock: nothing else touches a checked-out
    /// entity's file. `dir` is the store's directory.
    fn write(&mut self, dir: &Path, path: &Path) -> Written {
        let mut file = self.file.take();
        let result = write_file(dir, path, &self.pending, self.replaying, &mut file);
        Written { file, result }
    }
}

/// [`CheckedOut::write`]'s work; `file` is the open file (opened or created here when
/// `None`), left as it ends up.
fn write_file(
    dir: &Path,
    path: &Path,
    pending: &Pending,
    replaying: bool,
    file: &mut Option<RrdFile>,
) -> Result<(), RrdError> {
    if file.is_none() {
        *file = Some(match RrdFile::open_for_update(path) {
            Ok(opened) => opened,
            Err(RrdError::Io { io, .. }) if io.kind() == std::io::ErrorKind::NotFound => {
                create_file(dir, path, pending)?
            }
            Err(err) => return Err(err),
        });
    }
    let opened = file.as_mut().expect("opened above");
    // Every data source the points need must be in the file: grow it (one atomic
    // rewrite) when some are missing.
    let has = |rrd: &Rrd, name: &str| rrd.data_sources().iter().any(|d| d.name == name);
    if pending.defs.iter().any(|def| !has(opened.rrd(), &def.name)) {
        opened.load()?;
        let mut grown: Option<Rrd> = None;
        for def in &pending.defs {
            let current = grown.as_ref().unwrap_or(opened.rrd());
            if !has(current, &def.name) {
                grown = Some(current.with_data_source(def.clone())?);
            }
        }
        if let Some(grown) = grown {
            let old = file.take().expect("opened above");
            *file = Some(old.replace(grown)?);
        }
    }
    let opened = file.as_mut().expect("opened above");
    let names = opened.rrd().data_sources();
    let columns: Vec<usize> = pending
        .defs
        .iter()
        .map(|def| {
            names
                .iter()
                .position(|d| d.name == def.name)
                .expect("added above")
        })
        .collect();
    let values = pending.updates(&columns, names.len());
    opened.set_replaying(replaying);
    opened
        .update_table(pending.times(), &values)
        .map(|_ignored| ())
}

/// Creates the file of an entity that has none, starting just before its first
/// pending point (so that point counts); its remote's directory too, if missing.
fn create_file(dir: &Path, path: &Path, pending: &Pending) -> Result<RrdFile, RrdError> {
    let parent = path.parent().unwrap_or(dir);
    if !parent.exists() {
        std::fs::create_dir_all(parent).map_err(|source| RrdError::Io {
            path: parent.to_path_buf(),
            io: source,
        })?;
        sync_dir(dir)?;
    }
    let start = pending.first_time().map_or(0, |t| (t - 1).max(0));
    let rrd = Rrd::create(
        PVE_STEP,
        start,
        pending.defs.clone(),
        layout::pve_archives(),
    )?;
    RrdFile::create(path, rrd)
}

/// The error a write that panicked is checked in with (its points stay pending).
fn panicked(path: &Path) -> RrdError {
    RrdError::Io {
        path: path.to_path_buf(),
        io: std::io::Error::other("writing the file panicked (a bug); its points stay pending"),
    }
}

impl Inner {
    /// Takes an entity's pending points (and its cached file) out to be written, and
    /// marks it as being written; `None` when it has nothing pending.
    fn check_out(&mut self, path: &Path) -> Option<CheckedOut> {
        let state = self.entities.get_mut(path)?;
        if state.pending.is_empty() {
            return None;
        }
        let pending = std::mem::take(&mut state.pending);
        self.writing.insert(path.to_path_buf());
        Some(CheckedOut {
            pending,
            file: self.files.take(path),
            replaying: self.replaying,
        })
    }

    /// Takes a written entity back: its file into the cache (its file system noted
    /// for the next sync), and the points counted as written. A file found damaged is
    /// set aside and the points go to a fresh one. On failure the points are pending
    /// again, before any stored since the check-out.
    fn check_in(
        &mut self,
        path: &Path,
        pending: Pending,
        written: Written,
    ) -> Result<(), RrdError> {
        self.writing.remove(path);
        let Written { file, mut result } = written;
        if let Some(file) = file {
            drop(self.files.take(path));
            self.files.insert(file);
            // Noted whatever the result: a failed update may have written some rows.
            if let Err(err) = self.files.mark_dirty(path) {
                result = result.and(Err(err));
            }
        }
        let damage = match &result {
            Err(RrdError::Corrupt {
                path: damaged,
                reason,
            }) if damaged == path => Some(reason.clone()),
            _ => None,
        };
        if let Some(reason) = damage {
            result = self.set_aside(path, reason).and_then(|_| {
                let mut file = None;
                let written = write_file(&self.dir, path, &pending, self.replaying, &mut file);
                if let Some(file) = file {
                    self.files.insert(file);
                    self.files.mark_dirty(path)?;
                }
                written
            });
        }
        match result {
            Ok(()) => {
                self.pending_values -= pending.value_count();
                if let Err(err) = self.names.note(path, &pending.long_names) {
                    tracing::warn!(file = %path.display(), error = %err,
                        "cannot write the full metric names of a file; answers show the short ones");
                }
                Ok(())
            }
            Err(err) => {
                self.restore(path, pending);
                Err(err)
            }
        }
    }

    /// Puts points that could not be written back in front of any pending since.
    fn restore(&mut self, path: &Path, mut pending: Pending) {
        let state = self.entities.entry(path.to_path_buf()).or_insert(Entity {
            last: None,
            pending: Pending::default(),
        });
        let newer = std::mem::take(&mut state.pending);
        // The newer points' values are counted already; so are the older ones', but
        // columns the newer ones add widen the older rows.
        let before = pending.value_count() + newer.value_count();
        pending.append(newer);
        self.pending_values += pending.value_count() - before;
        state.pending = pending;
    }

    /// Writes an entity's pending points into its file, all under the caller's lock
    /// (a query, or the commit at open); the file is left dirty in the cache. On
    /// failure the points stay pending.
    pub(super) fn flush(&mut self, path: &Path) -> Result<(), RrdError> {
        let Some(mut job) = self.check_out(path) else {
            return Ok(());
        };
        let written = job.write(&self.dir, path);
        self.check_in(path, job.pending, written)
    }

    /// After an entity's points failed to be written for a commit: when the fault is
    /// the entity's own ([`RrdError::is_entity_fault`]) its points are quarantined, so
    /// the commit can release the journal; a failure of the store's, or of writing
    /// the quarantine, keeps them pending and is returned.
    fn quarantine_failed(&mut self, path: &Path, err: RrdError) -> Result<(), RrdError> {
        if !err.is_entity_fault() {
            return Err(err);
        }
        let Some(state) = self.entities.get_mut(path) else {
            return Err(err);
        };
        let pending = std::mem::take(&mut state.pending);
        match self.quarantine.set_aside(path, &pending, &err) {
            Ok(()) => {
                self.pending_values -= pending.value_count();
                Ok(())
            }
            Err(quarantine_failed) => {
                if let Some(state) = self.entities.get_mut(path) {
                    state.pending = pending;
                }
                Err(quarantine_failed)
            }
        }
    }

    /// Writes an entity's pending points for a commit, under the caller's lock.
    fn commit_entity(&mut self, path: &Path) -> Result<(), RrdError> {
        match self.flush(path) {
            Err(err) => self.quarantine_failed(path, err),
            ok => ok,
        }
    }

    /// The entities with points pending, sorted.
    fn pending_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .entities
            .iter()
            .filter(|(_, e)| !e.pending.is_empty())
            .map(|(p, _)| p.clone())
            .collect();
        paths.sort();
        paths
    }

    /// Writes every pending point into the files, syncs their file system and empties
    /// the journal, all under the caller's lock (at open, before anyone else can look).
    pub(super) fn commit(&mut self) -> Result<(), RrdError> {
        self.journal.seal()?;
        let mut first_error = None;
        for path in self.pending_paths() {
            if let Err(err) = self.commit_entity(&path) {
                first_error.get_or_insert(err);
            }
        }
        let written = self.take_written()?;
        if let Err((failed, err)) = sync_filesystems(&*self.sync, &written, &self.dir) {
            self.sync_not_done(failed);
            return Err(err.into());
        }
        match first_error {
            Some(err) => Err(err),
            None => self.journal.release_sealed(),
        }
    }

    /// Hands over the file systems written since their last sync, to be synced.
    fn take_written(&mut self) -> Result<Vec<(u64, std::fs::File)>, RrdError> {
        self.files
            .filesystems()
            .take_written()
            .map_err(|io| RrdError::Io {
                path: self.dir.clone(),
                io,
            })
    }

    /// Takes back the file systems whose sync failed: they are synced again by the
    /// next commit, but the sealed journal is kept until the store is opened again.
    fn sync_not_done(&mut self, failed: Vec<u64>) {
        self.sync_failed = true;
        for dev in failed {
            self.files.filesystems().sync_failed(dev);
        }
    }
}

impl RrdStore {
    /// Waits until the entity at `path` is not being written by a commit (see the
    /// module's doc), so that its pending points and its file can be read.
    pub(super) fn wait_written<'a>(
        &'a self,
        mut inner: parking_lot::MutexGuard<'a, Inner>,
        path: &Path,
    ) -> parking_lot::MutexGuard<'a, Inner> {
        while inner.writing.contains(path) {
            self.shared.checked_in.wait(&mut inner);
        }
        inner
    }
}

impl Shared {
    /// Checks out, writes and checks in the entities `paths[i]` for `i` taken from
    /// `next`, until none is left; returns the errors, by index.
    fn commit_worker(&self, paths: &[PathBuf], next: &AtomicUsize) -> Vec<(usize, RrdError)> {
        let dir = self.dir.as_path();
        let mut errors = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = paths.get(i) else {
                return errors;
            };
            let mut inner = self.lock();
            while inner.writing.contains(path) {
                self.checked_in.wait(&mut inner);
            }
            let Some(mut job) = inner.check_out(path) else {
                continue;
            };
            drop(inner);
            let write = std::panic::AssertUnwindSafe(|| job.write(dir, path));
            let written = std::panic::catch_unwind(write).unwrap_or_else(|_panic| Written {
                file: None,
                result: Err(panicked(path)),
            });
            let mut inner = self.lock();
            let result = inner.check_in(path, job.pending, written);
            let result = match result {
                Err(err) => inner.quarantine_failed(path, err),
                ok => ok,
            };
            drop(inner);
            self.checked_in.notify_all();
            if let Err(err) = result {
                errors.push((i, err));
            }
        }
    }

    /// Writes every pending point into the files, syncs their file system (one
    /// `syncfs`) and drops the journal records they came from. The files are written
    /// on up to [`MAX_COMMIT_THREADS`] threads, each entity checked out under the lock
    /// and written without it (see the module's doc): queries and stores go on while
    /// a large commit runs. The sync follows every write, and the journal's sealed
    /// part is released only after the sync and only when every entity was written.
    /// Points stored meanwhile go to a fresh journal (and may reach the files in this
    /// commit too: replaying them is harmless). Entities whose files cannot be written
    /// have their points quarantined ([`Inner::quarantine_failed`]); entities that
    /// fail for the store's reasons keep their points pending and the sealed records
    /// are kept for the next commit; the error of the first such entity (in path
    /// order) is returned, naming its file.
    pub(super) fn commit_in_steps(&self) -> Result<(), RrdError> {
        let _one_at_a_time = self.committing.lock().unwrap_or_else(|e| e.into_inner());
        let paths = {
            let mut inner = self.lock();
            inner.journal.seal()?;
            inner.pending_paths()
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_COMMIT_THREADS)
            .min(paths.len().max(1));
        let next = AtomicUsize::new(0);
        let mut errors = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads)
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("rrd-commit".into())
                        .spawn_scoped(scope, || self.commit_worker(&paths, &next))
                        .ok()
                })
                .collect();
            let mut errors = self.commit_worker(&paths, &next);
            for helper in helpers {
                match helper.join() {
                    Ok(more) => errors.extend(more),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            errors
        });
        errors.sort_by_key(|(i, _)| *i);
        let first_error = errors.into_iter().next().map(|(_, err)| err);
        // Every point of the sealed part is in the files now (written by the workers
        // or by a query before them), and each write noted its file system.
        let written = self.lock().take_written()?;
        if let Err((failed, err)) = sync_filesystems(&*self.sync, &written, &self.dir) {
            self.lock().sync_not_done(failed);
            return Err(err.into());
        }
        let mut inner = self.lock();
        match first_error {
            Some(err) => Err(err),
            None if inner.sync_failed => {
                tracing::error!(
                    "a metric file system failed to sync earlier; the journal is kept until \
                     the store is opened again (restart fleetpoll once the disk is healthy)"
                );
                Ok(())
            }
            None => {
                inner.journal.release_sealed()?;
                inner.replaying = false;
                Ok(())
            }
        }
    }
}

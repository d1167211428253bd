//! The file writes of a [`TaskCache`]: folding the journal into the active file, and
//! daily rotation with compression and expiry. Every
//! change writes the state file (cutoffs) last.

use std::fs;
use std::io::{BufWriter, Write};

use fleetpoll_actors::{StoreError, TaskQuery, TaskRef, TaskStore, TaskWrite, UnixTime};

use super::cache::{lock, read, slot_day, write, TaskCache, Writer, BACKFILL_SECS};
use super::day::day_of;
use super::error::TaskCacheError;
use super::files::{archive_name, list_archives, FileLock, LockKind, ACTIVE, IO_LOCK};
use super::format::{header_line, write_line, DiskTask};
use crate::durable::{open_append, replace_with, sync_dir, sync_parent, write_atomic, Mode};

/// The journal is folded into the active file once it is this large.
pub const JOURNAL_APPLY_BYTES: u64 = 5 * 1024 * 1024;
/// Archives kept.
pub const ARCHIVES_KEPT: usize = 7;
/// Newest archives left uncompressed.
pub const ARCHIVES_UNCOMPRESSED: usize = 2;
/// zstd level of compressed archives.
const ZSTD_LEVEL: i32 = 3;

impl TaskCache {
    /// Folds the journal into the active file, writes the state file, and empties the
    /// journal.
    pub fn apply(&self) -> Result<(), TaskCacheError> {
        let mut guard = lock(&self.writer);
        let Some(writer) = guard.as_mut() else {
            return Err(self.read_only());
        };
        self.apply_locked(writer)
    }

    pub(crate) fn apply_locked(&self, writer: &mut Writer) -> Result<(), TaskCacheError> {
        if writer.pending.is_empty() && writer.journal.is_empty() {
            return Ok(());
        }
        let _io = FileLock::acquire(&self.dir.join(IO_LOCK), LockKind::Exclusive)?;
        let path = self.dir.join(ACTIVE);
        let active_day = read(&self.inner).active_day;
        let file = open_append(&path)?;
        let before = file
            .metadata()
            .map_err(TaskCacheError::io(&path, "stat"))?
            .len();
        let mut pending = std::mem::take(&mut writer.pending);
        pending.sort_unstable();
        pending.dedup();
        let written = (|| {
            let mut out = BufWriter::new(&file);
            if before == 0 {
                // A rotation that failed after renaming the old file left none.
                out.write_all(&header_line(active_day))
                    .map_err(TaskCacheError::io(&path, "append"))?;
            }
            {
                let inner = read(&self.inner);
                for &i in &pending {
                    let (remote, record) = inner.index.disk_line(i);
                    write_line(&mut out, &DiskTask::from_record(&remote, &record))
                        .map_err(TaskCacheError::io(&path, "append"))?;
                }
            }
            out.flush().map_err(TaskCacheError::io(&path, "append"))?;
            drop(out);
            file.sync_data().map_err(TaskCacheError::io(&path, "fsync"))
        })();
        let written = written.and_then(|()| {
            if before == 0 {
                Ok(sync_dir(&self.dir)?)
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // A cut-off line would make the whole file look corrupt on the next open.
            let _ = file.set_len(before);
            writer.pending = pending;
            return Err(e);
        }
        self.save_state()?;
        Ok(writer.journal.truncate(0)?)
    }

    /// Rotates when `now` lies in a later UTC day than the active file: the journal is
    /// applied, the active file becomes that day's archive, archives older than the
    /// newest two are compressed, those beyond seven are deleted (and their tasks leave
    /// memory). Returns whether a rotation happened.
    pub fn rotate_at(&self, now: UnixTime) -> Result<bool, TaskCacheError> {
        let mut guard = lock(&self.writer);
        let Some(writer) = guard.as_mut() else {
            return Err(self.read_only());
        };
        let new_day = day_of(now);
        let old_day = read(&self.inner).active_day;
        if new_day <= old_day {
            return Ok(false);
        }
        self.apply_locked(writer)?;
        let io = FileLock::acquire(&self.dir.join(IO_LOCK), LockKind::Exclusive)?;
        let active = self.dir.join(ACTIVE);
        let archived = self.dir.join(archive_name(old_day, false));
        if archived.exists() {
            return Err(TaskCacheError::io(&archived, "rotate into")(
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "an archive of that day exists; move it away to let rotation go on",
                ),
            ));
        }
        fs::rename(&active, &archived).map_err(TaskCacheError::io(&active, "rename to archive"))?;
        // From here on the old day is archived: should creating the new file fail, the
        // next apply starts it with the new day's header.
        write(&self.inner).active_day = new_day;
        write_atomic(&active, &header_line(new_day), Mode::WorldReadable)?;
        let n = self.housekeep()?;
        tracing::info!(day = new_day, archives = n, "rotated task cache");
        drop(io);
        self.save_state()?;
        Ok(true)
    }

    /// Compresses archives older than the newest two and deletes those beyond the
    /// newest seven (their tasks leave memory); returns how many archives remain. The
    /// caller holds the exclusive IO lock. Rotation calls it, and so does opening, which
    /// finishes a rotation a crash interrupted.
    pub(crate) fn housekeep(&self) -> Result<usize, TaskCacheError> {
        let archives = list_archives(&self.dir)?;
        let n = archives.len();
        for (age, a) in archives.iter().rev().enumerate() {
            if age >= ARCHIVES_KEPT {
                // Both spellings: a crash between compressing and removing the plain
                // file leaves the two side by side.
                for compressed in [false, true] {
                    let path = self.dir.join(archive_name(a.day, compressed));
                    match fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(TaskCacheError::io(&path, "remove")(e));
                        }
                        _ => {}
                    }
                }
                sync_dir(&self.dir)?;
                let dropped = write(&self.inner).index.drop_day(slot_day(a.day));
                tracing::info!(file = %a.path.display(), tasks = dropped, "expired task archive");
            } else if age >= ARCHIVES_UNCOMPRESSED && !a.compressed {
                compress(&a.path, &self.dir.join(archive_name(a.day, true)))?;
            }
        }
        Ok(n.min(ARCHIVES_KEPT))
    }
}

/// Writes the zstd copy of `plain` to `target` durably (mode 0644, like every file of
/// the cache, for readers running as other users), then removes `plain`.
fn compress(plain: &std::path::Path, target: &std::path::Path) -> Result<(), TaskCacheError> {
    let input = fs::File::open(plain).map_err(TaskCacheError::io(plain, "open"))?;
    replace_with(target, Mode::WorldReadable, |output| {
        zstd::stream::copy_encode(input, output, ZSTD_LEVEL)
    })?;
    fs::remove_file(plain).map_err(TaskCacheError::io(plain, "remove"))?;
    Ok(sync_parent(target)?)
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_compressed_archive_is_0644_even_over_a_leftover_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join(archive_name(20_000, false));
        let target = dir.path().join(archive_name(20_000, true));
        fs::write(&plain, b"{\"line\":1}\n").unwrap();
        let leftover = crate::durable::temp_path(&target);
        fs::write(&leftover, b"cut short").unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o600)).unwrap();
        compress(&plain, &target).unwrap();
        assert!(!plain.exists() && !leftover.exists());
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let bytes = zstd::decode_all(fs::File::open(&target).unwrap()).unwrap();
        assert_eq!(bytes, b"{\"line\":1}\n");
    }
}

//! Daily rotation of the task archive ([`TaskCache::rotate_at`]): when a UTC day has
//! passed, the journal is applied, the active file becomes the day's archive, archives
//! past the newest two are compressed and those past the newest seven deleted. The
//! state file is written, then the index snapshot (which names the new set of files).

use std::fs;

use fleetpoll_actors::UnixTime;

use super::apply::apply_locked;
use super::cache::{lock, read, slot_day, write, TaskCache};
use super::day::day_of;
use super::error::TaskCacheError;
use super::files::{archive_name, list_archives, FileLock, LockKind, ACTIVE, IO_LOCK};
use super::format::header_line;
use crate::durable::{replace_with, sync_dir, sync_parent, write_atomic, Mode};

/// Archives kept.
pub const ARCHIVES_KEPT: usize = 7;
/// Newest archives left uncompressed.
pub const ARCHIVES_UNCOMPRESSED: usize = 2;
/// zstd level of compressed archives.
const ZSTD_LEVEL: i32 = 3;

/// [`TaskCache::rotate_at`]: when `now` lies in a later UTC day than the active file,
/// applies the journal, archives the active file and keeps house.
pub(super) fn rotate_at(cache: &TaskCache, now: UnixTime) -> Result<bool, TaskCacheError> {
    let mut guard = lock(&cache.writer);
    let Some(writer) = guard.as_mut() else {
        return Err(cache.read_only());
    };
    let new_day = day_of(now);
    let old_day = read(&cache.inner).active_day;
    if new_day <= old_day {
        return Ok(false);
    }
    apply_locked(cache, writer)?;
    let io = FileLock::acquire(&cache.dir.join(IO_LOCK), LockKind::Exclusive)?;
    let active = cache.dir.join(ACTIVE);
    let archived = cache.dir.join(archive_name(old_day, false));
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
    write(&cache.inner).active_day = new_day;
    write_atomic(&active, &header_line(new_day), Mode::WorldReadable)?;
    writer.snapshot_covered = None;
    let kept = housekeep(cache)?;
    tracing::info!(
        day = new_day,
        archives = kept.archives,
        "rotated task cache"
    );
    drop(io);
    cache.save_state()?;
    cache.write_snapshot(writer);
    Ok(true)
}

/// What [`housekeep`] did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Housekept {
    /// Archives that remain.
    pub(super) archives: usize,
    /// Whether an archive was compressed or deleted.
    pub(super) changed: bool,
}

/// Compresses archives older than the newest two and deletes those beyond the
/// newest seven (their tasks leave memory). The caller holds the exclusive IO lock.
/// Rotation calls it, and so does opening, which finishes a rotation a crash
/// interrupted.
pub(super) fn housekeep(cache: &TaskCache) -> Result<Housekept, TaskCacheError> {
    let archives = list_archives(&cache.dir)?;
    let n = archives.len();
    let mut changed = false;
    for (age, a) in archives.iter().rev().enumerate() {
        if age >= ARCHIVES_KEPT {
            // Both spellings: a crash between compressing and removing the plain
            // file leaves the two side by side.
            for compressed in [false, true] {
                let path = cache.dir.join(archive_name(a.day, compressed));
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(TaskCacheError::io(&path, "remove")(e));
                    }
                    _ => {}
                }
            }
            sync_dir(&cache.dir)?;
            changed = true;
            let dropped = write(&cache.inner).index.drop_day(slot_day(a.day));
            tracing::info!(file = %a.path.display(), tasks = dropped, "expired task archive");
        } else if age >= ARCHIVES_UNCOMPRESSED && !a.compressed {
            compress(&a.path, &cache.dir.join(archive_name(a.day, true)))?;
            changed = true;
        }
    }
    Ok(Housekept {
        archives: n.min(ARCHIVES_KEPT),
        changed,
    })
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

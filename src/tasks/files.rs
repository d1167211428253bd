//! The files of one cache directory: their names, the archives among them, bad files
//! set aside, and the advisory locks that let readers in other processes load while the
//! engine writes. Files are written through [`crate::durable`].

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::day::{format_day, parse_day};
use super::error::TaskCacheError;
use crate::durable::{open_append, sync_parent};

/// The file the active day's records are appended to.
pub(crate) const ACTIVE: &str = "active.jsonl";
/// The write-ahead journal.
pub(crate) const JOURNAL: &str = "journal.bin";
/// Per-(remote, node) cutoffs, replaced atomically and written last.
pub(crate) const STATE: &str = "state.json";
/// The tasks the manager tracks.
pub(crate) const TRACKED: &str = "tracked.json";
/// Shared while reading, exclusive while changing files.
pub(crate) const IO_LOCK: &str = "io.lock";
/// Held exclusively for the life of the one writing handle.
pub(crate) const WRITER_LOCK: &str = "writer.lock";

/// One dated archive file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Archive {
    /// The UTC day whose active file it was.
    pub(crate) day: i64,
    /// Whether it is zstd-compressed.
    pub(crate) compressed: bool,
    /// Its path.
    pub(crate) path: PathBuf,
}

/// The name of a day's archive.
pub(crate) fn archive_name(day: i64, compressed: bool) -> String {
    let ext = if compressed { ".zst" } else { "" };
    format!("archive-{}.jsonl{ext}", format_day(day))
}

/// The archives in `dir`, oldest first (files set aside as `*.corrupt` are not listed).
pub(crate) fn list_archives(dir: &Path) -> Result<Vec<Archive>, TaskCacheError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(TaskCacheError::io(dir, "list directory"))? {
        let entry = entry.map_err(TaskCacheError::io(dir, "list directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("archive-") else {
            continue;
        };
        let (date, compressed) = if let Some(date) = rest.strip_suffix(".jsonl.zst") {
            (date, true)
        } else if let Some(date) = rest.strip_suffix(".jsonl") {
            (date, false)
        } else {
            continue;
        };
        if let Some(day) = parse_day(date) {
            out.push(Archive {
                day,
                compressed,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|a| (a.day, a.compressed));
    // A crash between writing a compressed copy and removing the plain one leaves both;
    // the plain one is complete, so keep it and drop the duplicate from the list.
    out.dedup_by(|later, earlier| later.day == earlier.day);
    Ok(out)
}

/// Renames a bad file to `<name>.corrupt` (or `<name>.corrupt.N` if that exists), never
/// overwriting an earlier one.
pub(crate) fn set_aside(path: &Path) -> Result<PathBuf, TaskCacheError> {
    let base = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut target = path.with_file_name(format!("{base}.corrupt"));
    let mut n = 1;
    while target.exists() {
        target = path.with_file_name(format!("{base}.corrupt.{n}"));
        n += 1;
    }
    fs::rename(path, &target).map_err(TaskCacheError::io(path, "rename aside"))?;
    sync_parent(path)?;
    Ok(target)
}

/// Which advisory lock to take on the cache's `io.lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// Readers: many at once, none while a writer changes files.
    Shared,
    /// The writer while it changes files.
    Exclusive,
}

/// An advisory `flock` on a lock file, released on drop.
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
}

impl FileLock {
    /// Blocks until the lock is held.
    pub(crate) fn acquire(path: &Path, kind: LockKind) -> Result<FileLock, TaskCacheError> {
        let file = open_append(path)?;
        let result = match kind {
            LockKind::Shared => fs4::FileExt::lock_shared(&file),
            LockKind::Exclusive => fs4::FileExt::lock(&file),
        };
        result.map_err(TaskCacheError::io(path, "lock"))?;
        Ok(FileLock { file })
    }

    /// Takes the exclusive lock or fails at once if another process holds it.
    pub(crate) fn try_exclusive(path: &Path) -> Result<FileLock, TaskCacheError> {
        let file = open_append(path)?;
        fs4::FileExt::try_lock(&file).map_err(|e| TaskCacheError::Busy {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

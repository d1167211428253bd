//! The files of one cache directory: their names, the archives among them, bad files
//! set aside, and the advisory locks (a [`crate::durable::FileLock`] each) that let
//! readers in other processes load while the engine writes. Files are written through
//! [`crate::durable`].

use std::fs;
use std::path::{Path, PathBuf};

use super::day::{format_day, parse_day};
use super::error::TaskCacheError;
use crate::durable::move_aside;
pub(crate) use crate::durable::{FileLock, LockKind};

/// The file the active day's records are appended to.
pub(crate) const ACTIVE: &str = "active.jsonl";
/// The write-ahead journal.
pub(crate) const JOURNAL: &str = "journal.bin";
/// Per-(remote, node) cutoffs, replaced atomically and written last.
pub(crate) const STATE: &str = "state.json";
/// The file name of the index snapshot in a cache directory: the index as the data
/// files make it, so that opening need not decode them all.
pub const SNAPSHOT: &str = "index.snapshot";
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
    Ok(move_aside(path, "corrupt")?)
}

/// Takes the writer's lock of a cache directory, or fails at once naming the lock file
/// if another process holds it.
pub(crate) fn lock_writer(path: &Path) -> Result<FileLock, TaskCacheError> {
    FileLock::try_exclusive(path)?.ok_or_else(|| TaskCacheError::Busy {
        path: path.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
    })
}

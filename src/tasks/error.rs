//! Errors of the task cache: each names the file it concerns and says what happens next.

use std::path::PathBuf;

use crate::durable::DurableError;

/// A task cache operation failed, or a problem was found and recovered from on open.
#[derive(Debug, thiserror::Error)]
pub enum TaskCacheError {
    /// A file could not be read, written, synced or renamed.
    #[error("task cache file {path}: {action} failed: {source}; check the permissions and free space of the cache directory")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was attempted (`open`, `fsync`, `rename`, …).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the cache for writing.
    #[error("task cache {path} is held for writing by another process ({source}); stop it or configure another cache directory")]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// Why the lock was refused.
        #[source]
        source: std::io::Error,
    },
    /// A data file could not be decoded; it was renamed aside and its range will be fetched again.
    #[error("task cache file {path} is corrupt ({problem}); it was renamed to {set_aside} and the cutoffs were reset to {reset_to} so that range is fetched again from the remotes")]
    CorruptFile {
        /// The corrupt file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// Where it was moved (never overwritten, never deleted).
        set_aside: PathBuf,
        /// The start of the day the file covered; no cutoff stays later than this.
        reset_to: i64,
    },
    /// A read-only handle found a corrupt data file and skipped it.
    #[error("task cache file {path} is corrupt ({problem}); this read-only handle skipped it, the writer sets it aside and refetches its range when it next opens the cache")]
    CorruptFileSkipped {
        /// The corrupt file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The index snapshot is damaged; the data files were read instead.
    #[error("task cache snapshot {path} is corrupt ({problem}); every data file was read instead (slower, nothing lost), and the writer replaces the snapshot")]
    CorruptSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The journal ended in a torn or corrupt record; replay stopped there.
    #[error("task cache journal {path}: replay stopped at byte {offset} ({problem}); the {dropped_bytes} bytes after it were never acknowledged complete and are dropped")]
    JournalTail {
        /// The journal file.
        path: PathBuf,
        /// Offset of the first record not replayed.
        offset: u64,
        /// Why the record was not replayed (torn length, checksum mismatch, bad payload).
        problem: String,
        /// How many bytes were dropped.
        dropped_bytes: u64,
    },
    /// The state file (cutoffs) or tracked-task file could not be decoded.
    #[error("task cache file {path} is unreadable ({problem}); it was renamed to {set_aside} and starts empty (cutoffs fall back to the 7-day backfill)")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// Where it was moved.
        set_aside: PathBuf,
    },
    /// Entries of the tracked-task file that are not task references; the others are kept.
    #[error("task cache file {path}: {dropped} entries are not task references (a remote and a UPID), the first {first}; they are no longer tracked, the file's other entries are")]
    TrackedDropped {
        /// The tracked-task file.
        path: PathBuf,
        /// How many entries were dropped.
        dropped: usize,
        /// The first of them, as the file had it.
        first: String,
    },
    /// A batch of a new remote arrived when the cache already holds tasks of 65,535
    /// remotes, the most its index addresses.
    #[error("task cache {path} holds tasks of 65,535 remotes, the most it addresses; the batch of another remote was not stored")]
    TooManyRemotes {
        /// The cache directory.
        path: PathBuf,
    },
    /// A write was attempted on a handle opened read-only.
    #[error("task cache {path} was opened read-only; open it with TaskCache::open to write")]
    ReadOnly {
        /// The cache directory.
        path: PathBuf,
    },
}

impl From<DurableError> for TaskCacheError {
    /// A [`TaskCacheError::Io`], the failed step as its action.
    fn from(e: DurableError) -> Self {
        TaskCacheError::Io {
            path: e.path,
            action: e.op,
            source: e.io,
        }
    }
}

impl TaskCacheError {
    /// An IO error on `path` while doing `action`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let at = DurableError::at(path, action);
        move |source| at(source).into()
    }
}

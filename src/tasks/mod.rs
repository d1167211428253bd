//! The rotating task cache: every remote's task list, kept on disk in one directory and
//! answered from an in-memory index. The on-disk layout and its crash guarantees are in
//! `docs/task-cache.md`.
//!
//! # Layout
//!
//! - `cache`: [`TaskCache`] and every method of it, the
//!   [`fleetpoll_actors::TaskStore`] implementation; opening (repairing what a crash
//!   left).
//! - `load`: loading a directory into memory: from the snapshot and the active file's
//!   newest lines, or from every data file, then the journal.
//! - `snapshot`: the index snapshot file, checked against the data files it covers.
//! - `merge`: the work of `store`: batches planned under the shared lock, journalled,
//!   applied in short steps under the write lock.
//! - `apply`: folding the journal into the active file.
//! - `rotation`: daily archive rotation, compression and expiry.
//! - `filter`: [`TaskFilter`] queries.
//! - `index`: the in-memory index (deduplication, per-remote orderings, cutoffs), and
//!   its binary form in the snapshot (`index/persist.rs`).
//! - `slots`: the 28-byte task slots in fixed-size chunks, and the shared task shapes.
//! - `intern`: the string table behind the index.
//! - `format`: the JSON-lines record format of the data files.
//! - `journal`: the write-ahead journal's JSON entries, appended to and replayed from a
//!   [`crate::durable::Journal`].
//! - `state`: the cutoff and tracked-task files.
//! - `files`: file names, archives, setting bad files aside, locks.
//! - `day`: UTC days and their `YYYY-MM-DD` names.
//! - `error`: [`TaskCacheError`].

mod apply;
mod cache;
mod day;
mod error;
pub(crate) mod files;
mod filter;
pub(crate) mod format;
pub(crate) mod index;
mod intern;
pub(crate) mod journal;
mod load;
mod merge;
mod rotation;
mod slots;
pub(crate) mod snapshot;
pub(crate) mod state;

pub use apply::JOURNAL_APPLY_BYTES;
pub use cache::{TaskCache, BACKFILL_SECS};
pub use error::TaskCacheError;
pub use files::SNAPSHOT;
pub use filter::{CachedTask, StatusClass, TaskFilter, TaskPage, DEFAULT_LIMIT, FUTURE_SKEW_SECS};
pub use rotation::{ARCHIVES_KEPT, ARCHIVES_UNCOMPRESSED};
pub use snapshot::SNAPSHOT_BEHIND_BYTES;

//! The rotating task cache: every remote's task list, kept on disk in one directory and
//! answered from an in-memory index. The on-disk layout and its crash guarantees are in
//! `docs/task-cache.md`.
//!
//! # Layout
//!
//! - `cache`: [`TaskCache`], opening and loading (repairing what a crash left).
//! - `write`: merges through the journal, journal apply, daily rotation; the
//!   [`fleetpoll_actors::TaskStore`] implementation.
//! - `filter`: [`TaskFilter`] queries.
//! - `index`: the compact in-memory index (slots, orderings, cutoffs).
//! - `intern`: the string table behind the index.
//! - `format`: the JSON-lines record format of the data files.
//! - `journal`: the checksummed, length-framed write-ahead journal.
//! - `state`: the cutoff and tracked-task files.
//! - `files`: file names, atomic replacement, locks.
//! - `day`: UTC days and their `YYYY-MM-DD` names.
//! - `error`: [`TaskCacheError`].

mod cache;
mod day;
mod error;
mod files;
mod filter;
mod format;
mod index;
mod intern;
mod journal;
mod state;
mod write;

pub use cache::{TaskCache, BACKFILL_SECS};
pub use error::TaskCacheError;
pub use filter::{CachedTask, StatusClass, TaskFilter, TaskPage, DEFAULT_LIMIT};
pub use write::{ARCHIVES_KEPT, ARCHIVES_UNCOMPRESSED, JOURNAL_APPLY_BYTES};

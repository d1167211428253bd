//! Storage: the single writer in front of the stores, and what it publishes.
//!
//! - `seam`: the [`MetricStore`] and [`TaskStore`] traits the real stores implement.
//! - `writer`: the Storage actor — two write lanes, grouped writes, `spawn_blocking`.
//! - `live`: the feed of stored batches, with a replay ring, that the API's live stream
//!   and the hooks subscribe to.

mod live;
mod seam;
mod writer;

pub(crate) use live::LiveFeed;
pub use live::{StoredBatch, Subscription};
pub use seam::{MetricStore, MetricWrite, StoreError, TaskStore, TaskWrite};
pub use writer::StorageStats;
pub(crate) use writer::{HousekeepingOp, Storage, StorageArgs, StorageMsg, Stores, BACKLOG_LIMIT};

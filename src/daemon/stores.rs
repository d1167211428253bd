//! Opens the daemon's stores from `[storage]`.

use std::sync::Arc;

use anyhow::Context;
use fleetpoll_actors::testing::{MemoryMetricStore, MemoryTaskStore};
use fleetpoll_actors::{MetricStore, TaskStore};

use crate::config::StorageConfig;

/// The metric store and task cache of the daemon.
pub(super) fn open(
    storage: &StorageConfig,
) -> anyhow::Result<(Arc<dyn MetricStore>, Arc<dyn TaskStore>)> {
    for dir in [&storage.state_dir, &storage.cache_dir] {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create {} (storage.state_dir / storage.cache_dir)",
                dir.display()
            )
        })?;
    }
    // Until the RRD store and the task cache are wired in, data lives in memory.
    tracing::warn!("metrics and tasks are kept in memory only in this build");
    Ok((MemoryMetricStore::new(), MemoryTaskStore::new()))
}

//! Opens the daemon's stores from `[storage]`: RRD files with their journal under
//! `state_dir/metrics`, the task cache under `cache_dir`. Opening replays the metric
//! journal, so nothing acknowledged before a crash is missing. Each store locks its
//! directory, so a second daemon on the same `state_dir` or `cache_dir` stops here,
//! naming the directory and the lock file.

use std::sync::Arc;

use crate::rrd::RrdStore;
use crate::tasks::TaskCache;
use anyhow::Context;
use fleetpoll_actors::{Clock, Cursor, MetricStore, MetricWrite, StorageSettings, StoreError};

/// The metric store and task cache of the daemon; `clock` dates a new active file of
/// the task cache.
pub(super) fn open(
    storage: &StorageSettings,
    clock: &dyn Clock,
) -> anyhow::Result<(Arc<RrdStore>, Arc<TaskCache>)> {
    for dir in [&storage.state_dir, &storage.cache_dir] {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create {} (storage.state_dir / storage.cache_dir)",
                dir.display()
            )
        })?;
    }
    let metrics_dir = storage.state_dir.join("metrics");
    let (metrics, recovery) = RrdStore::open(&metrics_dir).with_context(|| {
        format!(
            "opening the metric store in {} (storage.state_dir {})",
            metrics_dir.display(),
            storage.state_dir.display()
        )
    })?;
    if recovery.replayed > 0 || recovery.discarded_bytes > 0 {
        tracing::info!(
            replayed = recovery.replayed,
            discarded_bytes = recovery.discarded_bytes,
            "metric journal replayed"
        );
    }
    for err in &recovery.errors {
        tracing::error!(error = %err, "a journalled batch could not be applied");
    }
    let tasks = TaskCache::open(&storage.cache_dir, clock.now_secs())
        .with_context(|| format!("opening the task cache in {}", storage.cache_dir.display()))?;
    for problem in tasks.problems() {
        tracing::error!(error = %problem, "task cache problem found at open");
    }
    Ok((Arc::new(metrics), Arc::new(tasks)))
}

/// The engine's metric store under `[storage] rrd = false`: no file is written; it
/// keeps each remote's cursor in memory, so that polls ask only for new points and
/// every stored batch still reaches the hooks (rules, exporters). After a restart the
/// first poll of each remote asks for all it keeps again.
#[derive(Debug, Default)]
pub(super) struct CursorsOnly {
    cursors: parking_lot::Mutex<std::collections::HashMap<fleetpoll_actors::RemoteId, Cursor>>,
}

impl MetricStore for CursorsOnly {
    fn store_metrics(&self, writes: &[MetricWrite]) -> Vec<Result<Cursor, StoreError>> {
        let mut cursors = self.cursors.lock();
        writes
            .iter()
            .map(|w| {
                let cursor = cursors.entry(w.remote.clone()).or_default();
                *cursor = cursor.advance(w.batch.newest());
                Ok(*cursor)
            })
            .collect()
    }

    fn cursor(&self, remote: &fleetpoll_actors::RemoteId) -> Cursor {
        self.cursors.lock().get(remote).copied().unwrap_or_default()
    }

    fn commit(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

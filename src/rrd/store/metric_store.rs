//! The store as the engine's [`MetricStore`]: storing writes, cursors, commits, and the
//! background commit past the pending bound.

use std::sync::atomic::Ordering;

use fleetpoll_actors::{Cursor, MetricStore, MetricWrite, RemoteId, StoreError};

use super::{file_component, Entity, RrdStore, MAX_PENDING_VALUES};
use crate::rrd::error::RrdError;
use crate::rrd::file::RrdFile;
use crate::rrd::pending::Pending;
use crate::rrd::record;

impl RrdStore {
    /// Past the pending bound: commits in the background, so storing goes on (the
    /// points are durable in the journal already; an early commit only bounds memory,
    /// and a failed one is logged and retried by the next). Should storing outrun
    /// the commit to twice the bound, it waits for the commit instead.
    fn commit_early(&self, pending: usize) {
        if !self.shared.early.swap(true, Ordering::SeqCst) {
            let shared = self.shared.clone();
            let work = move || {
                if let Err(err) = shared.commit_in_steps() {
                    tracing::warn!(error = %err, "early commit of the metric journal failed");
                }
                shared.early.store(false, Ordering::SeqCst);
            };
            let spawned = std::thread::Builder::new()
                .name("rrd-commit".into())
                .spawn(work.clone());
            if spawned.is_err() {
                work();
            }
        } else if pending > 2 * MAX_PENDING_VALUES {
            drop(
                self.shared
                    .committing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
    }
}

/// The engine's error for a failed store operation: the message names the file and
/// what to do (every [`RrdError`] a store operation returns does).
fn store_error(err: RrdError) -> StoreError {
    StoreError(err.to_string())
}

impl MetricStore for RrdStore {
    fn store_metrics(&self, writes: &[MetricWrite]) -> Vec<Result<Cursor, StoreError>> {
        // What was stored of a remote before its first batch since the open: the trend
        // aggregate holds everything after it.
        let stored_before: Vec<Option<i64>> = writes
            .iter()
            .map(|w| {
                if self.shared.trend.knows(&w.remote) {
                    None
                } else {
                    self.cursor(&w.remote).0
                }
            })
            .collect();
        let mut inner = self.lock();
        let appended = inner.journal.append_with(writes, |w, buf| {
            record::encode_into(buf, &w.remote, &w.batch);
        });
        if let Err(err) = appended.map_err(store_error) {
            return writes.iter().map(|_| Err(err.clone())).collect();
        }
        let results: Vec<Result<Cursor, StoreError>> = writes
            .iter()
            .map(|w| {
                inner.stage(&w.remote, &w.batch).map_err(store_error)?;
                Ok(inner.cursors[&w.remote])
            })
            .collect();
        let pending = inner.pending_values;
        drop(inner);
        for ((w, r), before) in writes.iter().zip(&results).zip(stored_before) {
            if r.is_ok() {
                self.shared.top.add(&w.remote, &w.batch);
                self.shared.trend.add(&w.remote, before, &w.batch);
            }
        }
        if pending > MAX_PENDING_VALUES {
            self.commit_early(pending);
        }
        results
    }

    fn cursor(&self, remote: &RemoteId) -> Cursor {
        let mut inner = self.lock();
        if let Some(cursor) = inner.cursors.get(remote) {
            return *cursor;
        }
        // Not seen since start: the newest last update among the remote's files. Each
        // file's last update is kept as its entity's, so storing the remote's first
        // batch need not read the file again.
        let dir = inner.dir.join(file_component(remote.as_str()));
        let mut newest = None;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "rrd") {
                continue;
            }
            let Ok(last) = RrdFile::peek_last_update(&path) else {
                continue;
            };
            inner.entities.entry(path).or_insert_with(|| Entity {
                last: Some(last),
                pending: Pending::default(),
            });
            if last > 0 {
                newest = newest.max(Some(last));
            }
        }
        let cursor = Cursor(newest);
        inner.cursors.insert(remote.clone(), cursor);
        cursor
    }

    fn commit(&self) -> Result<(), StoreError> {
        self.shared.commit_in_steps().map_err(store_error)
    }
}

//! Points the store could not write into their entity's file, set aside so that the
//! journal can still be applied: a commit that meets an entity whose file cannot be
//! written for a reason of its own ([`RrdError::is_entity_fault`]: a directory in the
//! way, a name too long, no permission) appends that entity's pending rows to
//! `quarantine.jsonl` in the store's directory (one JSON object a line: the file, the
//! reason, the data sources and the rows), syncs it, logs at WARN (once per file) and
//! counts them. The other entities are written and the sealed journal is released as
//! if nothing had happened; the entity stores again once its file can be written.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::error::RrdError;
use super::pending::Pending;
use crate::durable::{open_append, sync_parent};

/// The quarantine file's name in the store's directory.
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";

/// An entity file whose points were set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantinedEntity {
    /// The entity's file, which could not be written.
    pub path: PathBuf,
    /// Why, the newest time (the error's message).
    pub reason: String,
    /// Rows (timestamps) set aside since the store was opened.
    pub rows: u64,
    /// When the first of them was set aside, seconds since the epoch.
    pub first_at: i64,
    /// When the newest were.
    pub last_at: i64,
}

/// The quarantine file and what went into it since the store was opened.
#[derive(Debug)]
pub(crate) struct Quarantine {
    file: PathBuf,
    /// Rows set aside, over all entities.
    rows: u64,
    by_path: BTreeMap<PathBuf, QuarantinedEntity>,
}

impl Quarantine {
    /// The quarantine of the store in `dir` (the file is created on first use).
    pub(crate) fn new(dir: &Path) -> Quarantine {
        Quarantine {
            file: dir.join(QUARANTINE_FILE),
            rows: 0,
            by_path: BTreeMap::new(),
        }
    }

    /// Appends the entity's `pending` rows, which could not go into `path` because of
    /// `reason`, to the quarantine file and syncs it. Failing to write it (the disk the
    /// whole store is on) is an [`RrdError::Io`] naming the quarantine file; the caller
    /// then keeps the points pending.
    pub(crate) fn set_aside(
        &mut self,
        path: &Path,
        pending: &Pending,
        reason: &RrdError,
    ) -> Result<(), RrdError> {
        let now = fleetpoll_actors::system_now_secs();
        let rows: Vec<serde_json::Value> = pending
            .rows()
            .map(|(time, values)| {
                let mut row = vec![json!(time)];
                row.extend(values.iter().map(|v| json!(v.is_finite().then_some(*v))));
                serde_json::Value::Array(row)
            })
            .collect();
        let line = json!({
            "file": path,
            "reason": reason.to_string(),
            "at": now,
            "data_sources": pending.defs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            "rows": rows,
        });
        let mut text = line.to_string();
        text.push('\n');
        let created = !self.file.exists();
        let io = |io| RrdError::Io {
            path: self.file.clone(),
            io,
        };
        let mut out = open_append(&self.file)?;
        out.write_all(text.as_bytes()).map_err(io)?;
        crate::durable::sync_data(&out).map_err(io)?;
        if created {
            sync_parent(&self.file)?;
        }
        let count = rows.len() as u64;
        self.rows += count;
        let entry = self.by_path.entry(path.to_path_buf()).or_insert_with(|| {
            tracing::warn!(
                file = %path.display(),
                quarantine = %self.file.display(),
                error = %reason,
                "a metric file cannot be written; its points are set aside in the \
                 quarantine file and the other entities go on storing"
            );
            QuarantinedEntity {
                path: path.to_path_buf(),
                reason: String::new(),
                rows: 0,
                first_at: now,
                last_at: now,
            }
        });
        entry.reason = reason.to_string();
        entry.rows += count;
        entry.last_at = now;
        Ok(())
    }

    /// The quarantine file.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Rows set aside since the store was opened.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// The entities whose rows were set aside, by file.
    pub(crate) fn entities(&self) -> Vec<QuarantinedEntity> {
        self.by_path.values().cloned().collect()
    }
}

//! Damaged store files: an entity's file that fails a check (bad magic, a checksum, a
//! length) is set aside as `NAME.corrupt-<unix time>`, logged at WARN, counted and
//! listed for the daemon's status; the entity then starts a fresh file, and every
//! other entity goes on storing.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use super::error::RrdError;
use crate::durable::move_aside;

/// How many damaged files [`DamageLog`] lists (the count covers them all).
const RECENT: usize = 100;

/// A file the store found damaged and set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedFile {
    /// Where the entity's file was (and its fresh one now is).
    pub path: PathBuf,
    /// What the check found.
    pub reason: String,
    /// Where the damaged file was moved, kept for inspection.
    pub set_aside: PathBuf,
    /// When it was set aside, seconds since the epoch.
    pub found_at: i64,
}

impl DamagedFile {
    /// The error a query of the damaged entity answers.
    pub fn error(&self) -> RrdError {
        RrdError::Damaged {
            path: self.path.clone(),
            reason: self.reason.clone(),
            set_aside: self.set_aside.clone(),
        }
    }
}

/// The damaged files a store set aside since it was opened.
#[derive(Debug, Default)]
pub(crate) struct DamageLog {
    /// How many, in all.
    count: u64,
    /// The newest [`RECENT`], oldest first.
    recent: VecDeque<DamagedFile>,
    /// The newest per entity file.
    by_path: HashMap<PathBuf, DamagedFile>,
}

impl DamageLog {
    /// Moves the damaged file at `path` aside, logs and records it, and returns the
    /// [`RrdError::Damaged`] that says so. Failing to move it is an
    /// [`RrdError::Io`] naming the file.
    pub(crate) fn set_aside(&mut self, path: &Path, reason: String) -> Result<RrdError, RrdError> {
        let now = fleetpoll_actors::system_now_secs();
        let set_aside = move_aside(path, &format!("corrupt-{now}"))?;
        tracing::warn!(
            file = %path.display(),
            set_aside = %set_aside.display(),
            reason = %reason,
            "a damaged metric file was set aside; its entity starts a fresh file"
        );
        let damaged = DamagedFile {
            path: path.to_path_buf(),
            reason,
            set_aside,
            found_at: now,
        };
        self.count += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(damaged.clone());
        let error = damaged.error();
        self.by_path.insert(path.to_path_buf(), damaged);
        Ok(error)
    }

    /// The newest damage of the entity file at `path`, if it had any.
    pub(crate) fn of(&self, path: &Path) -> Option<&DamagedFile> {
        self.by_path.get(path)
    }

    /// How many files were set aside.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The newest ones set aside, oldest first.
    pub(crate) fn recent(&self) -> Vec<DamagedFile> {
        self.recent.iter().cloned().collect()
    }
}

//! The small JSON files replaced atomically: the per-(remote, node) cutoffs (`state.json`,
//! always the last file a change writes) and the tracked tasks (`tracked.json`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use fleetpoll_actors::{RemoteId, TaskRef, UnixTime};
use serde::{Deserialize, Serialize};

use super::error::TaskCacheError;
use super::files::set_aside;
use crate::durable::{write_atomic, Mode};

/// Per remote, per cutoff key (node), the start time from which to list tasks again.
pub(crate) type Cutoffs = HashMap<RemoteId, BTreeMap<String, UnixTime>>;

/// Version of `state.json`.
const STATE_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    cutoffs: BTreeMap<String, BTreeMap<String, UnixTime>>,
}

/// Writes the cutoffs atomically.
pub(crate) fn save_cutoffs(path: &Path, cutoffs: &Cutoffs) -> Result<(), TaskCacheError> {
    let file = StateFile {
        version: STATE_VERSION,
        cutoffs: cutoffs
            .iter()
            .map(|(r, m)| (r.to_string(), m.clone()))
            .collect(),
    };
    let bytes = serde_json::to_vec(&file).map_err(|e| TaskCacheError::Io {
        path: path.to_path_buf(),
        action: "encode",
        source: std::io::Error::other(e),
    })?;
    Ok(write_atomic(path, &bytes, Mode::WorldReadable)?)
}

/// Reads a JSON file; a missing file is `None`; an undecodable one is set aside (when
/// `writable`) and reported.
fn load_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    writable: bool,
    problems: &mut Vec<TaskCacheError>,
) -> Result<Option<T>, TaskCacheError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TaskCacheError::io(path, "read")(e)),
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let target = if writable {
                set_aside(path)?
            } else {
                PathBuf::from(path)
            };
            problems.push(TaskCacheError::CorruptState {
                path: path.to_path_buf(),
                problem: e.to_string(),
                set_aside: target,
            });
            Ok(None)
        }
    }
}

/// Reads the cutoffs (empty when the file is missing or unreadable).
pub(crate) fn load_cutoffs(
    path: &Path,
    writable: bool,
    problems: &mut Vec<TaskCacheError>,
) -> Result<Cutoffs, TaskCacheError> {
    let file: Option<StateFile> = load_json(path, writable, problems)?;
    Ok(file
        .map(|f| {
            f.cutoffs
                .into_iter()
                .map(|(r, m)| (RemoteId::new(r), m))
                .collect()
        })
        .unwrap_or_default())
}

/// Writes the tracked tasks atomically.
pub(crate) fn save_tracked(path: &Path, tracked: &[TaskRef]) -> Result<(), TaskCacheError> {
    let bytes = serde_json::to_vec(tracked).map_err(|e| TaskCacheError::Io {
        path: path.to_path_buf(),
        action: "encode",
        source: std::io::Error::other(e),
    })?;
    Ok(write_atomic(path, &bytes, Mode::WorldReadable)?)
}

/// Reads the tracked tasks (empty when missing or unreadable). An entry a track
/// request would have been refused for (no remote, or no UPID that parses) is dropped
/// and reported, so a damaged or hand-edited file never has a remote asked about it.
pub(crate) fn load_tracked(
    path: &Path,
    writable: bool,
    problems: &mut Vec<TaskCacheError>,
) -> Result<Vec<TaskRef>, TaskCacheError> {
    let mut tracked: Vec<TaskRef> = load_json(path, writable, problems)?.unwrap_or_default();
    let (mut dropped, mut first) = (0, None);
    tracked.retain(|t| {
        let ok = is_task_reference(t);
        if !ok {
            dropped += 1;
            first.get_or_insert_with(|| format!("{:?} of remote {:?}", t.upid, t.remote.as_str()));
        }
        ok
    });
    if let Some(first) = first {
        problems.push(TaskCacheError::TrackedDropped {
            path: path.to_path_buf(),
            dropped,
            first,
        });
    }
    Ok(tracked)
}

/// Whether `task` passes the checks of a track request: a remote, and a UPID.
pub(crate) fn is_task_reference(task: &TaskRef) -> bool {
    !task.remote.as_str().is_empty() && crate::remote::Upid::parse(&task.upid).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_entries_that_are_not_task_references_are_dropped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracked.json");
        let good = TaskRef {
            remote: RemoteId::new("pve-1"),
            upid: "UPID:node1:000A1B2C:0B3C4D5E:6750A000:vzdump:100:root@pam:".into(),
        };
        let bad = [
            TaskRef {
                remote: RemoteId::new(""),
                upid: good.upid.clone(),
            },
            TaskRef {
                remote: RemoteId::new("pve-1"),
                upid: "UPID:../../etc".into(),
            },
        ];
        let mut saved = vec![bad[0].clone(), good.clone()];
        saved.push(bad[1].clone());
        save_tracked(&path, &saved).unwrap();
        let mut problems = Vec::new();
        assert_eq!(
            load_tracked(&path, true, &mut problems).unwrap(),
            vec![good]
        );
        match problems.as_slice() {
            [TaskCacheError::TrackedDropped {
                dropped: 2, first, ..
            }] => {
                assert!(first.contains("of remote \"\""), "{first}");
            }
            other => panic!("{other:?}"),
        }
        assert!(path.exists(), "the file is not set aside");
    }
}

//! Damaged files set aside for inspection, never overwritten nor deleted: `NAME.TAG`,
//! or `NAME.TAG.1`, `NAME.TAG.2`, … when that name is taken.

use std::path::{Path, PathBuf};

use super::error::DurableError;
use super::replace::sync_parent;

/// The first free name `NAME.TAG`, `NAME.TAG.1`, … beside `path`.
pub fn aside_path(path: &Path, tag: &str) -> PathBuf {
    let base = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut target = path.with_file_name(format!("{base}.{tag}"));
    let mut n = 1;
    while target.exists() {
        target = path.with_file_name(format!("{base}.{tag}.{n}"));
        n += 1;
    }
    target
}

/// Renames `path` to [`aside_path`]`(path, tag)` and syncs the directory; returns the
/// new name.
pub fn move_aside(path: &Path, tag: &str) -> Result<PathBuf, DurableError> {
    let target = aside_path(path, tag);
    std::fs::rename(path, &target).map_err(DurableError::at(path, "rename aside"))?;
    sync_parent(path)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_set_aside_never_replaces_one_set_aside_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.rrd");
        std::fs::write(&path, b"one").unwrap();
        let first = move_aside(&path, "corrupt").unwrap();
        std::fs::write(&path, b"two").unwrap();
        let second = move_aside(&path, "corrupt").unwrap();
        assert_eq!(first, dir.path().join("a.rrd.corrupt"));
        assert_eq!(second, dir.path().join("a.rrd.corrupt.1"));
        assert_eq!(std::fs::read(first).unwrap(), b"one");
        assert_eq!(std::fs::read(second).unwrap(), b"two");
        assert!(!path.exists());
    }
}

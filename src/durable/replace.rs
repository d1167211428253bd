//! Replacing a file atomically — written under a temporary name in its directory,
//! synced, renamed over the old one, the directory synced — and the directory syncs
//! that make a created, renamed or removed name survive a crash.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::error::DurableError;
use super::seam;

/// Who may read a file written by [`replace_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `0666` less the process umask: the operator decides (systemd's `UMask=`).
    Umask,
    /// Exactly `0644`, whatever the umask: files that readers running as other users
    /// open, holding nothing secret.
    WorldReadable,
}

/// The mode of [`Mode::WorldReadable`].
const WORLD_READABLE: u32 = 0o644;

/// Syncs a directory, so that names created, renamed or removed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir)
        .and_then(|d| seam::sync_dir_file(&d))
        .map_err(DurableError::at(dir, "fsync directory"))
}

/// Creates `dir` and any missing parent, as `create_dir_all`, and syncs the directory
/// each created one is named in, so the new directories survive a crash (the store's
/// own directory on its first open, before anything acknowledged is written in it).
pub fn create_dir_all_synced(dir: &Path) -> Result<(), DurableError> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(DurableError::at(dir, "create directory"))?;
    // Innermost first: a directory's own entry lands in its parent, synced here.
    for created in missing {
        sync_parent(created)?;
    }
    Ok(())
}

/// Syncs the directory holding `path` (the current one for a bare file name).
pub fn sync_parent(path: &Path) -> Result<(), DurableError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// The temporary name `path` is written under before it is renamed into place:
/// `<name>.tmp` in the same directory (a leftover one is overwritten).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces (or creates) `path` with `bytes` atomically: a crash leaves either the old
/// file or the new one, whole.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode) -> Result<(), DurableError> {
    replace_with(path, mode, |file| file.write_all(bytes)).map(drop)
}

/// Replaces (or creates) `path` atomically with what `fill` writes to the new file, and
/// returns the new file, open for reading and writing. The file is synced before it is
/// renamed over `path`, and the directory after.
pub fn replace_with(
    path: &Path,
    mode: Mode,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<File, DurableError> {
    let tmp = temp_path(path);
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(true);
    if mode == Mode::WorldReadable {
        options.mode(WORLD_READABLE);
    }
    let mut file = options
        .open(&tmp)
        .map_err(DurableError::at(&tmp, "create temp file"))?;
    fill(&mut file).map_err(DurableError::at(&tmp, "write"))?;
    if mode == Mode::WorldReadable {
        // The umask narrowed the mode at creation, and a leftover file kept its own.
        file.set_permissions(std::fs::Permissions::from_mode(WORLD_READABLE))
            .map_err(DurableError::at(&tmp, "chmod"))?;
    }
    seam::sync_all(&file).map_err(DurableError::at(&tmp, "fsync"))?;
    std::fs::rename(&tmp, path).map_err(DurableError::at(path, "rename temp file over"))?;
    sync_parent(path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old", Mode::Umask).unwrap();
        write_atomic(&path, b"new", Mode::Umask).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn a_world_readable_file_is_0644_whatever_the_temp_file_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(temp_path(&path), b"leftover").unwrap();
        std::fs::set_permissions(temp_path(&path), std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new", Mode::WorldReadable).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        write_atomic(&path, b"old", Mode::Umask).unwrap();
        let err =
            replace_with(&path, Mode::Umask, |_| Err(std::io::Error::other("full"))).unwrap_err();
        assert_eq!(err.op, "write");
        assert_eq!(err.path, temp_path(&path));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn the_temp_file_sits_next_to_the_file() {
        assert_eq!(
            temp_path(Path::new("/var/lib/x/a.rrd")),
            Path::new("/var/lib/x/a.rrd.tmp")
        );
        assert_eq!(temp_path(Path::new("a.rrd")), Path::new("a.rrd.tmp"));
    }
}

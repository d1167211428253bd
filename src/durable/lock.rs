//! [`FileLock`]: an advisory `flock` on a lock file, shared or exclusive, released when
//! dropped (or when the process ends, however it ends). The task cache locks its
//! directory with it, and the metric store its own.

use std::fs::File;
use std::path::Path;

use super::error::DurableError;
use super::journal::open_append;

/// Which advisory lock to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Readers: many at once, none while a writer holds it exclusively.
    Shared,
    /// One holder alone.
    Exclusive,
}

/// An advisory lock on a file, released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Blocks until the lock is held (the lock file is created if missing).
    pub fn acquire(path: &Path, kind: LockKind) -> Result<FileLock, DurableError> {
        let file = open_append(path)?;
        let result = match kind {
            LockKind::Shared => fs4::FileExt::lock_shared(&file),
            LockKind::Exclusive => fs4::FileExt::lock(&file),
        };
        result.map_err(DurableError::at(path, "lock"))?;
        Ok(FileLock { file })
    }

    /// Takes the exclusive lock at once: `None` when another holder has it.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>, DurableError> {
        let file = open_append(path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(DurableError::at(path, "lock")(e)),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_lock_is_refused_while_held_and_granted_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = FileLock::try_exclusive(&path).unwrap();
        assert!(first.is_some());
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop(first);
        assert!(FileLock::try_exclusive(&path).unwrap().is_some());
    }
}

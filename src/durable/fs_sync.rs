//! Syncing whole file systems: [`SyncFs`], the seam through which a store calls
//! `syncfs(2)` (so tests and a power-loss model can stand in for the kernel), and
//! [`WrittenFilesystems`], the file systems written since their last sync, each with
//! the handle its `syncfs` goes through.
//!
//! One `syncfs` makes every write on the file system durable — file data, metadata and
//! directory entries — which for a store that wrote thousands of files costs one call
//! instead of one `fdatasync` each. Its error report is exact enough for a store
//! (Linux 5.8 and later): a write-back error on any file of the file system since the
//! handle was opened, or since the handle's last `syncfs` reported one, fails the
//! call, even when the kernel met the error in its own background write-back and the
//! file has been closed since. That is why a handle is opened once, before the writes
//! it answers for, and kept: a handle opened later would not see earlier errors.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::error::DurableError;

/// Makes every write on one file system durable.
pub trait SyncFs: Send + Sync + std::fmt::Debug {
    /// Syncs the file system holding `handle` (`syncfs(2)`). An error means a write on
    /// it since `handle` was opened, or since this call last failed on it, may be lost.
    fn sync_fs(&self, handle: &File) -> std::io::Result<()>;
}

/// The kernel's `syncfs(2)`, through the durability seam ([`super::seam::sync_fs`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelSyncFs;

impl SyncFs for KernelSyncFs {
    fn sync_fs(&self, handle: &File) -> std::io::Result<()> {
        super::seam::sync_fs(handle)
    }
}

/// One handle per file system a store writes to (by device number), and which of
/// them were written since their last successful sync.
#[derive(Debug)]
pub struct WrittenFilesystems {
    /// The handle each file system's `syncfs` goes through, opened before the first
    /// write on it that it answers for, and kept for the store's life.
    handles: HashMap<u64, File>,
    /// Devices written since their last successful sync.
    written: Vec<u64>,
}

impl WrittenFilesystems {
    /// Opens `dir` (the store's directory) as the handle of its file system, before
    /// the store writes anything.
    pub fn new(dir: &Path) -> Result<WrittenFilesystems, DurableError> {
        let handle = File::open(dir).map_err(DurableError::at(dir, "open directory"))?;
        let dev = handle
            .metadata()
            .map_err(DurableError::at(dir, "stat directory"))?
            .dev();
        Ok(WrittenFilesystems {
            handles: HashMap::from([(dev, handle)]),
            written: Vec::new(),
        })
    }

    /// Notes that `file`, on device `dev`, was written. The first file written on a
    /// file system other than the directory's becomes that file system's handle (a
    /// duplicate of its descriptor, opened before that write).
    pub fn note_written(&mut self, dev: u64, file: &File) -> std::io::Result<()> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.handles.entry(dev) {
            slot.insert(file.try_clone()?);
        }
        if !self.written.contains(&dev) {
            self.written.push(dev);
        }
        Ok(())
    }

    /// Whether anything was written since the last sync.
    pub fn is_clean(&self) -> bool {
        self.written.is_empty()
    }

    /// Hands over the file systems written since their last sync, each as its device
    /// and a duplicate of its handle (sharing the handle's error cursor), to be synced
    /// elsewhere; they count as clean until [`WrittenFilesystems::sync_failed`] takes
    /// one back.
    pub fn take_written(&mut self) -> std::io::Result<Vec<(u64, File)>> {
        let mut out = Vec::with_capacity(self.written.len());
        for dev in &self.written {
            out.push((*dev, self.handles[dev].try_clone()?));
        }
        self.written.clear();
        Ok(out)
    }

    /// Takes back a file system whose sync failed, to be synced again.
    pub fn sync_failed(&mut self, dev: u64) {
        if !self.written.contains(&dev) {
            self.written.push(dev);
        }
    }
}

/// Syncs the file systems handed over by [`WrittenFilesystems::take_written`], one
/// `syncfs` each, through `sync`; returns the devices that failed with the first
/// error.
pub fn sync_filesystems(
    sync: &dyn SyncFs,
    filesystems: &[(u64, File)],
    dir: &Path,
) -> Result<(), (Vec<u64>, DurableError)> {
    let mut failed = Vec::new();
    let mut first = None;
    for (dev, handle) in filesystems {
        if let Err(err) = sync.sync_fs(handle) {
            failed.push(*dev);
            first.get_or_insert(DurableError::at(dir, "syncfs")(err));
        }
    }
    match first {
        Some(err) => Err((failed, err)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_system_is_handed_over_once_per_sync_and_again_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs = WrittenFilesystems::new(dir.path()).unwrap();
        assert!(fs.is_clean());
        let path = dir.path().join("a");
        let file = File::create(&path).unwrap();
        let dev = file.metadata().unwrap().dev();
        fs.note_written(dev, &file).unwrap();
        fs.note_written(dev, &file).unwrap();
        let taken = fs.take_written().unwrap();
        assert_eq!(taken.len(), 1, "one file system, one syncfs");
        assert!(fs.is_clean());
        KernelSyncFs.sync_fs(&taken[0].1).unwrap();
        fs.sync_failed(dev);
        assert_eq!(fs.take_written().unwrap().len(), 1);
    }
}

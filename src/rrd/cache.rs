//! A bounded cache of open RRD files: at most a fixed number are held open (a file
//! opened for updating holds a few KB, a loaded one its rings, about 80 KB per data
//! source in the Proxmox layout); the least recently used one is closed to make room.
//! A written file's file system is noted ([`WrittenFilesystems`]) when it is written,
//! so a closed file needs no descriptor kept to be synced: the commit syncs each
//! written file system once (`syncfs`), not each file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::RrdError;
use super::file::RrdFile;
use crate::durable::WrittenFilesystems;

/// One cached file.
#[derive(Debug)]
struct Entry {
    file: RrdFile,
    /// When it was last used (a counter, larger is more recent).
    used: u64,
}

/// Open files by path, at most `capacity` of them, and the file systems written
/// since their last sync.
#[derive(Debug)]
pub(crate) struct FileCache {
    capacity: usize,
    entries: HashMap<PathBuf, Entry>,
    clock: u64,
    /// The file systems written since their last sync.
    filesystems: WrittenFilesystems,
}

impl FileCache {
    /// An empty cache holding at most `capacity` files (at least one), noting writes
    /// in `filesystems`.
    pub(crate) fn new(capacity: usize, filesystems: WrittenFilesystems) -> FileCache {
        FileCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            clock: 0,
            filesystems,
        }
    }

    /// Whether `path` is open.
    pub(crate) fn contains(&self, path: &Path) -> bool {
        self.entries.contains_key(path)
    }

    /// How many files are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The open file at `path`, opened with `open` if it is not (after making room).
    pub(crate) fn get_or_open(
        &mut self,
        path: &Path,
        open: impl FnOnce() -> Result<RrdFile, RrdError>,
    ) -> Result<&mut RrdFile, RrdError> {
        self.clock += 1;
        if !self.entries.contains_key(path) {
            while self.entries.len() >= self.capacity {
                self.evict_oldest();
            }
            let file = open()?;
            self.entries
                .insert(path.to_path_buf(), Entry { file, used: 0 });
        }
        let entry = self.entries.get_mut(path).expect("inserted above");
        entry.used = self.clock;
        Ok(&mut entry.file)
    }

    /// Notes that the open file at `path` was written since the last sync: its file
    /// system is synced by the next commit.
    pub(crate) fn mark_dirty(&mut self, path: &Path) -> Result<(), RrdError> {
        if let Some(entry) = self.entries.get(path) {
            let file = &entry.file;
            self.filesystems
                .note_written(file.dev(), file.file())
                .map_err(|io| RrdError::Io {
                    path: path.to_path_buf(),
                    io,
                })?;
        }
        Ok(())
    }

    /// Takes the file at `path` out of the cache (the caller replaces it, e.g. after
    /// adding a data source, or sets it aside); its writes are noted already.
    pub(crate) fn take(&mut self, path: &Path) -> Option<RrdFile> {
        self.entries.remove(path).map(|e| e.file)
    }

    /// Puts a file (back) into the cache; it must not be there already.
    pub(crate) fn insert(&mut self, file: RrdFile) {
        while self.entries.len() >= self.capacity {
            self.evict_oldest();
        }
        self.clock += 1;
        self.entries.insert(
            file.path().to_path_buf(),
            Entry {
                file,
                used: self.clock,
            },
        );
    }

    /// The file systems written since their last sync, see
    /// [`WrittenFilesystems::take_written`].
    pub(crate) fn filesystems(&mut self) -> &mut WrittenFilesystems {
        &mut self.filesystems
    }

    /// Closes the least recently used file (its writes are noted already).
    fn evict_oldest(&mut self) {
        let Some(oldest) = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(p, _)| p.clone())
        else {
            return;
        };
        self.entries.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rrd::{Cf, DsDef, DsType, RraDef, Rrd};

    fn file(dir: &Path, name: &str) -> RrdFile {
        let ds = vec![DsDef {
            name: "x".into(),
            kind: DsType::Gauge,
            heartbeat: 120,
            min: None,
            max: None,
        }];
        let rra = vec![RraDef {
            cf: Cf::Average,
            xff: 0.5,
            steps: 1,
            rows: 10,
        }];
        RrdFile::create(&dir.join(name), Rrd::create(60, 0, ds, rra).unwrap()).unwrap()
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = FileCache::new(2, WrittenFilesystems::new(dir.path()).unwrap());
        for name in ["a", "b", "c"] {
            file(dir.path(), name);
        }
        let open = |p: &Path| {
            let p = p.to_path_buf();
            move || RrdFile::open(&p)
        };
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        cache.get_or_open(&a, open(&a)).unwrap();
        cache.get_or_open(&b, open(&b)).unwrap();
        cache.get_or_open(&a, open(&a)).unwrap(); // a is now the more recent
        cache.mark_dirty(&b).unwrap();
        cache.get_or_open(&c, open(&c)).unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(&a) && cache.contains(&c));
        assert!(!cache.contains(&b), "b was used least recently");
        let written = cache.filesystems().take_written().unwrap();
        assert_eq!(
            written.len(),
            1,
            "b's file system awaits its sync, b closed"
        );
    }
}

//! A bounded cache of open RRD files: at most a fixed number are held open (a file
//! opened for updating holds a few KB, a loaded one its rings, about 80 KB per data
//! source in the Proxmox layout); the least recently used one is closed to make room.
//! A closed file with unsynced writes keeps only its descriptor until the commit
//! takes it ([`FileCache::take_unsynced`], every [`MAX_UNSYNCED`] files) or the next
//! [`FileCache::sync_all`]; files are synced on several threads at once, so the kernel
//! can merge the flushes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::RrdError;
use super::file::RrdFile;

/// Closed files with unsynced writes kept (as descriptors) before they are synced.
pub(crate) const MAX_UNSYNCED: usize = 256;

/// Threads that sync files at once.
const SYNC_THREADS: usize = 8;

/// Syncs files handed over by [`FileCache::take_unsynced`].
pub(crate) fn sync_owned(files: &[(PathBuf, File)]) -> Result<(), RrdError> {
    let refs: Vec<(&Path, &File)> = files.iter().map(|(p, f)| (p.as_path(), f)).collect();
    sync_files(&refs)
}

/// Syncs files on [`SYNC_THREADS`] threads; the first failure is returned.
fn sync_files(files: &[(&Path, &File)]) -> Result<(), RrdError> {
    if files.is_empty() {
        return Ok(());
    }
    let chunk = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    for (path, file) in part {
                        file.sync_data().map_err(|source| RrdError::Io {
                            path: path.to_path_buf(),
                            io: source,
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for worker in workers {
            let outcome = worker.join().unwrap_or_else(|_| {
                Err(RrdError::Io {
                    path: PathBuf::new(),
                    io: std::io::Error::other("a sync thread panicked"),
                })
            });
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}

/// One cached file.
#[derive(Debug)]
struct Entry {
    file: RrdFile,
    /// When it was last used (a counter, larger is more recent).
    used: u64,
    /// Written since its last sync.
    dirty: bool,
}

/// Open files by path, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct FileCache {
    capacity: usize,
    entries: HashMap<PathBuf, Entry>,
    clock: u64,
    /// Closed files whose writes are not synced yet.
    unsynced: Vec<(PathBuf, File)>,
}

impl FileCache {
    /// An empty cache holding at most `capacity` files (at least one).
    pub(crate) fn new(capacity: usize) -> FileCache {
        FileCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            clock: 0,
            unsynced: Vec::new(),
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
                self.evict_oldest()?;
            }
            let file = open()?;
            self.entries.insert(
                path.to_path_buf(),
                Entry {
                    file,
                    used: 0,
                    dirty: false,
                },
            );
        }
        let entry = self.entries.get_mut(path).expect("inserted above");
        entry.used = self.clock;
        Ok(&mut entry.file)
    }

    /// Marks the file at `path` as written since its last sync.
    pub(crate) fn mark_dirty(&mut self, path: &Path) {
        if let Some(entry) = self.entries.get_mut(path) {
            entry.dirty = true;
        }
    }

    /// Takes the file at `path` out of the cache without syncing it (the caller
    /// replaces it, e.g. after adding a data source).
    pub(crate) fn take(&mut self, path: &Path) -> Option<(RrdFile, bool)> {
        self.entries.remove(path).map(|e| (e.file, e.dirty))
    }

    /// Puts a file (back) into the cache; it must not be there already.
    pub(crate) fn insert(&mut self, file: RrdFile, dirty: bool) -> Result<(), RrdError> {
        while self.entries.len() >= self.capacity {
            self.evict_oldest()?;
        }
        self.clock += 1;
        self.entries.insert(
            file.path().to_path_buf(),
            Entry {
                file,
                used: self.clock,
                dirty,
            },
        );
        Ok(())
    }

    /// Syncs every file written since its last sync, open or closed.
    pub(crate) fn sync_all(&mut self) -> Result<(), RrdError> {
        let mut files: Vec<(&Path, &File)> = self
            .unsynced
            .iter()
            .map(|(p, f)| (p.as_path(), f))
            .collect();
        files.extend(
            self.entries
                .iter()
                .filter(|(_, e)| e.dirty)
                .map(|(p, e)| (p.as_path(), e.file.file())),
        );
        sync_files(&files)?;
        self.unsynced.clear();
        for entry in self.entries.values_mut() {
            entry.dirty = false;
        }
        Ok(())
    }

    /// Hands over the files written since their last sync (closed ones' descriptors,
    /// open ones' duplicated) for syncing elsewhere — without the store's lock — and
    /// counts them as synced; [`FileCache::sync_failed`] takes back those that were not.
    /// With `at_least`, only once that many closed files wait (else nothing).
    pub(crate) fn take_unsynced(
        &mut self,
        at_least: Option<usize>,
    ) -> Result<Vec<(PathBuf, File)>, RrdError> {
        if let Some(n) = at_least {
            if self.unsynced.len() < n {
                return Ok(Vec::new());
            }
            return Ok(std::mem::take(&mut self.unsynced));
        }
        let mut dups = Vec::new();
        for (path, entry) in self.entries.iter().filter(|(_, e)| e.dirty) {
            let dup = entry
                .file
                .file()
                .try_clone()
                .map_err(|source| RrdError::Io {
                    path: path.clone(),
                    io: source,
                })?;
            dups.push((path.clone(), dup));
        }
        // Only once every descriptor is in hand do the files count as handed over.
        for entry in self.entries.values_mut() {
            entry.dirty = false;
        }
        let mut files = std::mem::take(&mut self.unsynced);
        files.extend(dups);
        Ok(files)
    }

    /// Takes back files whose sync failed, to be synced again by the next commit.
    pub(crate) fn sync_failed(&mut self, files: Vec<(PathBuf, File)>) {
        self.unsynced.extend(files);
    }

    /// Closes the least recently used file; its descriptor is kept until synced
    /// when it has unsynced writes.
    fn evict_oldest(&mut self) -> Result<(), RrdError> {
        let Some(oldest) = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(p, _)| p.clone())
        else {
            return Ok(());
        };
        let entry = self.entries.remove(&oldest).expect("found above");
        if entry.dirty {
            self.unsynced.push(entry.file.into_file());
            // A commit takes them at MAX_UNSYNCED and syncs them without the store's
            // lock; this only bounds the descriptors held when nobody commits.
            if self.unsynced.len() >= 4 * MAX_UNSYNCED {
                let files: Vec<(&Path, &File)> = self
                    .unsynced
                    .iter()
                    .map(|(p, f)| (p.as_path(), f))
                    .collect();
                sync_files(&files)?;
                self.unsynced.clear();
            }
        }
        Ok(())
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
        let mut cache = FileCache::new(2);
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
        cache.mark_dirty(&b);
        cache.get_or_open(&c, open(&c)).unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(&a) && cache.contains(&c));
        assert!(!cache.contains(&b), "b was used least recently");
        assert_eq!(cache.unsynced.len(), 1, "b was written and awaits its sync");
        cache.sync_all().unwrap();
        assert!(cache.unsynced.is_empty());
    }
}

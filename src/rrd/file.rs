//! An RRD file on disk: created once, opened with every checksum verified, and updated
//! in place by positioned writes of only the changed rows and the live block.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::database::Rrd;
use super::error::RrdError;
use super::fetch::{FetchRequest, FetchResult};
use super::format::{self, Layout};
use super::value::RawValue;
use crate::durable::{replace_with, Mode};

/// An open RRD file with its contents in memory.
#[derive(Debug)]
pub struct RrdFile {
    path: PathBuf,
    file: File,
    layout: Layout,
    rrd: Rrd,
}

impl RrdFile {
    /// Writes `rrd` as a new file; refuses to replace an existing one. The file is
    /// written under a temporary name, synced and renamed, so a crash never leaves a
    /// half-written file under `path`.
    pub fn create(path: &Path, rrd: Rrd) -> Result<RrdFile, RrdError> {
        if path.exists() {
            return Err(RrdError::Exists(path.to_path_buf()));
        }
        RrdFile::write_whole(path.to_path_buf(), rrd)
    }

    /// Replaces the file's contents with `rrd` (same path), atomically: written under
    /// a temporary name, synced and renamed over the old file.
    pub fn replace(self, rrd: Rrd) -> Result<RrdFile, RrdError> {
        let path = self.path.clone();
        drop(self);
        RrdFile::write_whole(path, rrd)
    }

    /// Writes `rrd` whole to `path`, atomically, keeping the new file open.
    fn write_whole(path: PathBuf, rrd: Rrd) -> Result<RrdFile, RrdError> {
        let file = replace_with(&path, Mode::Umask, |file| {
            file.write_all(&format::encode(&rrd))
        })?;
        let layout = Layout::of(rrd.ds.len(), &rrd.rras);
        Ok(RrdFile {
            path,
            file,
            layout,
            rrd,
        })
    }

    /// The last update time recorded in a file, reading and verifying only its
    /// headers (not the ring buffers).
    pub fn peek_last_update(path: &Path) -> Result<i64, RrdError> {
        let io = |source| RrdError::Io {
            path: path.to_path_buf(),
            io: source,
        };
        let file = File::open(path).map_err(io)?;
        let mut fixed = [0u8; 64];
        file.read_exact_at(&mut fixed, 0).map_err(io)?;
        let corrupt = |reason: String| RrdError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let data_offset = format::data_offset_of(&fixed).map_err(corrupt)?;
        let mut head = vec![0u8; data_offset as usize];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        format::last_update_of(&head).map_err(corrupt)
    }

    /// Opens and verifies a file. A file that fails a check is reported as
    /// [`RrdError::Corrupt`] and left exactly as it is.
    pub fn open(path: &Path) -> Result<RrdFile, RrdError> {
        let io = |source| RrdError::Io {
            path: path.to_path_buf(),
            io: source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let bytes = std::fs::read(path).map_err(io)?;
        let rrd = format::decode(&bytes).map_err(|reason| RrdError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })?;
        let layout = Layout::of(rrd.ds.len(), &rrd.rras);
        Ok(RrdFile {
            path: path.to_path_buf(),
            file,
            layout,
            rrd,
        })
    }

    /// Opens and verifies a file for updating: only the header and live block are
    /// read (a few KB), not the ring buffers; rows written by updates are kept until
    /// they are written. [`RrdFile::load`] reads the rings when they are needed.
    pub fn open_for_update(path: &Path) -> Result<RrdFile, RrdError> {
        let io = |source| RrdError::Io {
            path: path.to_path_buf(),
            io: source,
        };
        let corrupt = |reason: String| RrdError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut fixed = [0u8; 64];
        file.read_exact_at(&mut fixed, 0).map_err(io)?;
        let data_offset = format::data_offset_of(&fixed).map_err(corrupt)?;
        if data_offset > file_len {
            return Err(corrupt("the file is truncated".to_string()));
        }
        let mut head = vec![0u8; data_offset as usize];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        let rrd = format::decode_head(&head, file_len).map_err(corrupt)?;
        let layout = Layout::of(rrd.ds.len(), &rrd.rras);
        Ok(RrdFile {
            path: path.to_path_buf(),
            file,
            layout,
            rrd,
        })
    }

    /// Reads the ring buffers of a file opened with [`RrdFile::open_for_update`]
    /// (nothing to do when they are in memory already).
    pub fn load(&mut self) -> Result<(), RrdError> {
        if self.rrd.is_loaded() {
            return Ok(());
        }
        let io = |source| RrdError::Io {
            path: self.path.clone(),
            io: source,
        };
        let mut data = vec![0u8; (self.layout.file_len - self.layout.data_offset) as usize];
        self.file
            .read_exact_at(&mut data, self.layout.data_offset)
            .map_err(io)?;
        format::decode_rings(&mut self.rrd, &data).map_err(|reason| RrdError::Corrupt {
            path: self.path.clone(),
            reason,
        })
    }

    /// The open file (to sync it).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database as of the last update.
    pub fn rrd(&self) -> &Rrd {
        &self.rrd
    }

    /// Applies updates in order and writes the changes; returns how many were ignored
    /// because they lay at or before the last update.
    pub fn update(&mut self, updates: &[(i64, Vec<RawValue>)]) -> Result<usize, RrdError> {
        let mut ignored = 0;
        let mut result = Ok(());
        for (time, values) in updates {
            match self.rrd.update(*time, values) {
                Ok(true) => {}
                Ok(false) => ignored += 1,
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        self.write_changes()?;
        result.map(|()| ignored)
    }

    /// Reads rows back, as [`Rrd::fetch`].
    pub fn fetch(&self, request: &FetchRequest) -> Result<FetchResult, RrdError> {
        self.rrd.fetch(request)
    }

    /// Closes the database and returns the open file with its path (to sync it
    /// later without keeping the database in memory).
    pub fn into_file(self) -> (PathBuf, File) {
        (self.path, self.file)
    }

    /// Makes the written changes durable.
    pub fn sync(&self) -> Result<(), RrdError> {
        self.file.sync_data().map_err(|source| RrdError::Io {
            path: self.path.clone(),
            io: source,
        })
    }

    /// Writes the changed rows, then the live block that makes them current.
    fn write_changes(&mut self) -> Result<(), RrdError> {
        let changes = self.rrd.take_changes();
        let ds_count = self.rrd.ds.len();
        let io = |source| RrdError::Io {
            path: self.path.clone(),
            io: source,
        };
        for (rra, ranges) in changes.ranges().into_iter().enumerate() {
            let ring = &self.rrd.rings[rra];
            for range in ranges {
                let bytes: Vec<u8> = if ring.is_loaded() {
                    let values = &ring.values
                        [range.start as usize * ds_count..range.end as usize * ds_count];
                    values.iter().flat_map(|v| v.to_le_bytes()).collect()
                } else {
                    // Every changed row of an unloaded ring was kept when written.
                    (range.start..range.end)
                        .flat_map(|row| &ring.unloaded_rows[&row])
                        .flat_map(|v| v.to_le_bytes())
                        .collect()
                };
                let offset = self.layout.row_offset(&self.rrd, rra, range.start);
                self.file.write_all_at(&bytes, offset).map_err(io)?;
            }
        }
        for ring in &mut self.rrd.rings {
            ring.unloaded_rows.clear();
        }
        let live = format::encode_live(&self.rrd, &self.layout);
        self.file
            .write_all_at(&live, self.layout.live_offset)
            .map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rrd::store::{data_source_for, pve_archives};

    fn updates(from: i64, count: i64) -> Vec<(i64, Vec<RawValue>)> {
        (from..from + count)
            .map(|i| {
                let t = 1_700_000_040 + 20 * i;
                let values = vec![
                    RawValue::from_f64((i % 7) as f64),
                    RawValue::from_f64(i as f64),
                ];
                (t, values)
            })
            .collect()
    }

    #[test]
    fn updating_a_file_opened_for_updating_only_writes_what_a_loaded_file_writes() {
        let dir = tempfile::tempdir().unwrap();
        let ds = vec![
            data_source_for("cpu", fleetpoll_actors::MetricKind::Gauge),
            data_source_for("net", fleetpoll_actors::MetricKind::Derive),
        ];
        let rrd = Rrd::create(60, 1_700_000_000, ds, pve_archives()).unwrap();
        let (a, b) = (dir.path().join("a.rrd"), dir.path().join("b.rrd"));
        RrdFile::create(&a, rrd.clone()).unwrap();
        RrdFile::create(&b, rrd).unwrap();
        let mut loaded = RrdFile::open(&a).unwrap();
        loaded.update(&updates(0, 200)).unwrap();
        let mut lazy = RrdFile::open_for_update(&b).unwrap();
        assert!(!lazy.rrd().is_loaded());
        lazy.update(&updates(0, 200)).unwrap();
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
        // More updates after a reopen for updating, then the rings loaded: the same.
        loaded.update(&updates(200, 100)).unwrap();
        let mut lazy = RrdFile::open_for_update(&b).unwrap();
        lazy.update(&updates(200, 100)).unwrap();
        lazy.load().unwrap();
        assert!(lazy.rrd().is_loaded());
        assert!(format::encode(lazy.rrd()) == format::encode(loaded.rrd()));
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    }
}

//! An RRD file on disk: created once, opened with every checksum verified, and updated
//! in place by positioned writes of only the changed rows and the live block.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::ops::Range;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use super::database::{Rrd, UpdateScratch};
use super::error::RrdError;
use super::fetch::{FetchRequest, FetchResult};
use super::format::{self, Decoded, Layout, VERSION};
use super::value::RawValue;
use crate::durable::{crc32, replace_with, Mode};

/// The size of the writes that create a file: one page.
const WRITE_PIECE: usize = 4096;

/// How much of a file is read at first to decode its head: one page.
const HEAD_READ: u64 = 4096;

/// An open RRD file with its contents in memory.
#[derive(Debug)]
pub struct RrdFile {
    path: PathBuf,
    file: File,
    /// The device (file system) the file is on.
    dev: u64,
    layout: Layout,
    rrd: Rrd,
    /// The checksum of every block of rows, as on disk.
    block_crcs: Vec<u32>,
    /// Rows on disk may be newer than their checksums (a commit cut short by a crash,
    /// now replayed): a block that fails its checksum while it is rewritten is then
    /// taken as torn by that crash, not as damage.
    replaying: bool,
    /// The buffers updates work in, kept between them.
    scratch: UpdateScratch,
}

/// Appends `values` as little-endian `f64`s (as the rings store them).
fn put_f64s(out: &mut Vec<u8>, values: &[f64]) {
    out.reserve(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// [`RrdError::Corrupt`] for `path`.
fn corrupt(path: &Path) -> impl Fn(String) -> RrdError + '_ {
    move |reason| RrdError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// [`RrdError::Io`] for `path`.
fn io(path: &Path) -> impl Fn(std::io::Error) -> RrdError + '_ {
    move |source| RrdError::Io {
        path: path.to_path_buf(),
        io: source,
    }
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

    /// Writes `rrd` whole to `path` in the current layout, atomically, keeping the new
    /// file open.
    fn write_whole(path: PathBuf, rrd: Rrd) -> Result<RrdFile, RrdError> {
        let layout = Layout::of(rrd.ds.len(), &rrd.rras);
        let file = replace_with(&path, Mode::Umask, |file| {
            // In page-sized writes: the page cache then holds the file in pages, not
            // in the large folios (up to 512 KiB on ext4) one large write gets, so a
            // later update of a row dirties — and the commit's sync writes back —
            // 4 KiB instead of the whole folio around it.
            for piece in format::encode_as(&rrd, &layout).chunks(WRITE_PIECE) {
                file.write_all(piece)?;
            }
            Ok(())
        })?;
        let block_crcs = format::block_crcs(&rrd, &layout);
        let dev = file.metadata().map_err(io(&path))?.dev();
        Ok(RrdFile {
            path,
            file,
            dev,
            layout,
            rrd,
            block_crcs,
            replaying: false,
            scratch: UpdateScratch::default(),
        })
    }

    /// A file of an older layout version rewritten in the current one (nothing to do
    /// for a current file). The rings must be loaded.
    fn upgraded(self) -> Result<RrdFile, RrdError> {
        if self.layout.version == VERSION {
            return Ok(self);
        }
        tracing::info!(
            file = %self.path.display(),
            from = self.layout.version,
            to = VERSION,
            "RRD file upgraded to the current layout (row checksums added)"
        );
        let rrd = self.rrd.clone();
        self.replace(rrd)
    }

    /// Reads and verifies the static header, live block and checksum table of an open
    /// file (not the ring buffers); also returns the file's device.
    fn read_head(path: &Path, file: &File) -> Result<(Decoded, u64), RrdError> {
        let meta = file.metadata().map_err(io(path))?;
        let file_len = meta.len();
        // One read usually holds the whole head (under 4 KB for a dozen data sources).
        let mut head = vec![0u8; file_len.min(HEAD_READ) as usize];
        file.read_exact_at(&mut head, 0).map_err(io(path))?;
        let data_offset =
            format::data_offset_of(&head[..head.len().min(64)]).map_err(corrupt(path))?;
        if data_offset > file_len {
            return Err(corrupt(path)(format!(
                "the file is truncated ({file_len} bytes, its header says the rows start at \
                 byte {data_offset})"
            )));
        }
        let read = head.len() as u64;
        head.resize(data_offset as usize, 0);
        if data_offset > read {
            file.read_exact_at(&mut head[read as usize..], read)
                .map_err(io(path))?;
        }
        let decoded = format::decode_head(&head, file_len).map_err(corrupt(path))?;
        Ok((decoded, meta.dev()))
    }

    /// The last update time recorded in a file, reading and verifying only its
    /// headers (not the ring buffers).
    pub fn peek_last_update(path: &Path) -> Result<i64, RrdError> {
        let file = File::open(path).map_err(io(path))?;
        Ok(RrdFile::read_head(path, &file)?.0.rrd.last_update())
    }

    /// Opens and verifies a whole file, every block of rows against its checksum. A
    /// file that fails a check is reported as [`RrdError::Corrupt`] and left exactly
    /// as it is. A file of layout version 1 is upgraded (rewritten atomically with row
    /// checksums).
    pub fn open(path: &Path) -> Result<RrdFile, RrdError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let dev = file.metadata().map_err(io(path))?.dev();
        let bytes = std::fs::read(path).map_err(io(path))?;
        let decoded = format::decode(&bytes).map_err(corrupt(path))?;
        RrdFile {
            path: path.to_path_buf(),
            file,
            dev,
            layout: decoded.layout,
            rrd: decoded.rrd,
            block_crcs: decoded.block_crcs,
            replaying: false,
            scratch: UpdateScratch::default(),
        }
        .upgraded()
    }

    /// Opens and verifies a file for updating: only the header, live block and
    /// checksum table are read (a few KB), not the ring buffers; rows written by
    /// updates are kept until they are written. [`RrdFile::load`] reads the rings when
    /// they are needed. A file of layout version 1 is opened whole and upgraded.
    pub fn open_for_update(path: &Path) -> Result<RrdFile, RrdError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let (decoded, dev) = RrdFile::read_head(path, &file)?;
        if decoded.layout.version != VERSION {
            drop(file);
            return RrdFile::open(path);
        }
        Ok(RrdFile {
            path: path.to_path_buf(),
            file,
            dev,
            layout: decoded.layout,
            rrd: decoded.rrd,
            block_crcs: decoded.block_crcs,
            replaying: false,
            scratch: UpdateScratch::default(),
        })
    }

    /// Reads the ring buffers of a file opened with [`RrdFile::open_for_update`]
    /// (nothing to do when they are in memory already), verifying every block of rows.
    pub fn load(&mut self) -> Result<(), RrdError> {
        if self.rrd.is_loaded() {
            return Ok(());
        }
        let mut data = vec![0u8; (self.layout.file_len - self.layout.data_offset) as usize];
        self.file
            .read_exact_at(&mut data, self.layout.data_offset)
            .map_err(io(&self.path))?;
        format::decode_rings(&mut self.rrd, &self.layout, &self.block_crcs, &data)
            .map_err(corrupt(&self.path))
    }

    /// Says whether the rows on disk may be newer than their checksums because a
    /// commit was cut short by a crash and is being replayed (see
    /// [`RrdFile::update`]).
    pub(crate) fn set_replaying(&mut self, replaying: bool) {
        self.replaying = replaying;
    }

    /// The open file (to sync it).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The device (file system) the file is on.
    pub(crate) fn dev(&self) -> u64 {
        self.dev
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
    /// because they lay at or before the last update. When the rings are not loaded, a
    /// changed block of rows is read back to be checksummed again, and a block that
    /// fails its old checksum is reported as [`RrdError::Corrupt`] before anything is
    /// written.
    pub fn update(&mut self, updates: &[(i64, Vec<RawValue>)]) -> Result<usize, RrdError> {
        self.apply(
            updates
                .iter()
                .map(|(time, values)| (*time, values.as_slice())),
        )
    }

    /// Applies updates as [`RrdFile::update`], given as a table: `values` holds one
    /// value per data source for each of `times`, row after row.
    pub(crate) fn update_table(
        &mut self,
        times: &[i64],
        values: &[RawValue],
    ) -> Result<usize, RrdError> {
        let width = self.rrd.ds.len().max(1);
        if values.len() != times.len() * width {
            return Err(RrdError::update(
                format!("{} rows", times.len()),
                format!("expected {} values per row", self.rrd.ds.len()),
            ));
        }
        self.apply(times.iter().copied().zip(values.chunks_exact(width)))
    }

    fn apply<'a>(
        &mut self,
        updates: impl Iterator<Item = (i64, &'a [RawValue])>,
    ) -> Result<usize, RrdError> {
        let mut ignored = 0;
        let mut result = Ok(());
        for (time, values) in updates {
            match self.rrd.update_with(time, values, &mut self.scratch) {
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
        crate::durable::sync_data(&self.file).map_err(io(&self.path))
    }

    /// Writes the changed rows, then the live block that makes them current together
    /// with their blocks' checksums (the table follows the live block: one write, of
    /// the table up to the last changed entry).
    fn write_changes(&mut self) -> Result<(), RrdError> {
        let changes = self.rrd.take_changes();
        let ranges = changes.ranges();
        // Worked out before anything is written: a damaged block stops the update
        // with the file as it was.
        let checksums = self.checksums_of_changed_blocks(&ranges)?;
        let ds_count = self.rrd.ds.len();
        let mut bytes = Vec::new();
        for (rra, ranges) in ranges.into_iter().enumerate() {
            let ring = &self.rrd.rings[rra];
            for range in ranges {
                bytes.clear();
                if ring.is_loaded() {
                    let values = &ring.values
                        [range.start as usize * ds_count..range.end as usize * ds_count];
                    put_f64s(&mut bytes, values);
                } else {
                    // Every changed row of an unloaded ring was kept when written.
                    for row in range.clone() {
                        put_f64s(&mut bytes, &ring.unloaded_rows[&row]);
                    }
                }
                let offset = self.layout.row_offset(&self.rrd, rra, range.start);
                self.file
                    .write_all_at(&bytes, offset)
                    .map_err(io(&self.path))?;
            }
        }
        for ring in &mut self.rrd.rings {
            ring.unloaded_rows.clear();
        }
        let mut table_end = 0;
        for (index, crc) in checksums {
            self.block_crcs[index] = crc;
            table_end = table_end.max(index + 1);
        }
        let mut live = format::encode_live(&self.rrd, &self.layout);
        debug_assert_eq!(
            self.layout.live_offset + live.len() as u64,
            self.layout.crc_offset
        );
        for crc in &self.block_crcs[..table_end] {
            live.extend_from_slice(&crc.to_le_bytes());
        }
        self.file
            .write_all_at(&live, self.layout.live_offset)
            .map_err(io(&self.path))
    }

    /// The new checksum of every block holding a changed row, as (table index,
    /// checksum), in table order.
    fn checksums_of_changed_blocks(
        &self,
        ranges: &[Vec<Range<u64>>],
    ) -> Result<Vec<(usize, u32)>, RrdError> {
        let per_block = self.layout.rows_per_block;
        if per_block == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (rra, ranges) in ranges.iter().enumerate() {
            let first = self.layout.first_block(&self.rrd.rras, rra);
            let mut blocks: Vec<u64> = ranges
                .iter()
                .flat_map(|r| r.start / per_block..=(r.end - 1) / per_block)
                .collect();
            blocks.dedup();
            for block in blocks {
                let index = first + block as usize;
                out.push((index, self.block_checksum(rra, block, index)?));
            }
        }
        Ok(out)
    }

    /// The checksum of a block as it is about to be written: from memory when the
    /// ring is loaded, else from the disk (verified against its old checksum) with the
    /// changed rows laid over it.
    fn block_checksum(&self, rra: usize, block: u64, index: usize) -> Result<u32, RrdError> {
        let ds_count = self.rrd.ds.len();
        let def = &self.rrd.rras[rra];
        let ring = &self.rrd.rings[rra];
        let rows = self.layout.block_rows(def.rows, block);
        if ring.is_loaded() {
            let values = &ring.values[rows.start as usize * ds_count..rows.end as usize * ds_count];
            return Ok(format::block_crc(values));
        }
        let row_len = ds_count * 8;
        let mut bytes = vec![0u8; (rows.end - rows.start) as usize * row_len];
        let offset = self.layout.row_offset(&self.rrd, rra, rows.start);
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(io(&self.path))?;
        if !self.replaying && crc32(&bytes) != self.block_crcs[index] {
            return Err(corrupt(&self.path)(format::row_damage(rra, def, rows)));
        }
        for (row, values) in ring.unloaded_rows.range(rows.clone()) {
            let at = (row - rows.start) as usize * row_len;
            for (i, v) in values.iter().enumerate() {
                bytes[at + 8 * i..at + 8 * i + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        Ok(crc32(&bytes))
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

    fn two_metric_file(dir: &Path, name: &str) -> (PathBuf, Rrd) {
        let ds = vec![
            data_source_for("cpu", fleetpoll_actors::MetricKind::Gauge),
            data_source_for("net", fleetpoll_actors::MetricKind::Derive),
        ];
        let rrd = Rrd::create(60, 1_700_000_000, ds, pve_archives()).unwrap();
        let path = dir.join(name);
        let mut file = RrdFile::create(&path, rrd).unwrap();
        file.update(&updates(0, 300)).unwrap();
        let rrd = file.rrd().clone();
        (path, rrd)
    }

    #[test]
    fn a_version_1_file_is_upgraded_on_open_with_every_value_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (path, rrd) = two_metric_file(dir.path(), "old.rrd");
        let v1 = Layout::of_version(format::VERSION_1, rrd.ds.len(), &rrd.rras);
        std::fs::write(&path, format::encode_as(&rrd, &v1)).unwrap();
        assert_eq!(RrdFile::peek_last_update(&path).unwrap(), rrd.last_update());

        let mut file = RrdFile::open_for_update(&path).unwrap();
        assert!(
            format::encode(file.rrd()) == format::encode(&rrd),
            "the same database"
        );
        assert!(
            std::fs::read(&path).unwrap() == format::encode(&rrd),
            "rewritten in the current layout, row checksums included"
        );
        file.update(&updates(300, 10)).unwrap();
        drop(file);
        let reopened = RrdFile::open(&path).unwrap();
        assert_eq!(reopened.rrd().last_update(), 1_700_000_040 + 20 * 309);
    }

    #[test]
    fn row_checksums_cost_a_thousandth_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, rrd) = two_metric_file(dir.path(), "cost.rrd");
        let v1 = Layout::of_version(format::VERSION_1, rrd.ds.len(), &rrd.rras);
        let v2 = std::fs::metadata(&path).unwrap().len();
        assert!(v2 > v1.file_len);
        assert!(
            (v2 - v1.file_len) * 1000 <= v1.file_len * 2,
            "{v2} vs {}",
            v1.file_len
        );
    }

    #[test]
    fn a_block_is_checksummed_again_from_disk_when_the_rings_are_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = two_metric_file(dir.path(), "lazy.rrd");
        // Many small updates, each rewriting a block read back from the disk.
        for i in 0..40 {
            let mut file = RrdFile::open_for_update(&path).unwrap();
            file.update(&updates(300 + 5 * i, 5)).unwrap();
        }
        let mut file = RrdFile::open_for_update(&path).unwrap();
        file.load().expect("every block matches its checksum");
    }

    #[test]
    fn an_update_over_a_damaged_block_is_refused_with_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let (path, rrd) = two_metric_file(dir.path(), "damaged.rrd");
        let layout = Layout::of(rrd.ds.len(), &rrd.rras);
        let next = (rrd.rings[0].cur_row + 1) % rrd.rras[0].rows;
        let mut bytes = std::fs::read(&path).unwrap();
        let offset = layout.row_offset(&rrd, 0, next) as usize;
        bytes[offset] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut file = RrdFile::open_for_update(&path).unwrap();
        let err = file.update(&updates(300, 1)).unwrap_err();
        assert!(matches!(err, RrdError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(std::fs::read(&path).unwrap() == bytes, "nothing written");
        // Replaying after a crash, the same block is taken as torn and rewritten: the
        // row the crash left half-done is written again.
        let mut file = RrdFile::open_for_update(&path).unwrap();
        file.set_replaying(true);
        file.update(&updates(300, 1)).unwrap();
        file.load().expect("the torn row was overwritten");
    }
}

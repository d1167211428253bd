//! [`Journal`]: an append-only file of frames, synced before an append returns, so what
//! an append acknowledged survives a crash. Opening reads the intact records and cuts
//! whatever follows them (a write torn by a crash, or corruption), so new records never
//! follow garbage.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::error::DurableError;
use super::frame::{begin_frame, end_frame, parse_frames, BadFrame};
use super::seam;

/// Mode of a file [`open_append`] creates (less the umask): it holds nothing secret.
const APPEND_MODE: u32 = 0o644;

/// An append writes its frames in pieces of about this size: few system calls, and
/// memory for at most this much beyond one record, whatever the number of records.
const WRITE_BYTES: usize = 64 << 10;

/// What a journal file held when it was read.
#[derive(Debug)]
pub struct Replay {
    /// The payloads of the intact records, oldest first.
    pub records: Vec<Vec<u8>>,
    /// Bytes the intact records span.
    pub intact_len: u64,
    /// The file's length as it was read.
    pub file_len: u64,
    /// Why the records ended before the file did, if they did.
    pub stop: Option<BadFrame>,
}

impl Replay {
    /// Reads the journal at `path` without changing it (a missing file is empty).
    pub fn read(path: &Path) -> Result<Replay, DurableError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Replay::of(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Replay::of(&[])),
            Err(e) => Err(DurableError::at(path, "read")(e)),
        }
    }

    /// Bytes after the intact records: a torn write or corruption.
    pub fn discarded_bytes(&self) -> u64 {
        self.file_len - self.intact_len
    }

    fn of(bytes: &[u8]) -> Replay {
        let frames = parse_frames(bytes);
        Replay {
            records: frames.records.into_iter().map(<[u8]>::to_vec).collect(),
            intact_len: frames.intact_len as u64,
            file_len: bytes.len() as u64,
            stop: frames.stop,
        }
    }
}

/// A journal file open for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Where the next record goes: the end of the last whole record.
    len: u64,
}

impl Journal {
    /// Opens (creating) the journal at `path`, returns what it held and cuts what
    /// follows its intact records.
    pub fn open(path: &Path) -> Result<(Journal, Replay), DurableError> {
        let mut file = open_append(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(DurableError::at(path, "read"))?;
        let replay = Replay::of(&bytes);
        drop(bytes);
        if replay.discarded_bytes() > 0 {
            file.set_len(replay.intact_len)
                .map_err(DurableError::at(path, "truncate"))?;
            seam::sync_data(&file).map_err(DurableError::at(path, "fsync"))?;
        }
        let len = replay.intact_len;
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            len,
        };
        Ok((journal, replay))
    }

    /// An empty journal at `path`, created or emptied, and synced.
    pub fn create(path: &Path) -> Result<Journal, DurableError> {
        let file = open_append(path)?;
        file.set_len(0)
            .map_err(DurableError::at(path, "truncate"))?;
        seam::sync_data(&file).map_err(DurableError::at(path, "fsync"))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            len: 0,
        })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the journal.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one record per payload and syncs once for all of them.
    pub fn append<P: AsRef<[u8]>>(
        &mut self,
        payloads: impl IntoIterator<Item = P>,
    ) -> Result<(), DurableError> {
        self.append_with(payloads, |payload, buf| {
            buf.extend_from_slice(payload.as_ref());
            Ok(())
        })
    }

    /// Appends one record per item, its payload appended to the buffer by `encode`
    /// (so a record is never built on its own first), and syncs once for all of them.
    /// When this returns the records survive a crash; when it fails none of them was
    /// acknowledged, and what was written of them is cut off again.
    pub fn append_with<T>(
        &mut self,
        records: impl IntoIterator<Item = T>,
        encode: impl FnMut(T, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<(), DurableError> {
        match self.write_synced(records, encode) {
            Ok(len) => {
                self.len = len;
                Ok(())
            }
            Err(e) => {
                // A partly written record would stop replay before every later one
                // (best effort: replay would stop there anyway).
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Writes the records after the current end and syncs; returns the new length.
    fn write_synced<T>(
        &mut self,
        records: impl IntoIterator<Item = T>,
        mut encode: impl FnMut(T, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<u64, DurableError> {
        let mut buf = Vec::new();
        let mut len = self.len;
        let mut records = records.into_iter().peekable();
        while let Some(record) = records.next() {
            let start = begin_frame(&mut buf);
            encode(record, &mut buf)
                .map_err(DurableError::at(&self.path, "encode journal record"))?;
            end_frame(&mut buf, start)
                .map_err(|e| DurableError::at(&self.path, "append")(e.into()))?;
            if buf.len() >= WRITE_BYTES || records.peek().is_none() {
                self.file
                    .write_all(&buf)
                    .map_err(DurableError::at(&self.path, "append"))?;
                len += buf.len() as u64;
                buf.clear();
            }
        }
        seam::sync_data(&self.file).map_err(DurableError::at(&self.path, "fsync"))?;
        Ok(len)
    }

    /// Cuts the journal to `len` bytes (0 once its records are elsewhere) and syncs.
    pub fn truncate(&mut self, len: u64) -> Result<(), DurableError> {
        self.file
            .set_len(len)
            .map_err(DurableError::at(&self.path, "truncate"))?;
        seam::sync_all(&self.file).map_err(DurableError::at(&self.path, "fsync"))?;
        self.len = len;
        Ok(())
    }
}

/// Opens (creating, mode 0644 less the umask) a file for reading and appending: a
/// journal, or any other file only ever appended to.
pub fn open_append(path: &Path) -> Result<File, DurableError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(APPEND_MODE)
        .open(path)
        .map_err(DurableError::at(path, "open for append"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("journal")
    }

    #[test]
    fn appended_records_are_replayed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let (mut j, replay) = Journal::open(&p).unwrap();
        assert!(replay.records.is_empty());
        j.append([b"one", b"two"]).unwrap();
        j.append([b"three"]).unwrap();
        assert_eq!(j.len(), std::fs::metadata(&p).unwrap().len());
        drop(j);
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(
            replay.records,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(replay.discarded_bytes(), 0);
        assert_eq!(replay.stop, None);
    }

    #[test]
    fn replay_stops_cleanly_at_a_torn_tail_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append([&b"kept"[..], b"torn-record"]).unwrap();
        drop(j);
        let len = std::fs::metadata(&p).unwrap().len();
        let file = OpenOptions::new().write(true).open(&p).unwrap();
        file.set_len(len - 3).unwrap(); // a crash in the middle of the second record
        drop(file);
        let (mut j, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"kept".to_vec()]);
        assert_eq!(replay.discarded_bytes(), 8 + 11 - 3);
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            8 + 4,
            "the tail is cut"
        );
        j.append([b"after"]).unwrap();
        drop(j);
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"kept".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn replay_stops_at_a_record_whose_checksum_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append([&b"good"[..], b"flipped", b"lost"]).unwrap();
        drop(j);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[8 + 4 + 8 + 2] ^= 1; // inside "flipped"
        std::fs::write(&p, &bytes).unwrap();
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"good".to_vec()]);
        assert!(replay.discarded_bytes() > 0);
        assert_eq!(replay.stop, Some(BadFrame::Checksum));
    }

    #[test]
    fn reading_a_journal_changes_nothing_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let replay = Replay::read(&p).unwrap();
        assert!(replay.records.is_empty() && replay.file_len == 0);
        assert!(!p.exists());
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append([b"whole"]).unwrap();
        drop(j);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(b"torn");
        std::fs::write(&p, &bytes).unwrap();
        let replay = Replay::read(&p).unwrap();
        assert_eq!(replay.records, vec![b"whole".to_vec()]);
        assert_eq!(replay.discarded_bytes(), 4);
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
    }

    #[test]
    fn a_failed_encoding_appends_none_of_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append_with(["a", "b"], |s, buf| buf.write_all(s.as_bytes()))
            .unwrap();
        let len = j.len();
        let failed = j.append_with(["c", "bad"], |s, buf| {
            if s == "bad" {
                return Err(std::io::Error::other("cannot encode"));
            }
            buf.write_all(s.as_bytes())
        });
        assert_eq!(failed.unwrap_err().op, "encode journal record");
        assert_eq!(j.len(), len);
        drop(j);
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn truncating_and_creating_empty_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append([b"one"]).unwrap();
        let one = j.len();
        j.append([b"two"]).unwrap();
        j.truncate(one).unwrap();
        j.append([b"three"]).unwrap();
        drop(j);
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"one".to_vec(), b"three".to_vec()]);
        let j = Journal::create(&p).unwrap();
        assert!(j.is_empty());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    }
}

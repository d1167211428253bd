//! The crash-safe journal in front of the RRD files: an append-only file of
//! length-framed, CRC-32-checked records, synced before an append returns. Replay
//! reads records up to the first torn or corrupt one and cuts the file there.
//!
//! Record framing: `len: u32 LE`, `crc32(payload): u32 LE`, `payload: len bytes`.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::crc::crc32;
use super::error::RrdError;

/// The largest record accepted (a guard against a corrupt length field).
const MAX_RECORD: u32 = 256 << 20;

/// An open journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

/// What opening a journal found.
#[derive(Debug)]
pub struct Replay {
    /// The intact records, oldest first.
    pub records: Vec<Vec<u8>>,
    /// Bytes cut from the end because they did not form an intact record (a write torn
    /// by a crash, or corruption).
    pub discarded_bytes: u64,
}

impl Journal {
    /// Opens (or creates) the journal, returns its intact records and truncates what
    /// follows the last of them, so new records never follow garbage.
    pub fn open(path: &Path) -> Result<(Journal, Replay), RrdError> {
        let io = |source| RrdError::Io {
            path: path.to_path_buf(),
            io: source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, intact) = parse(&bytes);
        let discarded_bytes = (bytes.len() - intact) as u64;
        if discarded_bytes > 0 {
            file.set_len(intact as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
            },
            Replay {
                records,
                discarded_bytes,
            },
        ))
    }

    /// Appends records and syncs them to disk; when this returns they survive a crash.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<(), RrdError> {
        let mut buf = Vec::new();
        for payload in records {
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|&n| n <= MAX_RECORD)
                .ok_or_else(|| RrdError::Io {
                    path: self.path.clone(),
                    io: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "journal record too large",
                    ),
                })?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32(payload).to_le_bytes());
            buf.extend_from_slice(payload);
        }
        let io = |source| RrdError::Io {
            path: self.path.clone(),
            io: source,
        };
        self.file.write_all(&buf).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// Empties the journal once everything in it is durable elsewhere.
    pub fn clear(&mut self) -> Result<(), RrdError> {
        let io = |source| RrdError::Io {
            path: self.path.clone(),
            io: source,
        };
        self.file.set_len(0).map_err(io)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

/// The intact records at the start of `bytes`, and how many bytes they span.
fn parse(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len as usize) else {
            break;
        };
        if crc32(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        pos += 8 + len as usize;
    }
    (records, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fleetpoll-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn appended_records_are_replayed_in_order() {
        let p = path("order.journal");
        let (mut j, replay) = Journal::open(&p).unwrap();
        assert!(replay.records.is_empty());
        j.append(&[b"one".to_vec(), b"two".to_vec()]).unwrap();
        j.append(&[b"three".to_vec()]).unwrap();
        drop(j);
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(
            replay.records,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(replay.discarded_bytes, 0);
    }

    #[test]
    fn replay_stops_cleanly_at_a_torn_tail_and_appends_continue_after_it() {
        let p = path("torn.journal");
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(&[b"kept".to_vec(), b"torn-record".to_vec()])
            .unwrap();
        drop(j);
        let len = std::fs::metadata(&p).unwrap().len();
        let file = OpenOptions::new().write(true).open(&p).unwrap();
        file.set_len(len - 3).unwrap(); // a crash in the middle of the second record
        drop(file);
        let (mut j, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"kept".to_vec()]);
        assert_eq!(replay.discarded_bytes, 8 + 11 - 3);
        j.append(&[b"after".to_vec()]).unwrap();
        drop(j);
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"kept".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn replay_stops_at_a_record_whose_checksum_fails() {
        let p = path("corrupt.journal");
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(&[b"good".to_vec(), b"flipped".to_vec(), b"lost".to_vec()])
            .unwrap();
        drop(j);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[8 + 4 + 8 + 2] ^= 1; // inside "flipped"
        std::fs::write(&p, &bytes).unwrap();
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"good".to_vec()]);
        assert!(replay.discarded_bytes > 0);
    }

    #[test]
    fn a_cleared_journal_replays_nothing() {
        let p = path("clear.journal");
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(&[b"x".to_vec()]).unwrap();
        j.clear().unwrap();
        j.append(&[b"y".to_vec()]).unwrap();
        drop(j);
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"y".to_vec()]);
    }
}

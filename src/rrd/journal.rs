//! The crash-safe journal in front of the RRD files: an append-only file of
//! length-framed, CRC-32-checked records, synced before an append returns. Replay
//! reads records up to the first torn or corrupt one and cuts the file there.
//!
//! Record framing: `len: u32 LE`, `crc32(payload): u32 LE`, `payload: len bytes`.
//!
//! A commit first *seals* the journal — its records move to `<journal>.sealed` and new
//! appends start an empty journal — then writes the files without holding up readers or
//! writers, and *releases* the sealed part once the files are synced. Opening replays
//! the sealed part (if a commit did not finish) before the journal.

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

/// Opens `path` for reading and appending, returns its intact records and cuts what
/// follows them.
fn open_intact(path: &Path) -> Result<(File, Vec<Vec<u8>>, u64), RrdError> {
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
    let discarded = (bytes.len() - intact) as u64;
    if discarded > 0 {
        file.set_len(intact as u64).map_err(io)?;
        file.sync_data().map_err(io)?;
    }
    file.seek(SeekFrom::End(0)).map_err(io)?;
    Ok((file, records, discarded))
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
    /// Opens (or creates) the journal, returns its intact records — those of a sealed
    /// part first — and truncates what follows the last of them, so new records never
    /// follow garbage.
    pub fn open(path: &Path) -> Result<(Journal, Replay), RrdError> {
        let mut records = Vec::new();
        let mut discarded_bytes = 0;
        let sealed = sealed_path(path);
        if sealed.exists() {
            let (_, sealed_records, discarded) = open_intact(&sealed)?;
            records = sealed_records;
            discarded_bytes += discarded;
        }
        let (file, current, discarded) = open_intact(path)?;
        records.extend(current);
        discarded_bytes += discarded;
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

    /// Moves every record into the sealed part (appending to one a failed commit left)
    /// and starts an empty journal. Durable when it returns. A failure leaves every
    /// record in one of the two files, whole.
    pub fn seal(&mut self) -> Result<(), RrdError> {
        let sealed = sealed_path(&self.path);
        if !sealed.exists() {
            let len = self
                .file
                .metadata()
                .map_err(|e| io_at(&self.path, e))?
                .len();
            if len == 0 {
                return Ok(());
            }
            std::fs::rename(&self.path, &sealed).map_err(|e| io_at(&sealed, e))?;
            // Until the new journal is open, appends still go to the renamed file:
            // they are in the sealed part then, which is just as durable.
            self.file = fresh(&self.path)?;
            return super::file::sync_dir(self.path.parent().unwrap_or(Path::new(".")));
        }
        // Read by path: after a failed seal, `self.file` may be the sealed file itself.
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_at(&self.path, e)),
        };
        if !bytes.is_empty() {
            let mut target = OpenOptions::new()
                .append(true)
                .open(&sealed)
                .map_err(|e| io_at(&sealed, e))?;
            let before = target.metadata().map_err(|e| io_at(&sealed, e))?.len();
            if let Err(e) = target.write_all(&bytes).and_then(|()| target.sync_data()) {
                // No torn record may stay in the sealed part: later ones would be
                // cut off with it at replay.
                let _ = target.set_len(before).and_then(|()| target.sync_data());
                return Err(io_at(&sealed, e));
            }
        }
        self.file = fresh(&self.path)?;
        super::file::sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }

    /// Deletes the sealed part once everything in it is durable in the files.
    pub fn release_sealed(&mut self) -> Result<(), RrdError> {
        let sealed = sealed_path(&self.path);
        match std::fs::remove_file(&sealed) {
            Ok(()) => super::file::sync_dir(self.path.parent().unwrap_or(Path::new("."))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&sealed, e)),
        }
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
}

fn io_at(path: &Path, source: std::io::Error) -> RrdError {
    RrdError::Io {
        path: path.to_path_buf(),
        io: source,
    }
}

/// An empty journal file at `path` (created or truncated), synced.
fn fresh(path: &Path) -> Result<File, RrdError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_at(path, e))?;
    file.sync_data().map_err(|e| io_at(path, e))?;
    Ok(file)
}

/// Where a journal's sealed part lives.
fn sealed_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sealed");
    PathBuf::from(name)
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
    fn sealed_records_replay_before_newer_ones_until_released() {
        let p = path("sealed.journal");
        let _ = std::fs::remove_file(sealed_path(&p));
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(&[b"a".to_vec()]).unwrap();
        j.seal().unwrap();
        j.append(&[b"b".to_vec()]).unwrap();
        // A second seal before a release (the commit in between failed) appends.
        j.seal().unwrap();
        j.append(&[b"c".to_vec()]).unwrap();
        drop(j);
        let (mut j, replay) = Journal::open(&p).unwrap();
        assert_eq!(
            replay.records,
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        j.seal().unwrap();
        j.release_sealed().unwrap();
        j.append(&[b"d".to_vec()]).unwrap();
        drop(j);
        let (_, replay) = Journal::open(&p).unwrap();
        assert_eq!(replay.records, vec![b"d".to_vec()]);
        assert!(!sealed_path(&p).exists());
    }
}

//! The write-ahead journal: every merge that changed the cache is appended here and
//! fsynced before `store_tasks` returns. A record is `[len: u32 LE][crc32: u32 LE][JSON]`;
//! replay stops at the first record that is cut off or fails its checksum.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::TaskCacheError;
use super::files::open_append;
use super::format::DiskTask;

/// Bytes of a record's frame before its payload.
const FRAME: usize = 8;

/// Largest payload replay accepts; a longer length means a corrupt frame.
const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// One merge of one remote's batch.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JournalEntry<'a> {
    /// The remote.
    #[serde(borrow)]
    pub(crate) r: Cow<'a, str>,
    /// Cutoff keys (nodes) whose lists were complete: their cutoffs advance on replay too.
    pub(crate) c: Vec<String>,
    /// The task states that were new or changed.
    #[serde(borrow)]
    pub(crate) t: Vec<DiskTask<'a>>,
}

/// The journal file, open for appending.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
}

/// What replay found.
#[derive(Debug)]
pub(crate) struct Replay {
    /// Bytes of complete, valid records.
    pub(crate) valid_len: u64,
    /// The file's length.
    pub(crate) file_len: u64,
    /// Why replay stopped before the end, if it did.
    pub(crate) problem: Option<String>,
}

impl Journal {
    /// Opens (creating) the journal; `len` is where the next record goes.
    pub(crate) fn open(path: &Path) -> Result<Journal, TaskCacheError> {
        let file = open_append(path)?;
        let len = file
            .metadata()
            .map_err(TaskCacheError::io(path, "stat"))?
            .len();
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    /// Bytes in the journal.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends the records and fsyncs once for all of them. Each record is encoded into
    /// one buffer, reused for the next and dropped at the end, so memory holds one
    /// record at a time whatever the number of records.
    pub(crate) fn append<T: Serialize>(
        &mut self,
        records: impl IntoIterator<Item = T>,
    ) -> Result<(), TaskCacheError> {
        let mut buf = Vec::new();
        let mut len = self.len;
        let mut written = Ok(());
        for record in records {
            buf.clear();
            buf.extend_from_slice(&[0; FRAME]);
            if let Err(e) = serde_json::to_writer(&mut buf, &record) {
                written = Err(TaskCacheError::Io {
                    path: self.path.clone(),
                    action: "encode journal record",
                    source: std::io::Error::other(e),
                });
                break;
            }
            let payload = &buf[FRAME..];
            let frame_len = (payload.len() as u32).to_le_bytes();
            let crc = crc32fast::hash(payload).to_le_bytes();
            buf[..4].copy_from_slice(&frame_len);
            buf[4..FRAME].copy_from_slice(&crc);
            written = self
                .file
                .write_all(&buf)
                .map_err(TaskCacheError::io(&self.path, "append"));
            if written.is_err() {
                break;
            }
            len += buf.len() as u64;
        }
        let written = written.and_then(|()| {
            self.file
                .sync_data()
                .map_err(TaskCacheError::io(&self.path, "fsync"))
        });
        if let Err(e) = written {
            // A partly written record would stop replay before every later record:
            // cut it off again (best effort; replay would stop there anyway).
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len = len;
        Ok(())
    }

    /// Cuts the journal to `len` bytes (0 after it was applied) and fsyncs.
    pub(crate) fn truncate(&mut self, len: u64) -> Result<(), TaskCacheError> {
        self.file
            .set_len(len)
            .map_err(TaskCacheError::io(&self.path, "truncate"))?;
        self.file
            .sync_all()
            .map_err(TaskCacheError::io(&self.path, "fsync"))?;
        self.len = len;
        Ok(())
    }
}

/// Reads the journal at `path` (missing means empty) and hands each valid entry to
/// `apply`, stopping at the first torn or corrupt record.
pub(crate) fn replay(
    path: &Path,
    mut apply: impl FnMut(JournalEntry<'_>),
) -> Result<Replay, TaskCacheError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(TaskCacheError::io(path, "read")(e)),
    };
    let mut at = 0usize;
    let mut problem = None;
    while at < bytes.len() {
        let Some(frame) = bytes.get(at..at + FRAME) else {
            problem = Some(format!(
                "the record header is cut off ({} of {FRAME} bytes)",
                bytes.len() - at
            ));
            break;
        };
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len > MAX_PAYLOAD {
            problem = Some(format!("the record length {len} is implausible"));
            break;
        }
        let Some(payload) = bytes.get(at + FRAME..at + FRAME + len) else {
            problem = Some(format!(
                "the record is cut off ({} of {len} payload bytes)",
                bytes.len() - at - FRAME
            ));
            break;
        };
        if crc32fast::hash(payload) != crc {
            problem = Some("the record's CRC32 does not match".to_string());
            break;
        }
        match serde_json::from_slice::<JournalEntry<'_>>(payload) {
            Ok(entry) => apply(entry),
            Err(e) => {
                problem = Some(format!("the record does not decode: {e}"));
                break;
            }
        }
        at += FRAME + len;
    }
    Ok(Replay {
        valid_len: at as u64,
        file_len: bytes.len() as u64,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(remote: &str) -> JournalEntry<'_> {
        JournalEntry {
            r: Cow::Borrowed(remote),
            c: vec!["n1".into()],
            t: Vec::new(),
        }
    }

    fn remotes(path: &Path) -> (Vec<String>, Replay) {
        let mut seen = Vec::new();
        let replayed = replay(path, |e| seen.push(e.r.to_string())).unwrap();
        (seen, replayed)
    }

    #[test]
    fn replay_returns_every_fsynced_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.bin");
        let mut j = Journal::open(&path).unwrap();
        j.append([entry("a"), entry("b")]).unwrap();
        j.append([entry("c")]).unwrap();
        let (seen, replayed) = remotes(&path);
        assert_eq!(seen, ["a", "b", "c"]);
        assert_eq!(replayed.valid_len, j.len());
        assert!(replayed.problem.is_none());
    }

    #[test]
    fn replay_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.bin");
        let mut j = Journal::open(&path).unwrap();
        j.append([entry("a"), entry("b")]).unwrap();
        let full = std::fs::read(&path).unwrap();
        for cut in [full.len() - 1, full.len() - 10, full.len() - 30] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (seen, replayed) = remotes(&path);
            assert_eq!(seen, ["a"], "cut at {cut}");
            assert!(replayed.problem.unwrap().contains("cut off"));
            assert!(replayed.valid_len < cut as u64);
        }
    }

    #[test]
    fn replay_stops_at_a_checksum_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.bin");
        let mut j = Journal::open(&path).unwrap();
        j.append([entry("a"), entry("b"), entry("c")]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let second = bytes.len() / 2;
        bytes[second] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (seen, replayed) = remotes(&path);
        assert_eq!(seen, ["a"]);
        assert!(replayed.problem.unwrap().contains("CRC32"));
    }
}

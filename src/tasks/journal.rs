//! The write-ahead journal's records: every merge that changed the cache is appended
//! as one JSON [`JournalEntry`] to a [`Journal`] (framed `[len: u32 LE][crc32: u32 LE]`)
//! and fsynced before `store_tasks` returns. Replay stops at the first record that is
//! cut off, fails its checksum or does not decode.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::error::TaskCacheError;
use super::format::DiskTask;
use crate::durable::{framed_len, Journal, Replay};

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

/// What replay found.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// Bytes of complete, valid records.
    pub(crate) valid_len: u64,
    /// The file's length.
    pub(crate) file_len: u64,
    /// Why replay stopped before the end, if it did.
    pub(crate) problem: Option<String>,
}

/// Appends the entries and fsyncs once for all of them. Each is encoded straight into
/// the journal's buffer, so memory holds about one record at a time whatever their
/// number.
pub(crate) fn append<T: Serialize>(
    journal: &mut Journal,
    entries: impl IntoIterator<Item = T>,
) -> Result<(), TaskCacheError> {
    Ok(journal.append_with(entries, |entry, buf| {
        serde_json::to_writer(buf, &entry).map_err(std::io::Error::other)
    })?)
}

/// Hands each entry of the journal's intact records to `apply`, stopping at the first
/// that does not decode.
pub(crate) fn replay(found: &Replay, mut apply: impl FnMut(JournalEntry<'_>)) -> Replayed {
    let mut valid_len = 0;
    for record in &found.records {
        match serde_json::from_slice::<JournalEntry<'_>>(record) {
            Ok(entry) => apply(entry),
            Err(e) => {
                return Replayed {
                    valid_len,
                    file_len: found.file_len,
                    problem: Some(format!("the record does not decode: {e}")),
                }
            }
        }
        valid_len += framed_len(record.len());
    }
    Replayed {
        valid_len,
        file_len: found.file_len,
        problem: found.stop.as_ref().map(ToString::to_string),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn entry(remote: &str) -> JournalEntry<'_> {
        JournalEntry {
            r: Cow::Borrowed(remote),
            c: vec!["n1".into()],
            t: Vec::new(),
        }
    }

    fn remotes(path: &Path) -> (Vec<String>, Replayed) {
        let mut seen = Vec::new();
        let found = Replay::read(path).unwrap();
        let replayed = replay(&found, |e| seen.push(e.r.to_string()));
        (seen, replayed)
    }

    fn open(path: &Path) -> Journal {
        Journal::open(path).unwrap().0
    }

    #[test]
    fn replay_returns_every_fsynced_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.bin");
        let mut j = open(&path);
        append(&mut j, [entry("a"), entry("b")]).unwrap();
        append(&mut j, [entry("c")]).unwrap();
        let (seen, replayed) = remotes(&path);
        assert_eq!(seen, ["a", "b", "c"]);
        assert_eq!(replayed.valid_len, j.len());
        assert!(replayed.problem.is_none());
    }

    #[test]
    fn replay_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.bin");
        let mut j = open(&path);
        append(&mut j, [entry("a"), entry("b")]).unwrap();
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
        let mut j = open(&path);
        append(&mut j, [entry("a"), entry("b"), entry("c")]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let second = bytes.len() / 2;
        bytes[second] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (seen, replayed) = remotes(&path);
        assert_eq!(seen, ["a"]);
        assert!(replayed.problem.unwrap().contains("CRC32"));
    }

    #[test]
    fn replay_stops_at_a_record_that_does_not_decode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.bin");
        let mut j = open(&path);
        append(&mut j, [entry("a")]).unwrap();
        let valid = j.len();
        j.append([b"not json"]).unwrap();
        append(&mut j, [entry("c")]).unwrap();
        let (seen, replayed) = remotes(&path);
        assert_eq!(seen, ["a"]);
        assert_eq!(replayed.valid_len, valid);
        assert_eq!(replayed.file_len, j.len());
        assert!(replayed.problem.unwrap().contains("does not decode"));
    }
}

//! The crash-safe journal in front of the RRD files: a [`durable::Journal`] (records
//! framed as `len: u32 LE`, `crc32(payload): u32 LE`, `payload`, synced before an append
//! returns, replayed up to the first torn or corrupt one) with a sealed part for commits.
//!
//! A commit first *seals* the journal — its records move to `<journal>.sealed` and new
//! appends start an empty journal — then writes the files without holding up readers or
//! writers, and *releases* the sealed part once the files are synced. Opening replays
//! the sealed part (if a commit did not finish) before the journal.

use std::path::{Path, PathBuf};

use super::error::RrdError;
use crate::durable::{self, aside_path, sync_parent, write_atomic, Mode};

/// An open journal file.
#[derive(Debug)]
pub struct Journal {
    journal: durable::Journal,
}

/// What opening a journal found.
#[derive(Debug)]
pub struct Replay {
    /// The intact records, oldest first.
    pub records: Vec<Vec<u8>>,
    /// Bytes cut from the end because they did not form an intact record (a write torn
    /// by a crash, or corruption).
    pub discarded_bytes: u64,
    /// Where those bytes went, one entry per file that had some.
    pub damaged: Vec<JournalDamage>,
}

/// The unreadable end of a journal file, cut off at open and kept aside.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "metric journal {path}: replay stopped at byte {offset} ({problem}); the {bytes} bytes \
     from there on are not replayed — a record cut off by a crash was never acknowledged, \
     but records after a damaged one are lost (cursors restart from the files, so what \
     the remotes still hold is fetched again); the bytes were copied to {kept_in} for \
     inspection"
)]
pub struct JournalDamage {
    /// The journal file.
    pub path: PathBuf,
    /// Where its intact records end.
    pub offset: u64,
    /// Why the next record did not read.
    pub problem: String,
    /// How many bytes followed.
    pub bytes: u64,
    /// The copy of those bytes.
    pub kept_in: PathBuf,
}

/// Copies what follows the intact records of the journal at `path` (if anything does)
/// to `<path>.damaged-<now>`, before opening cuts it off.
fn keep_damaged_tail(path: &Path, now: i64) -> Result<Option<JournalDamage>, RrdError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(io) => {
            return Err(RrdError::Io {
                path: path.to_path_buf(),
                io,
            })
        }
    };
    let frames = durable::parse_frames(&bytes);
    let Some(stop) = frames.stop else {
        return Ok(None);
    };
    let tail = &bytes[frames.intact_len..];
    let kept_in = aside_path(path, &format!("damaged-{now}"));
    write_atomic(&kept_in, tail, Mode::Umask)?;
    Ok(Some(JournalDamage {
        path: path.to_path_buf(),
        offset: frames.intact_len as u64,
        problem: stop.to_string(),
        bytes: tail.len() as u64,
        kept_in,
    }))
}

impl Journal {
    /// Opens (or creates) the journal, returns its intact records — those of a sealed
    /// part first — and truncates what follows the last of them, so new records never
    /// follow garbage.
    pub fn open(path: &Path) -> Result<(Journal, Replay), RrdError> {
        let mut records = Vec::new();
        let mut discarded_bytes = 0;
        let sealed = sealed_path(path);
        let now = fleetpoll_actors::system_now_secs();
        let mut damaged = Vec::new();
        for file in [&sealed, path] {
            damaged.extend(keep_damaged_tail(file, now)?);
        }
        if sealed.exists() {
            let (_, found) = durable::Journal::open(&sealed)?;
            discarded_bytes += found.discarded_bytes();
            records = found.records;
        }
        let (journal, found) = durable::Journal::open(path)?;
        discarded_bytes += found.discarded_bytes();
        records.extend(found.records);
        Ok((
            Journal { journal },
            Replay {
                records,
                discarded_bytes,
                damaged,
            },
        ))
    }

    /// Moves every record into the sealed part (appending to one a failed commit left)
    /// and starts an empty journal. Durable when it returns. A failure leaves every
    /// record in one of the two files, whole.
    pub fn seal(&mut self) -> Result<(), RrdError> {
        let path = self.journal.path().to_path_buf();
        let sealed = sealed_path(&path);
        if !sealed.exists() {
            if self.journal.is_empty() {
                return Ok(());
            }
            std::fs::rename(&path, &sealed).map_err(|io| RrdError::Io {
                path: sealed.clone(),
                io,
            })?;
            // Until the new journal is open, appends still go to the renamed file:
            // they are in the sealed part then, which is just as durable.
            self.journal = durable::Journal::create(&path)?;
            return Ok(sync_parent(&path)?);
        }
        // Read by path: after a failed seal, `self.journal` may be the sealed file itself.
        let current = durable::Replay::read(&path)?;
        if !current.records.is_empty() {
            // The append cuts off what it wrote if it fails: no torn record may stay in
            // the sealed part, later ones would be cut off with it at replay.
            let (mut target, _) = durable::Journal::open(&sealed)?;
            target.append(&current.records)?;
        }
        self.journal = durable::Journal::create(&path)?;
        Ok(sync_parent(&path)?)
    }

    /// Deletes the sealed part once everything in it is durable in the files.
    pub fn release_sealed(&mut self) -> Result<(), RrdError> {
        let sealed = sealed_path(self.journal.path());
        match std::fs::remove_file(&sealed) {
            Ok(()) => Ok(sync_parent(&sealed)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(io) => Err(RrdError::Io { path: sealed, io }),
        }
    }

    /// Appends records and syncs them to disk; when this returns they survive a crash.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<(), RrdError> {
        Ok(self.journal.append(records)?)
    }

    /// Appends one record per item, its payload appended to the write buffer by
    /// `encode`, and syncs them to disk, as [`Journal::append`].
    pub fn append_with<T>(
        &mut self,
        records: impl IntoIterator<Item = T>,
        mut encode: impl FnMut(T, &mut Vec<u8>),
    ) -> Result<(), RrdError> {
        Ok(self.journal.append_with(records, |record, buf| {
            encode(record, buf);
            Ok(())
        })?)
    }
}

/// Where a journal's sealed part lives.
fn sealed_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sealed");
    PathBuf::from(name)
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

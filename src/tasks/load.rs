//! Loading a cache directory into memory (what opening, a read-only open and `reload`
//! do): from the snapshot and the active file's lines after it when the snapshot
//! matches the files, else from every data file (archives, then the active file); then
//! the journal. The writer repairs what it finds: it sets corrupt files aside and
//! creates a missing active file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fleetpoll_actors::UnixTime;

use super::cache::{advance_cutoffs, merge_entry, slot_day, Inner, BACKFILL_SECS};
use super::day::{day_of, day_start, parse_day};
use super::error::TaskCacheError;
use super::files::{list_archives, set_aside, ACTIVE, JOURNAL, SNAPSHOT, STATE};
use super::format::{header_line, read_data_file, Header, ReadError};
use super::index::{Index, Merged};
use super::journal::replay;
use super::snapshot::{self, Outcome};
use super::state::{load_cutoffs, Cutoffs};
use crate::durable::{write_atomic, Mode, Replay};

/// What a load leaves.
pub(crate) struct Loaded {
    pub(crate) inner: Inner,
    /// Slots to write into the active file (salvaged from a corrupt file, replayed from
    /// the journal).
    pub(crate) pending: Vec<u32>,
    pub(crate) journal_valid_len: u64,
    pub(crate) cutoffs_reset: bool,
    /// The active file's bytes the snapshot used covers (`None`: no snapshot was used).
    pub(crate) snapshot_covered: Option<u64>,
}

/// Lowers every cutoff to at most `to`, so the range after it is fetched again.
fn reset_cutoffs(cutoffs: &mut Cutoffs, to: UnixTime) {
    for nodes in cutoffs.values_mut() {
        for c in nodes.values_mut() {
            *c = (*c).min(to);
        }
    }
}

/// Loads every file of `dir`, and the journal's records as `journal` holds them. `now`
/// is `Some` for the writer, which repairs: it sets corrupt files aside and creates a
/// missing active file.
pub(crate) fn load(
    dir: &Path,
    now: Option<UnixTime>,
    journal: &Replay,
    problems: &mut Vec<TaskCacheError>,
) -> Result<Loaded, TaskCacheError> {
    let writable = now.is_some();
    let cutoffs = load_cutoffs(&dir.join(STATE), writable, problems)?;
    let (mut inner, mut pending, cutoffs_reset, snapshot_covered) =
        match from_snapshot(dir, cutoffs, problems)? {
            Ok((inner, covered)) => (inner, Vec::new(), false, Some(covered)),
            Err(cutoffs) => {
                let (inner, pending, reset) = from_files(dir, now, cutoffs, problems)?;
                (inner, pending, reset, None)
            }
        };
    inner.index.shrink();
    let replayed = replay(journal, |entry| {
        pending.extend(merge_entry(&mut inner, &entry));
        advance_cutoffs(&mut inner, &entry.r, &entry.c);
    });
    if let Some(problem) = replayed.problem {
        problems.push(TaskCacheError::JournalTail {
            path: dir.join(JOURNAL),
            offset: replayed.valid_len,
            problem,
            dropped_bytes: replayed.file_len - replayed.valid_len,
        });
    }
    Ok(Loaded {
        inner,
        pending,
        journal_valid_len: replayed.valid_len,
        cutoffs_reset,
        snapshot_covered,
    })
}

/// Merges the lines of one data file from byte `skip` on (0: all of it) into the
/// index, as `day`; returns its header. `new` learns the slots its lines added or
/// finished, those before a damaged line too.
fn merge_file(
    index: &mut Index,
    path: &Path,
    compressed: bool,
    skip: u64,
    day: u16,
    new: &mut Vec<u32>,
) -> Result<Header, ReadError> {
    let mut remote_cache: HashMap<String, Option<u16>> = HashMap::new();
    read_data_file(path, compressed, skip, |t| {
        let r = match remote_cache.get(t.r.as_ref()) {
            Some(&r) => r,
            None => {
                let r = index.intern_remote(&t.r);
                if r.is_none() {
                    tracing::warn!(remote = %t.r, file = %path.display(), "task cache holds 65,535 remotes; tasks of another one are skipped");
                }
                remote_cache.insert(t.r.to_string(), r);
                r
            }
        };
        let Some(r) = r else { return Ok(()) };
        if let Merged::New(i) | Merged::Finished(i) = index.merge(r, t, day) {
            new.push(i);
        }
        Ok(())
    })
}

/// The index from the snapshot plus the active file's lines after it, if the snapshot
/// matches the files and those lines read cleanly; else the cutoffs back, for a load
/// from the files (which reports and repairs what is damaged).
fn from_snapshot(
    dir: &Path,
    cutoffs: Cutoffs,
    problems: &mut Vec<TaskCacheError>,
) -> Result<Result<(Inner, u64), Cutoffs>, TaskCacheError> {
    let snapshot = match snapshot::read(dir) {
        Outcome::Used(s) => s,
        Outcome::Missing => return Ok(Err(cutoffs)),
        Outcome::Stale(why) => {
            tracing::info!(reason = %why, "task cache snapshot is stale; reading the data files");
            return Ok(Err(cutoffs));
        }
        Outcome::Corrupt(problem) => {
            problems.push(TaskCacheError::CorruptSnapshot {
                path: dir.join(SNAPSHOT),
                problem,
            });
            return Ok(Err(cutoffs));
        }
    };
    let mut inner = Inner {
        index: snapshot.index,
        cutoffs,
        active_day: snapshot.active_day,
    };
    let active = dir.join(ACTIVE);
    let day = slot_day(snapshot.active_day);
    let mut new = Vec::new();
    match merge_file(
        &mut inner.index,
        &active,
        false,
        snapshot.active_covered,
        day,
        &mut new,
    ) {
        Ok(header) if parse_day(&header.day) == Some(snapshot.active_day) => {
            Ok(Ok((inner, snapshot.active_covered)))
        }
        Ok(_) => {
            tracing::info!("task cache snapshot names another day than the active file; reading the data files");
            Ok(Err(inner.cutoffs))
        }
        Err(ReadError::Io(e)) => Err(e),
        Err(ReadError::Corrupt(_)) => Ok(Err(inner.cutoffs)),
    }
}

/// The index from every data file: archives oldest first, then the active file.
/// Returns it with the slots to rewrite and whether cutoffs were reset.
fn from_files(
    dir: &Path,
    now: Option<UnixTime>,
    cutoffs: Cutoffs,
    problems: &mut Vec<TaskCacheError>,
) -> Result<(Inner, Vec<u32>, bool), TaskCacheError> {
    let writable = now.is_some();
    let mut inner = Inner {
        index: Index::default(),
        cutoffs,
        active_day: now.map_or(0, day_of),
    };
    let mut pending = Vec::new();
    let mut cutoffs_reset = false;
    let archives = list_archives(dir)?;
    let newest_archive = archives.last().map(|a| a.day);
    let mut files: Vec<(PathBuf, bool, Option<i64>)> = archives
        .into_iter()
        .map(|a| (a.path, a.compressed, Some(a.day)))
        .collect();
    let active = dir.join(ACTIVE);
    if active.exists() {
        files.push((active.clone(), false, None));
    }
    let mut active_day = None;
    for (path, compressed, day) in files {
        let file_day = day.unwrap_or(inner.active_day);
        let mut new = Vec::new();
        let result = merge_file(
            &mut inner.index,
            &path,
            compressed,
            0,
            slot_day(file_day),
            &mut new,
        );
        match result {
            Ok(header) => {
                if day.is_none() {
                    active_day = parse_day(&header.day);
                    if let Some(d) = active_day {
                        inner.active_day = d;
                        // Slots loaded before the header's day was known carry the
                        // provisional day; they all came from this file.
                        for &i in &new {
                            inner.index.slots.get_mut(i).day = slot_day(d);
                        }
                    }
                }
            }
            Err(ReadError::Io(e)) => return Err(e),
            Err(ReadError::Corrupt(problem)) => {
                // An archive covers its day; the active file everything after the newest
                // archive (or, without one, the whole backfill window).
                let reset_to = match day {
                    Some(d) => day_start(d),
                    None => newest_archive
                        .map_or(now.unwrap_or(0) - BACKFILL_SECS, |d| day_start(d + 1)),
                };
                if writable {
                    let target = set_aside(&path)?;
                    // What could be read is kept: it is rewritten into the active file.
                    pending.extend_from_slice(&new);
                    reset_cutoffs(&mut inner.cutoffs, reset_to);
                    cutoffs_reset = true;
                    problems.push(TaskCacheError::CorruptFile {
                        path,
                        problem,
                        set_aside: target,
                        reset_to,
                    });
                } else {
                    problems.push(TaskCacheError::CorruptFileSkipped { path, problem });
                }
            }
        }
    }
    if let (Some(now), true) = (now, active_day.is_none()) {
        // No (readable) active file: start one for today, after the newest archive.
        let newest_archive = list_archives(dir)?.last().map(|a| a.day + 1);
        inner.active_day = newest_archive.unwrap_or(i64::MIN).max(day_of(now));
        write_atomic(&active, &header_line(inner.active_day), Mode::WorldReadable)?;
    }
    for &i in &pending {
        inner.index.slots.get_mut(i).day = slot_day(inner.active_day);
    }
    Ok((inner, pending, cutoffs_reset))
}

//! The files the stores read back: the framed journals (the RRD store's records of
//! metric batches, the task cache's JSON merge entries), the RRD files and their
//! `.names` sidecars, the task cache's data files (the active day and its archives,
//! plain or zstd), its index snapshot and its state and tracked-task files.

use std::io::Write;

use fleetpoll_actors::MetricBatch;

use crate::durable::{encode_frame, parse_frames, Replay};
use crate::rrd::format::{decode, decode_head, encode};
use crate::rrd::names::{self, KnownNames};
use crate::rrd::record;
use crate::tasks::files::{ACTIVE, SNAPSHOT, STATE, TRACKED};
use crate::tasks::format::{read_data_file, write_line, DiskTask};
use crate::tasks::index::{Index, Merged};
use crate::tasks::journal::{replay, JournalEntry};
use crate::tasks::snapshot::{self, Outcome};
use crate::tasks::state::{
    is_task_reference, load_cutoffs, load_tracked, save_cutoffs, save_tracked,
};
use crate::tasks::TaskCacheError;

/// A journal file: the intact frames are a prefix of the bytes that encodes back to
/// exactly those bytes, and reading stops early only with a reason. Each intact
/// record, and the whole input as one payload (a fuzzer seldom forges a CRC), goes
/// through both stores' record decoders: an RRD record decodes, encodes and decodes to
/// the same batch; a task cache entry written back as JSON reads the same; replay
/// counts no more valid bytes than the frames span.
pub fn journal(data: &[u8]) {
    let frames = parse_frames(data);
    assert!(frames.intact_len <= data.len());
    assert_eq!(frames.stop.is_none(), frames.intact_len == data.len());
    let mut again = Vec::new();
    for r in &frames.records {
        encode_frame(&mut again, r).expect("an intact record is not too large");
    }
    assert_eq!(
        again,
        &data[..frames.intact_len],
        "frames encode back differently"
    );
    for payload in frames.records.iter().copied().chain([data]) {
        rrd_record(payload);
        task_entry(payload);
    }
    let found = Replay {
        records: frames.records.iter().map(|r| r.to_vec()).collect(),
        intact_len: frames.intact_len as u64,
        file_len: data.len() as u64,
        stop: frames.stop.clone(),
    };
    let replayed = replay(&found, |_| {});
    assert!(replayed.valid_len <= found.intact_len);
    assert_eq!(replayed.file_len, data.len() as u64);
}

/// A batch as comparable rows (values by their bits, so `NaN` equals itself).
fn rows(b: &MetricBatch) -> Vec<(u32, i64, u64)> {
    b.points
        .iter()
        .map(|p| (p.series, p.timestamp, p.value.to_bits()))
        .collect()
}

fn rrd_record(payload: &[u8]) {
    let Ok((remote, batch)) = record::decode(payload) else {
        return;
    };
    // A binary point takes at least 10 bytes (index, time delta, value), a JSON one more.
    assert!(batch.points.len() * 10 <= payload.len());
    let mut encoded = Vec::new();
    record::encode_into(&mut encoded, &remote, &batch);
    let (remote2, batch2) = record::decode(&encoded)
        .unwrap_or_else(|e| panic!("an encoded record does not decode: {e}"));
    assert_eq!(remote, remote2);
    assert_eq!(batch.series, batch2.series);
    assert_eq!(rows(&batch), rows(&batch2));
    assert_eq!(batch.dropped_future, batch2.dropped_future);
}

fn task_entry(payload: &[u8]) {
    let Ok(entry) = serde_json::from_slice::<JournalEntry<'_>>(payload) else {
        return;
    };
    let written = serde_json::to_vec(&entry).expect("an entry serialises");
    let again: JournalEntry<'_> = serde_json::from_slice(&written)
        .unwrap_or_else(|e| panic!("a written entry does not read: {e}"));
    assert_eq!(format!("{entry:?}"), format!("{again:?}"));
}

/// An RRD file: the whole-file and the head-only decoders agree on the head; an
/// accepted file encodes to bytes that decode and encode again to the same bytes.
pub fn rrd_file(data: &[u8]) {
    let whole = decode(data);
    let head = decode_head(data, data.len() as u64);
    match (&whole, &head) {
        (Ok(w), Ok(h)) => {
            assert_eq!(w.layout.data_offset, h.layout.data_offset);
            assert_eq!(w.block_crcs, h.block_crcs);
        }
        (Ok(_), Err(e)) => panic!("the file decodes but its head does not: {e}"),
        _ => {}
    }
    if let Ok(decoded) = whole {
        let encoded = encode(&decoded.rrd);
        let again =
            decode(&encoded).unwrap_or_else(|e| panic!("an encoded database does not decode: {e}"));
        assert_eq!(
            encode(&again.rrd),
            encoded,
            "a database encodes differently"
        );
    }
}

/// Slots of a decoded index that [`task_snapshot`] reads back one by one.
const SNAPSHOT_SLOTS_CHECKED: u32 = 256;

/// A task cache index snapshot (`index.snapshot`), read as opening the cache reads it,
/// in a directory with an empty active file: first the bytes as the whole file, then
/// framed as the writer frames a snapshot, with every checksum right — after the first
/// byte, if even, the rest as the index behind a meta section that covers the
/// directory's files (so it must be used or refused as corrupt, never called stale or
/// missing); if odd, the rest as the meta section and no index. An index that is used
/// answers for each of its slots (UPID, record, disk line) and remotes (cutoffs,
/// running), encodes to bytes that decode and encode to the same bytes, and takes its
/// own slots merged back without a panic.
pub fn task_snapshot(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join(ACTIVE), b"").expect("the active file is written");
    let path = dir.path().join(SNAPSHOT);
    std::fs::write(&path, data).expect("the snapshot is written");
    let _ = snapshot::read(dir.path());
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let meta = (mode % 2 == 1).then_some(rest);
    let index = if meta.is_some() { &[][..] } else { rest };
    let framed = snapshot::framed(dir.path(), meta, index).expect("the directory is read");
    std::fs::write(&path, framed).expect("the snapshot is written");
    match snapshot::read(dir.path()) {
        Outcome::Used(s) => check_index(s.index),
        Outcome::Corrupt(_) => {}
        _ if meta.is_some() => {}
        other => panic!("a snapshot of the directory's own files is {other:?}"),
    }
}

fn check_index(mut index: Index) {
    let shown = (index.len() as u32).min(SNAPSHOT_SLOTS_CHECKED);
    let lines: Vec<_> = (0..shown).map(|i| index.disk_line(i)).collect();
    for (i, (_, record)) in lines.iter().enumerate() {
        assert!(!record.upid.is_empty(), "slot {i} has an empty UPID");
        let _ = index.cutoff_key(i as u32);
    }
    for r in 0..index.remotes.len() as u16 {
        let _ = index.cutoffs_of(r);
        let _ = index.has_running(r);
    }
    let mut encoded = Vec::new();
    index.encode(&mut encoded).expect("encoding to memory");
    let again = Index::decode_all(&encoded)
        .unwrap_or_else(|e| panic!("an encoded index does not decode: {e}"));
    let mut twice = Vec::new();
    again.encode(&mut twice).expect("encoding to memory");
    assert!(encoded == twice, "an index encodes differently");
    for (remote, record) in &lines {
        let task = DiskTask::from_record(remote, record);
        let Some(r) = index.remote_id(&remote.as_str().into()) else {
            panic!("the remote {remote} of a slot is not known");
        };
        let _ = index.merge(r, &task, 0);
    }
}

/// The zstd frame magic: an input starting with it is read as a compressed archive.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A task cache data file (plain, or zstd when it starts like a zstd frame), read as
/// the cache loads it, also from just after its first line (as after a snapshot):
/// every line merges into an index that gives back the line's UPID, and a line
/// written back reads the same.
pub fn task_archive(data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("the temporary file is written");
    let compressed = data.starts_with(&ZSTD_MAGIC);
    let mut skips = vec![0];
    if !compressed {
        if let Some(n) = data.iter().position(|&b| b == b'\n') {
            skips.push(n as u64 + 1);
        }
    }
    for skip in skips {
        let mut index = Index::default();
        let _ = read_data_file(file.path(), compressed, skip, |t| {
            check_line(&mut index, t);
            Ok(())
        });
    }
}

fn check_line(index: &mut Index, t: &DiskTask<'_>) {
    let mut line = Vec::new();
    write_line(&mut line, t).expect("a line is written");
    let again: DiskTask<'_> = serde_json::from_slice(&line)
        .unwrap_or_else(|e| panic!("a written line does not read: {e}"));
    assert_eq!(format!("{t:?}"), format!("{again:?}"));
    let Some(remote) = index.intern_remote(&t.r) else {
        return;
    };
    if let Merged::New(i) | Merged::Finished(i) = index.merge(remote, t, 0) {
        assert_eq!(index.upid(i), t.u, "the index gives back another UPID");
    }
}

/// The task cache's small JSON files, read as opening the cache reads them: after the
/// first byte, the rest as `state.json` (first byte even) or as `tracked.json` (odd).
/// A file that reads is written back and reads the same, and every tracked task it
/// gives passes a track request's checks; one that does not read is reported as
/// corrupt and renamed aside with every byte kept, and the next read starts empty.
pub fn task_state(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cutoffs = mode % 2 == 0;
    let path = dir.path().join(if cutoffs { STATE } else { TRACKED });
    std::fs::write(&path, rest).expect("the file is written");
    let mut problems = Vec::new();
    if cutoffs {
        let read = load_cutoffs(&path, true, &mut problems).expect("the file is read");
        if problems.is_empty() {
            save_cutoffs(&path, &read).expect("the cutoffs are written");
            let again = load_cutoffs(&path, true, &mut problems).expect("the file is read");
            assert!(
                problems.is_empty(),
                "written cutoffs do not read: {problems:?}"
            );
            assert_eq!(read, again, "cutoffs read back differently");
        }
    } else {
        let read = load_tracked(&path, true, &mut problems).expect("the file is read");
        assert!(read.iter().all(is_task_reference), "{read:?}");
        if !problems
            .iter()
            .any(|p| matches!(p, TaskCacheError::CorruptState { .. }))
        {
            save_tracked(&path, &read).expect("the tracked tasks are written");
            let mut again_problems = Vec::new();
            let again = load_tracked(&path, true, &mut again_problems).expect("the file is read");
            assert!(again_problems.is_empty(), "{again_problems:?}");
            assert_eq!(read, again, "tracked tasks read back differently");
        }
    }
    for p in &problems {
        match p {
            TaskCacheError::CorruptState { set_aside, .. } => {
                assert!(!path.exists(), "a corrupt file is left in place");
                let kept = std::fs::read(set_aside).expect("the set-aside file is read");
                assert!(kept == rest, "the set-aside file lost bytes");
            }
            TaskCacheError::TrackedDropped { dropped, .. } => assert!(!cutoffs && *dropped > 0),
            other => panic!("reading {} reported {other}", path.display()),
        }
    }
}

/// An RRD file's `.names` sidecar (data-source name → full metric name), read as a
/// query reads it: every pair written back into a new sidecar reads back the same.
pub fn rrd_names(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rrd = dir.path().join("node.rrd");
    std::fs::write(names::sidecar(&rrd), data).expect("the sidecar is written");
    let read = names::read(&rrd);
    assert!(read.len() <= data.len() / 2 + 1, "more pairs than lines");
    let fresh = dir.path().join("fresh.rrd");
    let pairs: Vec<(String, String)> = read.clone().into_iter().collect();
    KnownNames::default()
        .note(&fresh, &pairs)
        .expect("the sidecar is written");
    assert_eq!(
        names::read(&fresh),
        read,
        "a sidecar reads back differently"
    );
}

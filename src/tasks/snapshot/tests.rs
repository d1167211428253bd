//! The snapshot: an open through it holds exactly what an open of the files holds; a
//! damaged one is reported and the files are read; a stale one is not used; the writer
//! replaces either; and decoding refuses ids and orderings the index could not have
//! written, even under a valid checksum.

use std::collections::BTreeSet;
use std::path::Path;

use fleetpoll_actors::{RemoteId, TaskBatch, TaskQuery, TaskRecord, TaskWrite};

use super::*;
use crate::tasks::{TaskCache, TaskFilter};

const DAY: i64 = 86_400;
/// 2025-06-16 00:00:00 UTC.
const T0: i64 = 1_750_032_000;

fn pve(node: &str, pid: u32, start: i64, end: Option<i64>) -> TaskRecord {
    TaskRecord {
        upid: format!("UPID:{node}:{pid:08X}:0000ABCD:{start:08X}:qmstart:100:root@pam:"),
        node: node.to_string(),
        task_type: "qmstart".into(),
        task_id: Some("100".into()),
        user: "root@pam".into(),
        start_time: start,
        end_time: end,
        status: end.map(|_| {
            if pid.is_multiple_of(7) {
                "job errors"
            } else {
                "OK"
            }
            .to_string()
        }),
    }
}

fn pbs(counter: u64, start: i64) -> TaskRecord {
    TaskRecord {
        upid: format!("UPID:pbs:000002B2:00000158:{counter:08X}:{start:08X}:garbage_collection:store1:root@pam:"),
        node: "pbs".into(),
        task_type: "garbage_collection".into(),
        task_id: Some("store1".into()),
        user: "root@pam".into(),
        start_time: start,
        end_time: Some(start + 3),
        status: Some("OK".into()),
    }
}

/// A record whose fields differ from its UPID (kept as text), and one that does not
/// parse.
fn raw(i: u32, start: i64) -> [TaskRecord; 2] {
    let mut differs = pve("n1", 90_000 + i, start, Some(start + 1));
    differs.user = "someone@pve".into();
    let mut garbage = pve("n1", 0, start, None);
    garbage.upid = format!("not-a-upid-{i}");
    [differs, garbage]
}

fn write(remote: &str, tasks: Vec<TaskRecord>) -> TaskWrite {
    TaskWrite {
        remote: RemoteId::new(remote),
        batch: TaskBatch {
            tasks,
            complete_nodes: vec!["n1".into(), "n2".into()],
        },
        query: TaskQuery::default(),
    }
}

/// Four days of three remotes (PVE, PBS and raw UPIDs, running tasks finishing a day
/// later), rotated daily, the last day in the active file; the writer is closed.
fn build(dir: &Path) {
    let cache = TaskCache::open(dir, T0).unwrap();
    for day in 0..4 {
        let base = T0 + day * DAY;
        for (r, remote) in ["a", "b", "c"].into_iter().enumerate() {
            let mut tasks: Vec<TaskRecord> = (0..40)
                .map(|k| {
                    let pid = (day * 1000 + k) as u32 + r as u32;
                    let start = base + k * 60;
                    pve(
                        ["n1", "n2"][k as usize % 2],
                        pid,
                        start,
                        (k % 9 != 0).then_some(start + 5),
                    )
                })
                .collect();
            // Yesterday's running tasks finish today.
            if day > 0 {
                tasks.extend((0..40).step_by(9).map(|k| {
                    let pid = ((day - 1) * 1000 + k) as u32 + r as u32;
                    let start = base - DAY + k * 60;
                    pve(["n1", "n2"][k as usize % 2], pid, start, Some(base + 1))
                }));
            }
            tasks.push(pbs(day as u64 * 10 + r as u64, base + 30));
            tasks.extend(raw(day as u32 * 10 + r as u32, base + 45));
            cache.store(&[write(remote, tasks)]).unwrap();
        }
        if day < 3 {
            assert!(cache.rotate_at(T0 + (day + 1) * DAY).unwrap());
        }
    }
    cache.apply().unwrap();
}

/// Everything a handle answers, independent of slot numbering.
fn contents(cache: &TaskCache) -> (BTreeSet<String>, usize, Vec<(String, i64)>) {
    let everything = TaskFilter {
        limit: 0,
        ..TaskFilter::default()
    };
    let page = cache.query(&everything);
    let tasks = page
        .tasks
        .iter()
        .map(|t| format!("{} {:?}", t.remote, t.task))
        .collect();
    let running = TaskFilter {
        running_only: true,
        limit: 0,
        ..TaskFilter::default()
    };
    let mut starts: Vec<(String, i64)> = Vec::new();
    for remote in ["a", "b", "c"] {
        let one = TaskFilter {
            remote: Some(RemoteId::new(remote)),
            since: Some(T0 + DAY + 600),
            limit: 5,
            ..TaskFilter::default()
        };
        starts.extend(
            cache
                .query(&one)
                .tasks
                .iter()
                .map(|t| (remote.to_string(), t.task.start_time)),
        );
    }
    (tasks, cache.query(&running).total, starts)
}

/// What a read-only open answers when it reads every file.
fn from_files(dir: &Path) -> (BTreeSet<String>, usize, Vec<(String, i64)>) {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != SNAPSHOT {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    let cache = TaskCache::open_read_only(copy.path()).unwrap();
    assert!(!cache.loaded_from_snapshot());
    contents(&cache)
}

#[test]
fn an_open_through_the_snapshot_answers_as_an_open_of_every_file() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let expected = from_files(dir.path());
    assert!(
        expected.0.len() > 400 && expected.1 > 0,
        "{} tasks",
        expected.0.len()
    );
    let cache = TaskCache::open_read_only(dir.path()).unwrap();
    assert!(cache.loaded_from_snapshot());
    assert!(cache.problems().is_empty(), "{:?}", cache.problems());
    assert_eq!(contents(&cache), expected);
    // The writer reopens through it too, and goes on merging into what it loaded.
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0 + 3 * DAY + 100).unwrap();
    assert!(cache.loaded_from_snapshot());
    assert_eq!(contents(&cache), expected);
    cache
        .store(&[write("a", vec![pve("n1", 77, T0 + 3 * DAY + 50, None)])])
        .unwrap();
    assert_eq!(contents(&cache).0.len(), expected.0.len() + 1);
}

#[test]
fn lines_appended_after_the_snapshot_are_read_from_the_active_file() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let snapshot_before = std::fs::read(dir.path().join(SNAPSHOT)).unwrap();
    {
        let cache = TaskCache::open(dir.path(), T0 + 3 * DAY).unwrap();
        let start = T0 + 3 * DAY + 7000;
        // A new task, and one running since yesterday finishing.
        cache
            .store(&[write(
                "b",
                vec![
                    pve("n2", 5, start, Some(start + 1)),
                    pve("n2", 2009, T0 + 2 * DAY + 9 * 60, Some(start)),
                ],
            )])
            .unwrap();
        cache.apply().unwrap();
    }
    // Far less than SNAPSHOT_BEHIND_BYTES was appended: the snapshot stays as it was.
    assert_eq!(
        std::fs::read(dir.path().join(SNAPSHOT)).unwrap(),
        snapshot_before
    );
    let cache = TaskCache::open_read_only(dir.path()).unwrap();
    assert!(cache.loaded_from_snapshot());
    assert_eq!(contents(&cache), from_files(dir.path()));
}

#[test]
fn a_corrupt_snapshot_is_reported_the_files_are_read_and_the_writer_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let expected = from_files(dir.path());
    let path = dir.path().join(SNAPSHOT);
    let good = std::fs::read(&path).unwrap();
    let flip = |at: usize| {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        bad
    };
    let damages: Vec<(&str, Vec<u8>)> = vec![
        (
            "a flipped bit in the list of files",
            flip(HEADER_BYTES as usize + 10),
        ),
        ("a flipped bit in the slots", flip(good.len() / 2)),
        (
            "a flipped bit in the last remote's list",
            flip(good.len() - TRAILER_BYTES as usize - 2),
        ),
        ("a flipped bit in the trailer", flip(good.len() - 10)),
        ("cut off", good[..good.len() - 100].to_vec()),
        ("empty", Vec::new()),
        ("another file", b"{\"fleetpoll_task_cache\":1}\n".repeat(10)),
    ];
    for (what, bytes) in damages {
        std::fs::write(&path, &bytes).unwrap();
        let cache = TaskCache::open_read_only(dir.path()).unwrap();
        assert!(!cache.loaded_from_snapshot(), "{what}");
        assert!(
            matches!(cache.problems(), [TaskCacheError::CorruptSnapshot { .. }]),
            "{what}: {:?}",
            cache.problems()
        );
        assert_eq!(contents(&cache), expected, "{what}");
        // Nothing on disk is changed by a reader.
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}");
    }
    // The writer reads the files and writes a good snapshot again.
    drop(TaskCache::open(dir.path(), T0 + 3 * DAY).unwrap());
    let cache = TaskCache::open_read_only(dir.path()).unwrap();
    assert!(cache.loaded_from_snapshot());
    assert!(cache.problems().is_empty(), "{:?}", cache.problems());
    assert_eq!(contents(&cache), expected);
}

#[test]
fn a_snapshot_of_other_files_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let snapshot = std::fs::read(dir.path().join(SNAPSHOT)).unwrap();
    let restore = || std::fs::write(dir.path().join(SNAPSHOT), &snapshot).unwrap();
    let archive = dir.path().join("archive-2025-06-18.jsonl");
    let original = std::fs::read(&archive).unwrap();
    // The same length, one task's status changed.
    let text = String::from_utf8(original.clone())
        .unwrap()
        .replacen("\"OK\"", "\"NO\"", 1);
    assert_eq!(text.len(), original.len());
    std::fs::write(&archive, &text).unwrap();
    let cache = TaskCache::open_read_only(dir.path()).unwrap();
    assert!(!cache.loaded_from_snapshot());
    assert!(
        cache.problems().is_empty(),
        "stale is not damage: {:?}",
        cache.problems()
    );
    assert_eq!(contents(&cache), from_files(dir.path()));
    std::fs::write(&archive, &original).unwrap();
    assert!(TaskCache::open_read_only(dir.path())
        .unwrap()
        .loaded_from_snapshot());

    // An archive gone.
    std::fs::rename(&archive, dir.path().join("elsewhere")).unwrap();
    let cache = TaskCache::open_read_only(dir.path()).unwrap();
    assert!(!cache.loaded_from_snapshot());
    assert_eq!(contents(&cache), from_files(dir.path()));
    std::fs::rename(dir.path().join("elsewhere"), &archive).unwrap();

    // A rotation the snapshot did not see (a crash before it was written again).
    {
        let cache = TaskCache::open(dir.path(), T0 + 3 * DAY).unwrap();
        assert!(cache.rotate_at(T0 + 4 * DAY).unwrap());
    }
    restore();
    let cache = TaskCache::open_read_only(dir.path()).unwrap();
    assert!(!cache.loaded_from_snapshot());
    assert_eq!(contents(&cache), from_files(dir.path()));
    // The writer notices and writes it again.
    drop(cache);
    drop(TaskCache::open(dir.path(), T0 + 4 * DAY).unwrap());
    assert!(TaskCache::open_read_only(dir.path())
        .unwrap()
        .loaded_from_snapshot());
}

/// Encodes `index` and decodes it again.
fn round_trip(index: &Index) -> Result<Index, String> {
    let mut bytes = Vec::new();
    index.encode(&mut bytes).unwrap();
    Index::decode_all(&bytes)
}

#[test]
fn decoding_refuses_what_the_index_cannot_have_written() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let cache = TaskCache::open_read_only(dir.path()).unwrap();
    let mut inner = crate::tasks::cache::write(&cache.inner);
    let index = &mut inner.index;
    let decoded = round_trip(index).unwrap();
    assert_eq!(decoded.len(), index.len());
    assert_eq!(decoded.running, index.running);
    assert_eq!(decoded.per_remote, index.per_remote);

    let n_shapes = index.shapes.all().len() as u32;
    let saved = *index.slots.get(3);
    index.slots.get_mut(3).shape = n_shapes;
    assert!(round_trip(index).unwrap_err().contains("shape"));
    *index.slots.get_mut(3) = saved;

    index.per_remote[1].swap(0, 1);
    assert!(round_trip(index).unwrap_err().contains("out of order"));
    index.per_remote[1].swap(0, 1);

    let moved = index.per_remote[0].pop().unwrap();
    index.per_remote[1].push(moved);
    assert!(round_trip(index).unwrap_err().contains("another remote"));
    index.per_remote[1].pop();
    assert!(round_trip(index).unwrap_err().contains("slots"));
    index.per_remote[0].push(moved);

    assert!(round_trip(index).is_ok());
}

/// The index bytes of a snapshot file (between its meta section and its trailer).
fn index_bytes(file: &[u8]) -> &[u8] {
    let at = HEADER_BYTES as usize;
    let meta_len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    &file[at + 4 + meta_len + 4..file.len() - TRAILER_BYTES as usize]
}

/// The fuzz target's framing reaches the index decoder: a real snapshot's index framed
/// for another directory is used there with all its slots, and so is every index seed
/// of the target's corpus (whose first byte 0 asks for that framing).
#[cfg(feature = "fuzzing")]
#[test]
fn the_fuzz_framing_of_an_index_is_used_as_the_writer_frame_is() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let written = std::fs::read(dir.path().join(SNAPSHOT)).unwrap();
    let real = index_bytes(&written).to_vec();
    let used = |index: &[u8]| {
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(ACTIVE), b"").unwrap();
        let framed = framed(other.path(), None, index).unwrap();
        std::fs::write(other.path().join(SNAPSHOT), framed).unwrap();
        match read(other.path()) {
            Outcome::Used(s) => s.index.len(),
            other => panic!("the framed index is not used: {other:?}"),
        }
    };
    let Outcome::Used(own) = read(dir.path()) else {
        panic!("the written snapshot is not used");
    };
    assert!(own.index.len() > 300, "{} slots", own.index.len());
    assert_eq!(used(&real), own.index.len());
    let mut seeded = 0;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/task_snapshot");
    for entry in std::fs::read_dir(corpus).unwrap() {
        let seed = std::fs::read(entry.unwrap().path()).unwrap();
        if seed.first() == Some(&0) {
            used(&seed[1..]);
            seeded += 1;
        }
    }
    assert!(seeded >= 3, "{seeded} index seeds");
    crate::fuzzing::task_snapshot(&[&[0u8][..], &real].concat());
}

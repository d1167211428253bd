//! The task cache's files: daily rotation with compression and expiry, journal replay
//! with a torn tail, and corrupt data files set aside with their range fetched again.

mod task_cache_support;

use std::io::Write;

use fleetpoll::engine::{RemoteId, TaskStore};
use fleetpoll::tasks::{TaskCache, TaskCacheError};
use task_cache_support::*;

#[test]
fn rotation_happens_once_per_utc_day_at_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0 + 3600).unwrap();
    assert!(!cache.rotate(T0 + DAY - 1).unwrap());
    assert!(cache.rotate(T0 + DAY).unwrap());
    assert!(!cache.rotate(T0 + DAY + 5).unwrap());
    assert!(names(dir.path()).contains("archive-2025-06-16.jsonl"));
}

#[test]
fn rotation_keeps_seven_archives_compresses_all_but_the_newest_two_and_expires_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    for d in 0..10 {
        let start = T0 + d * DAY + 100;
        store(
            &cache,
            vec![batch(
                "lab",
                vec![pve("n1", d as u32, start, Some(start + 5), Some("OK"))],
                &["n1"],
            )],
        );
        assert!(cache.rotate(T0 + (d + 1) * DAY).unwrap());
    }
    let files = names(dir.path());
    let archives: Vec<&String> = files.iter().filter(|n| n.starts_with("archive-")).collect();
    assert_eq!(
        archives,
        [
            "archive-2025-06-19.jsonl.zst",
            "archive-2025-06-20.jsonl.zst",
            "archive-2025-06-21.jsonl.zst",
            "archive-2025-06-22.jsonl.zst",
            "archive-2025-06-23.jsonl.zst",
            "archive-2025-06-24.jsonl",
            "archive-2025-06-25.jsonl",
        ]
    );
    for a in &archives {
        assert_eq!(
            magic_is_zstd(&dir.path().join(a)),
            a.ends_with(".zst"),
            "{a}"
        );
    }
    // Days 0..3 expired with their archives; days 3..10 remain, in memory and on disk.
    let starts = |c: &TaskCache| -> Vec<i64> {
        c.query(&all("lab"))
            .tasks
            .iter()
            .map(|t| t.task.start_time)
            .collect()
    };
    let expected: Vec<i64> = (3..10).rev().map(|d| T0 + d * DAY + 100).collect();
    assert_eq!(starts(&cache), expected);
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0 + 10 * DAY).unwrap();
    assert_eq!(starts(&cache), expected);
    assert!(cache.problems().is_empty(), "{:?}", cache.problems());
    let meta = std::fs::metadata(dir.path().join("archive-2025-06-24.jsonl")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
}

#[test]
fn journal_replay_after_an_unapplied_close_keeps_every_task_and_stops_at_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    store(
        &cache,
        vec![batch(
            "lab",
            vec![pve("n1", 1, T0 + 1, None, None)],
            &["n1"],
        )],
    );
    store(
        &cache,
        vec![batch(
            "lab",
            vec![pve("n1", 2, T0 + 2, None, None)],
            &["n1"],
        )],
    );
    drop(cache); // no apply: both batches live only in the journal
    let journal = dir.path().join("journal.bin");
    let len = std::fs::metadata(&journal).unwrap().len();
    assert!(len > 0);
    // A third record torn mid-write.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'])
        .unwrap();
    drop(f);
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    assert_eq!(cache.query(&all("lab")).total, 2);
    assert!(matches!(
        cache.problems(),
        [TaskCacheError::JournalTail { offset, .. }] if *offset == len
    ));
    let msg = cache.problems()[0].to_string();
    assert!(
        msg.contains("journal.bin") && msg.contains("dropped"),
        "{msg}"
    );
    // Open applied the journal into the active file and emptied it.
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    assert_eq!(cache.query(&all("lab")).total, 2);
    assert!(cache.problems().is_empty());
}

#[test]
fn a_corrupt_archive_is_set_aside_reported_and_its_range_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let lab = RemoteId::new("lab");
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    for d in 0..4 {
        let start = T0 + d * DAY + 100;
        store(
            &cache,
            vec![batch(
                "lab",
                vec![pve("n1", d as u32, start, Some(start + 1), Some("OK"))],
                &["n1"],
            )],
        );
        cache.rotate(T0 + (d + 1) * DAY).unwrap();
    }
    assert_eq!(cache.task_query(&lab, T0).cutoffs["n1"], T0 + 3 * DAY + 100);
    drop(cache);
    // Day 1's archive is compressed; break its zstd stream.
    let bad = dir.path().join("archive-2025-06-17.jsonl.zst");
    let mut bytes = std::fs::read(&bad).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    bytes.extend_from_slice(&[0xFF; 16]);
    std::fs::write(&bad, &bytes).unwrap();
    // And a plain archive with a bad line.
    let plain = dir.path().join("archive-2025-06-19.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&plain)
        .unwrap();
    f.write_all(b"not json\n").unwrap();
    drop(f);

    let cache = TaskCache::open(dir.path(), T0 + 4 * DAY).unwrap();
    let problems: Vec<String> = cache.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("archive-2025-06-17.jsonl.zst")
            && problems[0].contains("fetched again")
    );
    assert!(problems[1].contains("archive-2025-06-19.jsonl") && problems[1].contains("line"));
    let files = names(dir.path());
    assert!(
        files.contains("archive-2025-06-17.jsonl.zst.corrupt"),
        "{files:?}"
    );
    assert!(
        files.contains("archive-2025-06-19.jsonl.corrupt"),
        "{files:?}"
    );
    assert!(!files.contains("archive-2025-06-17.jsonl.zst"));
    // The cutoff went back to the start of the older broken day.
    assert_eq!(cache.task_query(&lab, T0).cutoffs["n1"], T0 + DAY);
    // Day 3's good line was kept (rewritten into the active file); day 1 is refetched.
    let mut starts: Vec<i64> = cache
        .query(&all("lab"))
        .tasks
        .iter()
        .map(|t| t.task.start_time)
        .collect();
    starts.sort();
    assert_eq!(starts, [T0 + 100, T0 + 2 * DAY + 100, T0 + 3 * DAY + 100]);
    store(
        &cache,
        vec![batch(
            "lab",
            vec![pve(
                "n1",
                1,
                T0 + DAY + 100,
                Some(T0 + DAY + 101),
                Some("OK"),
            )],
            &["n1"],
        )],
    );
    assert_eq!(cache.query(&all("lab")).total, 4);
    assert_eq!(cache.task_query(&lab, T0).cutoffs["n1"], T0 + 3 * DAY + 100);
    drop(cache);
    // Setting aside never overwrites: a second corrupt copy gets its own name.
    std::fs::write(&bad, b"garbage").unwrap();
    let cache = TaskCache::open(dir.path(), T0 + 4 * DAY).unwrap();
    assert_eq!(cache.problems().len(), 1);
    assert!(names(dir.path()).contains("archive-2025-06-17.jsonl.zst.corrupt.1"));
    assert_eq!(cache.query(&all("lab")).total, 4);
}

#[test]
fn a_corrupt_active_file_is_set_aside_and_everything_after_the_newest_archive_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let lab = RemoteId::new("lab");
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    store(
        &cache,
        vec![batch(
            "lab",
            vec![pve("n1", 1, T0 + 5, Some(T0 + 6), Some("OK"))],
            &["n1"],
        )],
    );
    cache.rotate(T0 + DAY).unwrap();
    let late = T0 + 2 * DAY + 50;
    store(
        &cache,
        vec![batch(
            "lab",
            vec![pve("n1", 2, late, Some(late + 1), Some("OK"))],
            &["n1"],
        )],
    );
    cache.apply_journal().unwrap();
    assert_eq!(cache.task_query(&lab, T0).cutoffs["n1"], late);
    drop(cache);
    let active = dir.path().join("active.jsonl");
    let mut bytes = std::fs::read(&active).unwrap();
    bytes.truncate(bytes.len() - 3); // a line cut off without its newline
    std::fs::write(&active, &bytes).unwrap();

    let cache = TaskCache::open(dir.path(), T0 + 2 * DAY + 100).unwrap();
    let problem = cache.problems()[0].to_string();
    assert!(
        problem.contains("active.jsonl") && problem.contains("cut off"),
        "{problem}"
    );
    assert!(names(dir.path()).contains("active.jsonl.corrupt"));
    assert_eq!(cache.task_query(&lab, T0).cutoffs["n1"], T0 + DAY);
    assert_eq!(cache.query(&all("lab")).total, 1);
    // The new active file carries on after the newest archive.
    assert_eq!(cache.active_day(), (T0 + 2 * DAY) / DAY);
}

/// A cache whose active file holds two tasks after its header; returns the file's bytes
/// and where the second task's line starts.
fn active_with_two_tasks(dir: &std::path::Path) -> (Vec<u8>, usize) {
    let cache = TaskCache::open(dir, T0).unwrap();
    store(
        &cache,
        vec![batch(
            "lab",
            vec![
                pve("n1", 1, T0 + 5, Some(T0 + 6), Some("OK")),
                pve("n1", 2, T0 + 50, Some(T0 + 51), Some("OK")),
            ],
            &["n1"],
        )],
    );
    cache.apply_journal().unwrap();
    drop(cache);
    let bytes = std::fs::read(dir.join("active.jsonl")).unwrap();
    let lines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 3, "a header and two task lines");
    (bytes, lines[1])
}

#[test]
fn a_non_utf8_byte_in_the_active_file_is_set_aside_like_ascii_garbage_at_the_same_place() {
    for (what, garbage) in [("ascii", b'#'), ("non-UTF-8", 0xFF)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut bytes, second_line) = active_with_two_tasks(dir.path());
        bytes[second_line + 2] = garbage;
        std::fs::write(dir.path().join("active.jsonl"), &bytes).unwrap();

        let cache = TaskCache::open(dir.path(), T0 + 100)
            .unwrap_or_else(|err| panic!("{what}: the cache opens: {err}"));
        let problems: Vec<String> = cache.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 1, "{what}: {problems:?}");
        assert!(
            matches!(cache.problems()[0], TaskCacheError::CorruptFile { .. }),
            "{what}: {problems:?}"
        );
        assert!(
            problems[0].contains("active.jsonl") && problems[0].contains("line 3"),
            "{what}: {}",
            problems[0]
        );
        assert!(
            !problems[0].contains("permissions"),
            "{what}: {}",
            problems[0]
        );
        assert_eq!(
            std::fs::read(dir.path().join("active.jsonl.corrupt")).unwrap(),
            bytes,
            "{what}: the damaged file is kept as it was"
        );
        // The line before the damage is kept; the damaged one is fetched again.
        assert_eq!(cache.query(&all("lab")).total, 1, "{what}");
    }
}

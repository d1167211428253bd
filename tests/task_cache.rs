//! The task cache on real files in temporary directories, with real fsync: merges,
//! cutoffs, rotation, crash recovery (a writer process killed with SIGKILL), corruption,
//! tracked tasks, every query filter, and a reader process beside the writer.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetpoll::engine::{
    RemoteId, TaskBatch, TaskQuery, TaskRecord, TaskRef, TaskStore, TaskWrite,
};
use fleetpoll::tasks::{StatusClass, TaskCache, TaskCacheError, TaskFilter};
use rand::Rng;

const DAY: i64 = 86_400;
/// 2025-06-16 00:00:00 UTC.
const T0: i64 = 1_750_032_000;

fn pve(node: &str, pid: u32, start: i64, end: Option<i64>, status: Option<&str>) -> TaskRecord {
    pve_typed(node, pid, start, end, status, "qmstart", "root@pam")
}

fn pve_typed(
    node: &str,
    pid: u32,
    start: i64,
    end: Option<i64>,
    status: Option<&str>,
    task_type: &str,
    user: &str,
) -> TaskRecord {
    TaskRecord {
        upid: format!("UPID:{node}:{pid:08X}:0000ABCD:{start:08X}:{task_type}:100:{user}:"),
        node: node.to_string(),
        task_type: task_type.to_string(),
        task_id: Some("100".into()),
        user: user.to_string(),
        start_time: start,
        end_time: end,
        status: status.map(str::to_string),
    }
}

fn pbs(host: &str, counter: u64, start: i64, end: Option<i64>) -> TaskRecord {
    TaskRecord {
        upid: format!("UPID:{host}:000002B2:00000158:{counter:08X}:{start:08X}:garbage_collection:store1:root@pam:"),
        node: host.to_string(),
        task_type: "garbage_collection".into(),
        task_id: Some("store1".into()),
        user: "root@pam".into(),
        start_time: start,
        end_time: end,
        status: end.map(|_| "OK".to_string()),
    }
}

fn batch(remote: &str, tasks: Vec<TaskRecord>, complete: &[&str]) -> TaskWrite {
    TaskWrite {
        remote: RemoteId::new(remote),
        batch: TaskBatch {
            tasks,
            complete_nodes: complete.iter().map(|s| s.to_string()).collect(),
        },
        query: TaskQuery::default(),
    }
}

fn store(cache: &TaskCache, writes: Vec<TaskWrite>) {
    for r in cache.store_tasks(&writes) {
        r.unwrap();
    }
}

fn all(remote: &str) -> TaskFilter {
    TaskFilter {
        remote: Some(RemoteId::new(remote)),
        limit: 0,
        ..TaskFilter::default()
    }
}

#[test]
fn the_same_task_merged_twice_is_one_task_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let t = pve("n1", 1, T0 + 10, Some(T0 + 20), Some("OK"));
    store(
        &cache,
        vec![batch("lab", vec![t.clone(), t.clone()], &["n1"])],
    );
    store(&cache, vec![batch("lab", vec![t.clone()], &["n1"])]);
    assert_eq!(cache.query(&all("lab")).total, 1);
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    store(&cache, vec![batch("lab", vec![t.clone()], &["n1"])]);
    let page = cache.query(&all("lab"));
    assert_eq!(page.total, 1);
    assert_eq!(page.tasks[0].task, t);
    assert_eq!(page.tasks[0].remote.as_str(), "lab");
}

#[test]
fn a_finished_state_replaces_a_running_one_and_never_the_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let running = pve("n1", 1, T0 + 10, None, None);
    let done = pve("n1", 1, T0 + 10, Some(T0 + 99), Some("some error"));
    store(&cache, vec![batch("lab", vec![running.clone()], &["n1"])]);
    assert!(cache.has_running(&RemoteId::new("lab")));
    store(&cache, vec![batch("lab", vec![done.clone()], &["n1"])]);
    store(&cache, vec![batch("lab", vec![running], &["n1"])]);
    assert!(!cache.has_running(&RemoteId::new("lab")));
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    assert_eq!(cache.query(&all("lab")).tasks[0].task, done);
    assert!(!cache.has_running(&RemoteId::new("lab")));
}

#[test]
fn the_cutoff_is_the_oldest_running_task_else_the_newest_task() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let lab = RemoteId::new("lab");
    store(
        &cache,
        vec![batch(
            "lab",
            vec![
                pve("n1", 1, T0 + 100, None, None),
                pve("n1", 2, T0 + 200, Some(T0 + 210), Some("OK")),
                pve("n1", 3, T0 + 300, None, None),
                pve("n2", 4, T0 + 400, Some(T0 + 410), Some("OK")),
                pve("n2", 5, T0 + 500, Some(T0 + 510), Some("OK")),
            ],
            &["n1", "n2"],
        )],
    );
    let q = cache.task_query(&lab, T0 + DAY);
    assert_eq!(q.cutoffs.get("n1"), Some(&(T0 + 100)));
    assert_eq!(q.cutoffs.get("n2"), Some(&(T0 + 500)));
    assert_eq!(q.default_since, T0 + DAY - 7 * DAY);
    store(
        &cache,
        vec![batch(
            "lab",
            vec![pve("n1", 1, T0 + 100, Some(T0 + 600), Some("OK"))],
            &["n1"],
        )],
    );
    assert_eq!(
        cache.task_query(&lab, T0).cutoffs.get("n1"),
        Some(&(T0 + 300))
    );
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    assert_eq!(
        cache.task_query(&lab, T0).cutoffs.get("n1"),
        Some(&(T0 + 300))
    );
}

#[test]
fn only_nodes_listed_complete_advance_their_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let lab = RemoteId::new("lab");
    store(
        &cache,
        vec![batch(
            "lab",
            vec![pve("n1", 1, T0 + 100, Some(T0 + 1), Some("OK"))],
            &["n1"],
        )],
    );
    store(
        &cache,
        vec![batch(
            "lab",
            vec![
                pve("n1", 2, T0 + 900, Some(T0 + 901), Some("OK")),
                pve("n2", 3, T0 + 900, Some(T0 + 901), Some("OK")),
            ],
            &[],
        )],
    );
    let q = cache.task_query(&lab, T0);
    assert_eq!(q.cutoffs.get("n1"), Some(&(T0 + 100)));
    assert_eq!(q.cutoffs.get("n2"), None);
    assert_eq!(cache.query(&all("lab")).total, 3);
    assert!(cache
        .task_query(&RemoteId::new("new"), T0)
        .cutoffs
        .is_empty());
}

#[test]
fn pbs_tasks_keep_their_cutoff_under_localhost_whatever_host_they_carry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let backup = RemoteId::new("backup");
    store(
        &cache,
        vec![batch(
            "backup",
            vec![
                pbs("pbs-host", 1, T0 + 50, Some(T0 + 60)),
                pbs("pbs-host", 2, T0 + 70, None),
            ],
            &["localhost"],
        )],
    );
    let q = cache.task_query(&backup, T0);
    assert_eq!(q.cutoffs.get("localhost"), Some(&(T0 + 70)));
    assert_eq!(q.cutoffs.get("pbs-host"), None);
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    assert_eq!(
        cache.task_query(&backup, T0).cutoffs.get("localhost"),
        Some(&(T0 + 70))
    );
}

fn magic_is_zstd(path: &Path) -> bool {
    std::fs::read(path)
        .unwrap()
        .starts_with(&[0x28, 0xB5, 0x2F, 0xFD])
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

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

#[test]
fn tracked_tasks_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    assert!(cache.load_tracked().is_empty());
    let tracked = vec![
        TaskRef::parse("pve:lab!UPID:pve:00039E4D:002638B8:67B4A9D1:stopall::root@pam:").unwrap(),
        TaskRef::parse("pbs:bk!UPID:pbs:000002B2:00000158:00000000:674D828C:logrotate::root@pam:")
            .unwrap(),
    ];
    cache.save_tracked(&tracked).unwrap();
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    assert_eq!(cache.load_tracked(), tracked);
    assert_eq!(
        TaskCache::open_read_only(dir.path())
            .unwrap()
            .load_tracked(),
        tracked
    );
}

#[test]
fn a_second_writer_is_refused_while_readers_are_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    store(
        &cache,
        vec![batch("lab", vec![pve("n1", 1, T0, None, None)], &["n1"])],
    );
    let err = TaskCache::open(dir.path(), T0).unwrap_err();
    assert!(matches!(err, TaskCacheError::Busy { .. }), "{err}");
    let reader = TaskCache::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.query(&all("lab")).total, 1);
    let refused = reader.store_tasks(&[batch("lab", vec![], &["n1"])]);
    assert!(refused[0].as_ref().unwrap_err().0.contains("read-only"));
}

fn filter_fixture() -> (tempfile::TempDir, TaskCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    store(
        &cache,
        vec![
            batch(
                "a",
                vec![
                    pve_typed(
                        "n1",
                        1,
                        T0 + 10,
                        Some(T0 + 11),
                        Some("OK"),
                        "vzdump",
                        "root@pam",
                    ),
                    pve_typed(
                        "n1",
                        2,
                        T0 + 20,
                        Some(T0 + 21),
                        Some("WARNINGS: 1"),
                        "vzdump",
                        "alice@pve",
                    ),
                    pve_typed(
                        "n2",
                        3,
                        T0 + 30,
                        Some(T0 + 31),
                        Some("command failed"),
                        "qmstart",
                        "alice@pve",
                    ),
                    pve_typed("n2", 4, T0 + 40, None, None, "qmigrate", "root@pam"),
                ],
                &["n1", "n2"],
            ),
            batch(
                "b",
                vec![
                    pve_typed(
                        "m1",
                        5,
                        T0 + 15,
                        Some(T0 + 16),
                        Some("OK"),
                        "vzdump",
                        "bob@pbs",
                    ),
                    pve_typed("m1", 6, T0 + 35, None, None, "vzdump", "bob@pbs"),
                ],
                &["m1"],
            ),
        ],
    );
    (dir, cache)
}

fn pids(cache: &TaskCache, filter: TaskFilter) -> (Vec<u32>, usize) {
    let page = cache.query(&filter);
    let pids = page
        .tasks
        .iter()
        .map(|t| u32::from_str_radix(t.task.upid.split(':').nth(2).unwrap(), 16).unwrap())
        .collect();
    (pids, page.total)
}

#[test]
fn every_filter_narrows_the_newest_first_list() {
    let (_dir, cache) = filter_fixture();
    let f = TaskFilter::default;
    assert_eq!(pids(&cache, f()), (vec![4, 6, 3, 2, 5, 1], 6));
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                remote: Some("a".into()),
                ..f()
            }
        ),
        (vec![4, 3, 2, 1], 4)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                remote: Some("zz".into()),
                ..f()
            }
        ),
        (vec![], 0)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                node: Some("n2".into()),
                ..f()
            }
        ),
        (vec![4, 3], 2)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                running_only: true,
                ..f()
            }
        ),
        (vec![4, 6], 2)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                running_only: true,
                remote: Some("b".into()),
                ..f()
            }
        ),
        (vec![6], 1)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                since: Some(T0 + 20),
                ..f()
            }
        ),
        (vec![4, 6, 3, 2], 4)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                until: Some(T0 + 20),
                ..f()
            }
        ),
        (vec![2, 5, 1], 3)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                since: Some(T0 + 15),
                until: Some(T0 + 30),
                ..f()
            }
        ),
        (vec![3, 2, 5], 3)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                type_contains: Some("dump".into()),
                ..f()
            }
        ),
        (vec![6, 2, 5, 1], 4)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                user_contains: Some("alice".into()),
                ..f()
            }
        ),
        (vec![3, 2], 2)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                errors_only: true,
                ..f()
            }
        ),
        (vec![3], 1)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                status: Some(StatusClass::Warning),
                ..f()
            }
        ),
        (vec![2], 1)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                status: Some(StatusClass::Ok),
                ..f()
            }
        ),
        (vec![5, 1], 2)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                status: Some(StatusClass::Running),
                ..f()
            }
        ),
        (vec![4, 6], 2)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                start: 1,
                limit: 2,
                ..f()
            }
        ),
        (vec![6, 3], 6)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                start: 1,
                limit: 1,
                type_contains: Some("vz".into()),
                ..f()
            }
        ),
        (vec![2], 4)
    );
    assert_eq!(
        pids(
            &cache,
            TaskFilter {
                limit: 0,
                start: 5,
                ..f()
            }
        ),
        (vec![1], 6)
    );
}

#[test]
fn the_default_page_is_fifty_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let tasks = (0..120)
        .map(|i| pve("n1", i, T0 + i64::from(i), Some(T0 + 500), Some("OK")))
        .collect();
    store(&cache, vec![batch("lab", tasks, &["n1"])]);
    let page = cache.query(&TaskFilter::default());
    assert_eq!((page.tasks.len(), page.total), (50, 120));
    assert_eq!(page.tasks[0].task.start_time, T0 + 119);
}

// ---- child processes: the same test executable, switched into writer mode ----

const WRITER_ENV: &str = "FLEETPOLL_TASK_CACHE_WRITER_DIR";
const WRITER_START_ENV: &str = "FLEETPOLL_TASK_CACHE_WRITER_START";
const TASKS_PER_BATCH: u32 = 10;
/// Small, so that even a slow disk sees rotations, compression and expiry within the
/// crash test's twenty rounds.
const BATCHES_PER_DAY: u32 = 40;

/// The tasks of writer batch `i`: ten finished tasks on remote `r<i % 3>`.
fn writer_batch(i: u32) -> TaskWrite {
    let remote = format!("r{}", i % 3);
    let day = i64::from(i / BATCHES_PER_DAY);
    let tasks = (0..TASKS_PER_BATCH)
        .map(|k| {
            let start = T0 + day * DAY + i64::from(i % BATCHES_PER_DAY) * 100 + i64::from(k);
            pve(
                "n1",
                i * TASKS_PER_BATCH + k,
                start,
                Some(start + 1),
                Some("OK"),
            )
        })
        .collect();
    batch(&remote, tasks, &["n1"])
}

/// Not a test on its own: with the environment variable set, this is the writer child
/// the crash and reader tests start. It stores batches forever, printing `acked <i>`
/// after each `store_tasks` returns, applying and rotating now and then.
#[test]
fn writer_child_mode() {
    let Ok(dir) = std::env::var(WRITER_ENV) else {
        return;
    };
    let start: u32 = std::env::var(WRITER_START_ENV).map_or(0, |s| s.parse().unwrap());
    let now = T0 + i64::from(start / BATCHES_PER_DAY) * DAY;
    let cache = TaskCache::open(&dir, now).unwrap();
    let mut out = std::io::stdout().lock();
    for i in start.. {
        if i > start && i % BATCHES_PER_DAY == 0 {
            cache
                .rotate(T0 + i64::from(i / BATCHES_PER_DAY) * DAY)
                .unwrap();
        }
        store(&cache, vec![writer_batch(i)]);
        writeln!(out, "acked {i}").unwrap();
        out.flush().unwrap();
        if i % 7 == 6 {
            cache.apply_journal().unwrap();
        }
    }
}

/// Waits in a test thread (the writer child runs in its own process; nothing to await).
#[expect(
    clippy::disallowed_methods,
    reason = "a test thread waiting for a child process, not an actor"
)]
fn pause(d: Duration) {
    std::thread::sleep(d);
}

struct Child {
    child: std::process::Child,
    acked: Arc<Mutex<Vec<u32>>>,
    reader: std::thread::JoinHandle<()>,
}

fn start_writer(dir: &Path, start: u32) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "writer_child_mode",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(WRITER_ENV, dir)
        .env(WRITER_START_ENV, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sink = acked.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("acked ") {
                sink.lock().unwrap().push(n.trim().parse().unwrap());
            }
        }
    });
    Child {
        child,
        acked,
        reader,
    }
}

impl Child {
    fn wait_for_acks(&self, n: usize, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        while self.acked.lock().unwrap().len() < n {
            assert!(
                tokio::time::Instant::now() < until,
                "writer child acknowledged too little"
            );
            pause(Duration::from_millis(1));
        }
    }

    fn kill(mut self) -> Vec<u32> {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        self.reader.join().unwrap();
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// Batch ids present in the cache, checking that each batch is all there or not at all.
fn batches_present(cache: &TaskCache) -> BTreeSet<u32> {
    let mut per_batch = std::collections::BTreeMap::<u32, u32>::new();
    let page = cache.query(&TaskFilter {
        limit: 0,
        ..TaskFilter::default()
    });
    let mut upids = BTreeSet::new();
    for t in &page.tasks {
        assert!(
            upids.insert(t.task.upid.clone()),
            "duplicate {}",
            t.task.upid
        );
        let pid = u32::from_str_radix(t.task.upid.split(':').nth(2).unwrap(), 16).unwrap();
        *per_batch.entry(pid / TASKS_PER_BATCH).or_default() += 1;
    }
    for (b, n) in &per_batch {
        assert_eq!(*n, TASKS_PER_BATCH, "batch {b} is torn");
    }
    per_batch.into_keys().collect()
}

#[test]
fn every_acknowledged_batch_survives_kill_9_of_the_writer_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut acked_all = BTreeSet::new();
    let mut next = 0;
    for round in 0..20 {
        let child = start_writer(dir.path(), next);
        child.wait_for_acks(1, Duration::from_secs(30));
        pause(Duration::from_millis(rng.random_range(0..80)));
        let acked = child.kill();
        acked_all.extend(acked.iter().copied());
        let cache = TaskCache::open(dir.path(), T0).unwrap();
        let present = batches_present(&cache);
        // Archives beyond the newest seven expire with their batches; everything newer
        // that was acknowledged must be there.
        let first_kept_day = cache.active_day() - T0 / DAY - 7;
        let missing: Vec<&u32> = acked_all
            .difference(&present)
            .filter(|&&b| i64::from(b / BATCHES_PER_DAY) >= first_kept_day)
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged batches lost: {missing:?}"
        );
        next = present.iter().max().map_or(0, |m| m + 1).max(next);
        drop(cache);
    }
    eprintln!(
        "{} batches acknowledged over 20 kills, {} stored",
        acked_all.len(),
        next
    );
    assert!(
        acked_all.len() >= 20,
        "only {} batches acknowledged",
        acked_all.len()
    );
    assert!(
        next > BATCHES_PER_DAY,
        "the writers never rotated; raise the kill delays"
    );
    let days = next / BATCHES_PER_DAY;
    let files = names(dir.path());
    let archives = files.iter().filter(|n| n.starts_with("archive-")).count();
    assert!(archives <= 7, "{archives} archives kept: {files:?}");
    assert!(
        archives >= (days as usize).min(7) / 2,
        "too few archives: {files:?}"
    );
}

#[test]
fn a_reader_process_sees_whole_batches_while_the_writer_writes() {
    let dir = tempfile::tempdir().unwrap();
    drop(TaskCache::open(dir.path(), T0).unwrap());
    let child = start_writer(dir.path(), 0);
    child.wait_for_acks(1, Duration::from_secs(30));
    let mut last = 0;
    for _ in 0..20 {
        let reader = TaskCache::open_read_only(dir.path()).unwrap();
        assert!(reader.problems().is_empty(), "{:?}", reader.problems());
        let present = batches_present(&reader);
        assert!(present.len() >= last, "a later snapshot lost batches");
        last = present.len();
        pause(Duration::from_millis(5));
    }
    let acked = child.kill();
    assert!(last > 0 && !acked.is_empty());
}

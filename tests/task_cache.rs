//! The task cache on real files in temporary directories, with real fsync: merges,
//! cutoffs (PBS under `localhost`), tracked tasks, the writer lock and every query filter.

mod task_cache_support;

use fleetpoll::engine::{RemoteId, TaskRef, TaskStore};
use fleetpoll::tasks::{StatusClass, TaskCache, TaskCacheError, TaskFilter, FUTURE_SKEW_SECS};
use task_cache_support::*;

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
fn a_cutoff_is_never_older_than_the_seven_day_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let lab = RemoteId::new("lab");
    // A task the remote never reports finished keeps the stored cutoff at its start.
    store(
        &cache,
        vec![batch("lab", vec![pve("n1", 1, T0, None, None)], &["n1"])],
    );
    assert_eq!(cache.cutoffs(&lab)["n1"], T0);
    assert_eq!(cache.task_query(&lab, T0 + DAY).cutoffs["n1"], T0);
    let q = cache.task_query(&lab, T0 + 30 * DAY);
    assert_eq!(q.cutoffs["n1"], T0 + 23 * DAY);
    assert_eq!(q.cutoffs["n1"], q.default_since);
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

#[test]
fn tasks_dated_beyond_the_skew_are_marked_future_and_listed_after_the_others() {
    let (_dir, cache) = filter_fixture();
    // Tasks started after T0 + 32 lie in the future of a query at T0 + 32 - skew.
    let filter = TaskFilter {
        now: Some(T0 + 32 - FUTURE_SKEW_SECS),
        ..TaskFilter::default()
    };
    assert_eq!(pids(&cache, filter.clone()), (vec![3, 2, 5, 1, 4, 6], 6));
    let page = cache.query(&filter);
    let future: Vec<bool> = page.tasks.iter().map(|t| t.future).collect();
    assert_eq!(future, [false, false, false, false, true, true]);
    // Within the skew a task is not future-dated; without a `now` none is.
    let now = TaskFilter {
        now: Some(T0 + 40),
        ..TaskFilter::default()
    };
    assert_eq!(pids(&cache, now).0, vec![4, 6, 3, 2, 5, 1]);
    assert!(cache
        .query(&TaskFilter::default())
        .tasks
        .iter()
        .all(|t| !t.future));
    // Paging walks the same order.
    let second_page = TaskFilter {
        start: 3,
        limit: 2,
        ..filter
    };
    assert_eq!(pids(&cache, second_page), (vec![1, 4], 6));
}

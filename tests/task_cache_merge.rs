//! How `store` merges what one call hands it: a task listed twice, a remote's batches
//! twice in one call, calls larger than one journal group, and queries that run while a
//! large merge is applied.

mod task_cache_support;

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::Instant;

use fleetpoll::engine::{RemoteId, TaskRecord, TaskStore};
use fleetpoll::tasks::{TaskCache, TaskFilter};
use task_cache_support::*;

/// `n` finished tasks of node `n1`, one a minute from `T0`, pids from `first_pid`.
fn finished(first_pid: u32, n: u32) -> Vec<TaskRecord> {
    (0..n)
        .map(|k| {
            let start = T0 + 60 * i64::from(k);
            pve("n1", first_pid + k, start, Some(start + 5), Some("OK"))
        })
        .collect()
}

#[test]
fn a_task_listed_running_then_finished_in_one_batch_is_stored_finished() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let running = pve("n1", 1, T0 + 10, None, None);
    let done = pve("n1", 1, T0 + 10, Some(T0 + 20), Some("OK"));
    store(
        &cache,
        vec![batch(
            "lab",
            vec![running.clone(), done.clone(), running],
            &["n1"],
        )],
    );
    let page = cache.query(&all("lab"));
    assert_eq!(page.total, 1);
    assert_eq!(page.tasks[0].task, done);
    drop(cache);
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let page = cache.query(&all("lab"));
    assert_eq!(page.total, 1);
    assert_eq!(page.tasks[0].task, done);
}

#[test]
fn two_batches_of_one_remote_in_one_call_merge_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let running = pve("n1", 1, T0 + 10, None, None);
    let done = pve("n1", 1, T0 + 10, Some(T0 + 20), Some("OK"));
    let other = pve("n1", 2, T0 + 30, Some(T0 + 40), Some("OK"));
    store(
        &cache,
        vec![
            batch("lab", vec![running], &["n1"]),
            batch("other", vec![other.clone()], &["n1"]),
            batch("lab", vec![done.clone(), other.clone()], &["n1"]),
        ],
    );
    let page = cache.query(&all("lab"));
    assert_eq!(page.total, 2);
    assert_eq!(page.tasks[0].task, other);
    assert_eq!(page.tasks[1].task, done);
    assert!(!cache.has_running(&RemoteId::new("lab")));
    assert_eq!(
        cache.cutoffs(&RemoteId::new("lab")).get("n1"),
        Some(&(T0 + 30))
    );
}

#[test]
fn a_call_larger_than_one_journal_group_stores_every_task_durably() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    // 40 remotes of 1,000 tasks: more than one group of 16 Ki tasks; one remote twice.
    let mut writes: Vec<_> = (0..40)
        .map(|r| batch(&format!("r{r:02}"), finished(1, 1_000), &["n1"]))
        .collect();
    writes.push(batch("r00", finished(5_000, 10), &["n1"]));
    store(&cache, writes);
    assert_eq!(cache.len(), 40_010);
    drop(cache);
    let cache = TaskCache::open_read_only(dir.path()).unwrap();
    assert_eq!(cache.len(), 40_010);
    assert_eq!(cache.query(&all("r00")).total, 1_010);
    assert_eq!(cache.query(&all("r39")).total, 1_000);
}

#[test]
fn queries_during_a_large_merge_see_sorted_pages_and_a_growing_total() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(dir.path(), T0).unwrap();
    let done = AtomicBool::new(false);
    let mut merges = Vec::new();
    let queries = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut last_total = 0;
            let mut spans = Vec::new();
            while !done.load(Ordering::Relaxed) || spans.is_empty() {
                let started = Instant::now();
                let page = cache.query(&TaskFilter::default());
                spans.push((started, Instant::now(), page.total));
                assert!(page.total >= last_total, "the total went back");
                let starts: Vec<i64> = page.tasks.iter().map(|t| t.task.start_time).collect();
                assert!(starts.windows(2).all(|w| w[0] >= w[1]), "{starts:?}");
                last_total = page.total;
            }
            spans
        });
        for r in 0..20 {
            // Newest first, as remotes list them: 5,000 tasks a batch.
            let mut tasks = finished(1, 5_000);
            tasks.reverse();
            let started = Instant::now();
            store(&cache, vec![batch(&format!("r{r:02}"), tasks, &["n1"])]);
            merges.push((started, Instant::now()));
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    // The overlap the test is about, shown rather than hoped for: queries that began
    // and ended while a merge was under way, and totals between the merges' steps.
    let inside = queries
        .iter()
        .filter(|(qs, qe, _)| merges.iter().any(|(ms, me)| ms <= qs && qe <= me))
        .count();
    assert!(
        inside > 0,
        "no query ran inside a merge ({} queries, {} merges)",
        queries.len(),
        merges.len()
    );
    let partial = queries
        .iter()
        .filter(|(_, _, total)| (1..100_000).contains(total))
        .count();
    assert!(partial > 0, "no query saw the merges under way");
    assert_eq!(cache.query(&TaskFilter::default()).total, 100_000);
}

//! The task cache across processes: a writer child (this test executable re-run in
//! writer mode) killed with SIGKILL at random moments loses no acknowledged batch, and a
//! reader process sees whole batches while the writer writes.

mod task_cache_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetpoll::engine::{TaskStore, TaskWrite};
use fleetpoll::tasks::{TaskCache, TaskFilter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use task_cache_support::*;

const WRITER_ENV: &str = "FLEETPOLL_TASK_CACHE_WRITER_DIR";
const WRITER_START_ENV: &str = "FLEETPOLL_TASK_CACHE_WRITER_START";
/// Set when the writer must not rotate (so that no batch expires under a reader).
const WRITER_NO_ROTATE_ENV: &str = "FLEETPOLL_TASK_CACHE_WRITER_NO_ROTATE";
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

/// Not a test: the writer child the crash and reader tests start (with `--ignored`),
/// ignored in a normal run so it never counts as a test that passed. It stores batches
/// forever, printing `acked <i>` after each `store_tasks` returns, applying and rotating
/// now and then.
#[test]
#[ignore = "the writer process of the crash and reader tests, which start it themselves"]
fn writer_child_mode() {
    let dir = std::env::var(WRITER_ENV)
        .expect("the crash and reader tests start the writer with its directory set");
    let start: u32 = std::env::var(WRITER_START_ENV).map_or(0, |s| s.parse().unwrap());
    let rotate = std::env::var_os(WRITER_NO_ROTATE_ENV).is_none();
    let now = T0 + i64::from(start / BATCHES_PER_DAY) * DAY;
    let cache = TaskCache::open(&dir, now).unwrap();
    let mut out = std::io::stdout().lock();
    for i in start.. {
        if rotate && i > start && i % BATCHES_PER_DAY == 0 {
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

fn start_writer(dir: &Path, start: u32, rotate: bool) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "writer_child_mode",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(WRITER_ENV, dir)
        .env(WRITER_START_ENV, start.to_string())
        .env_remove(WRITER_NO_ROTATE_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !rotate {
        command.env(WRITER_NO_ROTATE_ENV, "1");
    }
    let mut child = command.spawn().unwrap();
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
    // Seeded, so a failure can be replayed: FLEETPOLL_TASK_CACHE_SEED=<seed>.
    let seed: u64 = std::env::var("FLEETPOLL_TASK_CACHE_SEED").map_or(0x7A5C_CAC4, |s| {
        s.parse().expect("FLEETPOLL_TASK_CACHE_SEED is a number")
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked_all = BTreeSet::new();
    let mut next = 0;
    for round in 0..20 {
        let child = start_writer(dir.path(), next, true);
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
            "seed {seed}, round {round}: acknowledged batches lost: {missing:?}"
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
    let child = start_writer(dir.path(), 0, false);
    child.wait_for_acks(1, Duration::from_secs(30));
    let mut last = 0;
    // Fresh read-only handles, then one handle reloaded, all while the child writes.
    for _ in 0..10 {
        let reader = TaskCache::open_read_only(dir.path()).unwrap();
        assert!(reader.problems().is_empty(), "{:?}", reader.problems());
        let present = batches_present(&reader);
        assert!(present.len() >= last, "a later snapshot lost batches");
        last = present.len();
        pause(Duration::from_millis(5));
    }
    let reader = TaskCache::open_read_only(dir.path()).unwrap();
    for _ in 0..10 {
        let problems = reader.reload().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let present = batches_present(&reader);
        assert!(present.len() >= last, "a reload lost batches");
        last = present.len();
        pause(Duration::from_millis(5));
    }
    let acked = child.kill();
    assert!(last > 0 && !acked.is_empty());
    assert!(reader.store_tasks(&[]).is_empty());
    assert!(reader.apply_journal().is_err(), "a reader must not write");
}

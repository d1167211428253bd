//! `kill -9` of the daemon at random moments, in a loop: `fleetpoll run` against
//! `fleetpoll sim`, both as processes, collecting every 3 s, committing the metric
//! journal and folding the task journal every 2 s, so a kill lands during collection,
//! journal appends, RRD commits and task merges (and, for the kills soon after a start,
//! during journal replay). After every restart:
//!
//! - the API is ready (`GET /api/v1/daemon` answers) within `READY_LIMIT`; the times are
//!   printed (`--nocapture`), the slowest as the measured bound;
//! - every task and every metric row the API served before any earlier kill is served
//!   again, with the same values, and no task is listed twice;
//! - no RRD file was set aside as damaged and no store error is reported.
//!
//! At the end the node series have no gap (the cursors resumed where they stopped) and,
//! with the daemon stopped, every RRD file and the task cache open.
//!
//! The last kills (one in seven, 3 to 5) land around a UTC midnight of the daemon's clock, where the
//! task cache rotates its archive: those starts set `FLEETPOLL_CLOCK_SKEW_SECS` (a
//! `fault-injection` build's clock skew) so that the daemon's clock reaches a new
//! midnight a few seconds after its API answers, and the kill comes from just before
//! to just after it (the run prints whether each came before midnight, past it while the
//! rotation had not ended, or after). The final start crosses one more midnight without a kill, and the
//! archives the rotations wrote must be there. (The simulator's clock is not skewed:
//! to the daemon, every remote's data then looks older, which it accepts.) The exact
//! crash points inside a rotation are the subject of `tests/task_cache_crash.rs`.
//!
//! CI runs `KILLS` (20) kills; `FLEETPOLL_KILLS=100` runs the long variant, and
//! `FLEETPOLL_KILL_SEED` replays a run (the seed is printed).

mod daemon_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::time::Instant;

use daemon_support::*;

const KILLS: usize = 20;
/// Of the kills, how many (the last ones) land around a midnight of the daemon's clock:
/// one in seven, 3 to 5. With the final start that moves the daemon's day on by at most
/// 6, so that the task cache's retention (7 archives) deletes nothing the test checks.
fn midnights(kills: usize) -> usize {
    (kills / 7).clamp(3, 5)
}
/// How long before its midnight a skewed daemon starts (its API answers within this).
const MIDNIGHT_LEAD_SECS: i64 = 8;
const DAY: i64 = 86_400;
/// How long a restarted daemon may take until its API answers.
const READY_LIMIT: Duration = Duration::from_secs(15);

/// A metric row as served: (remote, entity, metric, timestamp).
type RowKey = (String, String, String, i64);

/// What the API served before the kills: every task id, every non-empty row.
#[derive(Default)]
struct Served {
    tasks: BTreeSet<String>,
    rows: BTreeMap<RowKey, f64>,
}

#[expect(
    clippy::disallowed_methods,
    reason = "a test thread pacing real processes, not an actor"
)]
fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// Every task id the daemon lists; panics on a task listed twice.
fn task_ids(port: u16) -> BTreeSet<String> {
    let (status, v) = json(port, "GET", "/api/v1/tasks?limit=0", "");
    assert_eq!(status, 200, "{v}");
    let tasks = v["tasks"].as_array().unwrap();
    let ids: BTreeSet<String> = tasks
        .iter()
        .map(|t| t["upid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), tasks.len(), "a task is listed twice");
    assert_eq!(v["total"].as_u64(), Some(tasks.len() as u64));
    ids
}

/// The node entities of every PVE remote, from the resource lists.
fn nodes(port: u16) -> Vec<(String, String)> {
    let (status, v) = json(port, "GET", "/api/v1/resources", "");
    assert_eq!(status, 200, "{v}");
    v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "node")
        .map(|r| {
            (
                r["remote"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every non-empty row of an entity's one-minute archive over the last hour.
fn rows(port: u16, remote: &str, entity: &str, end: i64) -> BTreeMap<RowKey, f64> {
    let path = format!(
        "/api/v1/rrd/{remote}/{entity}?start={}&end={end}&resolution=60",
        end - 3600
    );
    let (status, v) = json(port, "GET", &path, "");
    assert_eq!(status, 200, "{path}: {v}");
    let data = &v["data"];
    let stamps: Vec<i64> = data["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    let mut out = BTreeMap::new();
    for metric in data["metrics"].as_array().unwrap() {
        let name = metric["name"].as_str().unwrap();
        for (ts, value) in stamps.iter().zip(metric["values"].as_array().unwrap()) {
            if let Some(x) = value.as_f64() {
                let key = (remote.into(), entity.into(), name.into(), *ts);
                out.insert(key, x);
            }
        }
    }
    out
}

/// The system time, in seconds since the epoch, to the microsecond.
fn real_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The skew that puts the daemon's clock `MIDNIGHT_LEAD_SECS` before the first UTC
/// midnight after `MIDNIGHT_LEAD_SECS` from now on a clock skewed by `previous`, so that
/// the daemon's clock never goes back; and that midnight, in system time.
fn midnight_skew(previous: i64) -> (i64, f64) {
    let now = real_now().floor() as i64;
    let midnight = (now + previous + MIDNIGHT_LEAD_SECS).div_euclid(DAY) * DAY + DAY;
    let skew = midnight - MIDNIGHT_LEAD_SECS - now;
    (skew, (midnight - skew) as f64)
}

/// Sleeps until the system time is `at` (seconds since the epoch), if that is ahead.
fn pause_until(at: f64) {
    let left = at - real_now();
    if left > 0.0 {
        pause(Duration::from_secs_f64(left));
    }
}

/// The task archives the rotations wrote.
fn archives(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("archive-") && !n.contains(".corrupt"))
        .collect();
    names.sort();
    names
}

/// Starts the daemon (its clock `skew` seconds ahead) and waits until its API answers;
/// returns it and the time taken.
fn start(config: &Path, log: &Path, port: u16, skew: i64) -> (Proc, Duration) {
    let started = Instant::now();
    let skew_text = skew.to_string();
    let env: Vec<(&str, &std::ffi::OsStr)> = if skew > 0 {
        vec![("FLEETPOLL_CLOCK_SKEW_SECS", skew_text.as_ref())]
    } else {
        Vec::new()
    };
    let mut daemon = spawn_daemon(config, &env, Some(log));
    wait_until(READY_LIMIT, "the restarted daemon's API answers", || {
        let exited = daemon.0.try_wait().unwrap();
        assert!(exited.is_none(), "the daemon exited: {exited:?}");
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/api/v1/daemon", "").0 == 200
    });
    (daemon, started.elapsed())
}

/// Everything served before is served again, and the stores report no damage.
fn check_kept(port: u16, served: &Served, entities: &[(String, String)], round: usize) {
    let (_, daemon) = json(port, "GET", "/api/v1/daemon", "");
    assert_eq!(daemon["rrd_files_set_aside"], 0, "round {round}: {daemon}");
    assert!(daemon["storage_error"].is_null(), "round {round}: {daemon}");
    let now_tasks = task_ids(port);
    let lost: Vec<_> = served.tasks.difference(&now_tasks).collect();
    assert!(lost.is_empty(), "round {round}: tasks lost: {lost:?}");
    let end = unix_now();
    let mut now_rows = BTreeMap::new();
    for (remote, entity) in entities {
        now_rows.extend(rows(port, remote, entity, end));
    }
    for (key, value) in &served.rows {
        // Rows that have left the hour window since are not asked for.
        if key.3 <= end - 3600 + 120 {
            continue;
        }
        assert_eq!(
            now_rows.get(key),
            Some(value),
            "round {round}: the row {key:?} served before a kill"
        );
    }
}

/// Every file the daemon wrote opens with the daemon stopped.
fn check_files(state: &Path, cache: &Path) {
    let mut pending = vec![state.to_path_buf()];
    let mut opened = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            assert!(
                !path.to_string_lossy().contains(".corrupt"),
                "{} was set aside",
                path.display()
            );
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "rrd") {
                fleetpoll::rrd::RrdFile::open(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                opened += 1;
            }
        }
    }
    assert!(opened > 0, "no RRD file under {}", state.display());
    let tasks = fleetpoll::tasks::TaskCache::open_read_only(cache).unwrap();
    assert!(!tasks.is_empty(), "the task cache is empty");
}

#[test]
fn acknowledged_points_and_tasks_survive_kill_9_of_the_daemon_at_random_moments() {
    let kills: usize = std::env::var("FLEETPOLL_KILLS").map_or(KILLS, |s| s.parse().unwrap());
    let seed: u64 = std::env::var("FLEETPOLL_KILL_SEED").map_or_else(
        |_| rand::rng().random(),
        |s| s.parse().expect("FLEETPOLL_KILL_SEED is a number"),
    );
    println!("seed {seed} (FLEETPOLL_KILL_SEED={seed} replays this run), {kills} kills");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sim_flags = [
        "--pve",
        "2",
        "--pbs",
        "1",
        "--guests",
        "6",
        "--task-interval-secs",
        "600",
        "--long-tasks",
        "0.1",
    ];
    let edits = [
        ("\ninterval_secs = 600", "\ninterval_secs = 3"),
        ("start_offset_max_secs = 10", "start_offset_max_secs = 0"),
        (
            "connection_delay_max_ms = 2000",
            "connection_delay_max_ms = 300",
        ),
        ("skip_recent_secs = 10", "skip_recent_secs = 0"),
        ("\ntick_secs = 10", "\ntick_secs = 1"),
        ("running_interval_secs = 30", "running_interval_secs = 2"),
        ("full_interval_secs = 600", "full_interval_secs = 4"),
        ("backfill_days = 7", "backfill_days = 1"),
        (
            "metric_commit_interval_secs = 1800",
            "metric_commit_interval_secs = 2",
        ),
        (
            "task_journal_interval_secs = 3600",
            "task_journal_interval_secs = 2",
        ),
    ];
    let (_sim, config, port) = fleet_config(dir.path(), &sim_flags, &edits);
    let mut served = Served::default();
    let mut ready = Vec::new();
    let mut midnight_kills = Vec::new();
    let mut entities = Vec::new();
    let cache = dir.path().join("full-data/cache");
    let mut skew = 0;
    for round in 0..=kills {
        let log = dir.path().join(format!("daemon-{round}.log"));
        // The last kills, and the final start, each cross a new midnight.
        let midnight = (round + midnights(kills) >= kills).then(|| {
            let (s, at) = midnight_skew(skew);
            skew = s;
            at
        });
        let (daemon, took) = start(&config, &log, port, skew);
        ready.push(took);
        if round == 0 {
            wait_all_ok(port);
            entities = nodes(port);
            assert!(!entities.is_empty(), "no PVE node in the resource lists");
        }
        check_kept(port, &served, &entities, round);
        if round == kills {
            // The last start runs on past its midnight: a few cycles, then the series
            // must have no gap, and the rotations' archives must be there.
            wait_all_ok(port);
            pause_until(midnight.expect("the final start crosses a midnight") + 2.0);
            pause(Duration::from_secs(6));
            check_no_gap(port, &entities);
            let written = archives(&cache);
            println!("archives after the midnights: {written:?}");
            assert!(
                !written.is_empty(),
                "no task archive was rotated out at the daemon's midnights"
            );
            check_kept(port, &served, &entities, round);
            drop(daemon);
            break;
        }
        if let Some(at) = midnight {
            // Around the rotation at midnight: from 50 ms before to 100 ms after.
            served.tasks.extend(task_ids(port));
            let end = unix_now();
            for (remote, entity) in &entities {
                served.rows.extend(rows(port, remote, entity, end));
            }
            let kill_at = at + rng.random_range(-0.05..0.1);
            pause_until(kill_at);
            drop(daemon);
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            midnight_kills.push(if kill_at < at {
                "before midnight"
            } else if logged.contains("rotated task cache") {
                "after the rotation"
            } else {
                "past midnight, before the rotation ended"
            });
            continue;
        }
        // Kill at a random moment, sometimes right after a start (replay, first polls),
        // sometimes during a cycle started by hand.
        pause(Duration::from_millis(rng.random_range(0..3_000)));
        if rng.random_bool(0.5) {
            let (status, v) = json(port, "POST", "/api/v1/collect", r#"{"cycle": true}"#);
            assert!(status < 300, "{v}");
        }
        served.tasks.extend(task_ids(port));
        let end = unix_now();
        for (remote, entity) in &entities {
            served.rows.extend(rows(port, remote, entity, end));
        }
        pause(Duration::from_millis(rng.random_range(0..400)));
        drop(daemon);
    }
    let state = dir.path().join("full-data/state");
    check_files(&state, &cache);
    let mut sorted = ready.clone();
    sorted.sort();
    println!(
        "{} restarts: API ready after median {:?}, slowest {:?}; {} tasks and {} rows \
         served before a kill, all served again",
        ready.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        served.tasks.len(),
        served.rows.len()
    );
    println!("kills at the daemon's midnights: {midnight_kills:?}");
    assert!(served.tasks.len() > 20, "too few tasks to prove anything");
    assert!(served.rows.len() > 100, "too few rows to prove anything");
}

/// Each node's `cpu_current` series has a value at every minute from its first to its newest.
fn check_no_gap(port: u16, entities: &[(String, String)]) {
    let end = unix_now();
    for (remote, entity) in entities {
        let stamps: Vec<i64> = rows(port, remote, entity, end)
            .into_keys()
            .filter(|k| k.2 == "cpu_current")
            .map(|k| k.3)
            .collect();
        assert!(stamps.len() > 2, "{remote} {entity}: {stamps:?}");
        let gaps: Vec<_> = stamps.windows(2).filter(|w| w[1] - w[0] != 60).collect();
        assert!(gaps.is_empty(), "{remote} {entity}: gaps {gaps:?}");
    }
}

//! Crash safety of the RRD metric store: a writer process stores batches through
//! `RrdStore` and prints each acknowledged batch; the test `kill -9`s it at seeded
//! random moments (while opening and replaying, between or inside journal appends,
//! inside commits that write and grow files), reopens the store each time and checks
//! that every acknowledged point can be read back, every file opens (every block of
//! rows matching its checksum) and none was set aside as damaged.
//!
//! The writer is this test executable run again with `FLEETPOLL_RRD_CRASH_WRITER`
//! set to the store directory (see [`writer_child_entry_point`]).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll::rrd::store::RrdStore;
use fleetpoll::rrd::{Cf, FetchRequest, RrdFile};
use fleetpoll_actors::{
    MetricBatch, MetricKind, MetricPoint, MetricStore, MetricWrite, RemoteId, SeriesKey,
};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::time::Instant;

/// Set (to the store directory) in the writer process.
const WRITER_ENV: &str = "FLEETPOLL_RRD_CRASH_WRITER";
/// The first minute's timestamp (a multiple of 60).
const T0: i64 = 1_700_000_040;
const ENTITIES: usize = 6;
/// Gauges `g0..g2`, a DERIVE counter growing 600 a minute, and a gauge `late` that
/// appears from minute 30 on (its file is then grown by a rewrite).
const GAUGES: usize = 3;
const LATE_FROM: i64 = 30;
const MINUTES_PER_BATCH: i64 = 5;
const COMMIT_EVERY: u64 = 4;
const KILLS: usize = 60;
/// Rows of the one-minute archive: only the newest this many minutes can be read.
const ARCHIVE_ROWS: i64 = 1440;

/// The gauge value of metric `k` of entity `e` at minute `m`.
fn gauge(m: i64, e: usize, k: usize) -> f64 {
    ((m * 7 + e as i64 * 3 + k as i64) % 1000) as f64
}

fn remote() -> RemoteId {
    RemoteId::new("lab")
}

/// One batch of every entity's metrics for minutes `first..first + MINUTES_PER_BATCH`.
fn batch(first: i64) -> MetricBatch {
    let mut series = Vec::new();
    let mut points = Vec::new();
    for e in 0..ENTITIES {
        let entity: Arc<str> = Arc::from(format!("qemu/{}", 100 + e));
        let key = |metric: String, kind| SeriesKey {
            entity: entity.clone(),
            metric: Arc::from(metric),
            kind,
        };
        let base = series.len() as u32;
        for k in 0..GAUGES {
            series.push(key(format!("g{k}"), MetricKind::Gauge));
        }
        series.push(key("net_in".into(), MetricKind::Derive));
        series.push(key("late".into(), MetricKind::Gauge));
        for m in first..first + MINUTES_PER_BATCH {
            let timestamp = T0 + 60 * m;
            for k in 0..GAUGES {
                points.push(MetricPoint {
                    series: base + k as u32,
                    timestamp,
                    value: gauge(m, e, k),
                });
            }
            points.push(MetricPoint {
                series: base + GAUGES as u32,
                timestamp,
                value: (600 * m) as f64,
            });
            if m >= LATE_FROM {
                points.push(MetricPoint {
                    series: base + GAUGES as u32 + 1,
                    timestamp,
                    value: gauge(m, e, 9),
                });
            }
        }
    }
    points.sort_by_key(|p| p.timestamp);
    MetricBatch {
        series,
        points,
        dropped_future: 0,
    }
}

/// The writer's life: open the store, continue after its cursor, and store batches
/// forever, committing every few; prints `READY`, `ACK <last timestamp>` after each
/// acknowledged batch, and `COMMIT-BEGIN`/`COMMIT-END` around commits.
fn run_writer(dir: &Path) -> ! {
    let (store, recovery) = RrdStore::open(dir).expect("the writer opens the store");
    assert!(recovery.errors.is_empty(), "{:?}", recovery.errors);
    let mut next = match store.cursor(&remote()).0 {
        Some(last) => (last - T0) / 60 + 1,
        None => 0,
    };
    println!("READY");
    for n in 1.. {
        let write = MetricWrite {
            remote: remote(),
            batch: batch(next),
        };
        let result = store.store_metrics(&[write]).remove(0);
        let cursor = result.expect("the writer's batch is stored");
        next += MINUTES_PER_BATCH;
        println!("ACK {}", cursor.0.expect("a cursor after a stored batch"));
        if n % COMMIT_EVERY == 0 {
            println!("COMMIT-BEGIN");
            store.commit().expect("the writer's commit succeeds");
            println!("COMMIT-END");
        }
    }
    unreachable!("the writer runs until it is killed")
}

/// Entry point of the writer process. Not a test: ignored in a normal run (so it is
/// never counted as one that passed), started with `--ignored` by the crash test, and
/// failing when started without the store directory.
#[test]
#[ignore = "the writer process of the crash test, which starts it itself"]
fn writer_child_entry_point() {
    let dir = std::env::var_os(WRITER_ENV)
        .expect("the crash test starts the writer with FLEETPOLL_RRD_CRASH_WRITER set");
    run_writer(Path::new(&dir));
}

/// Where a kill landed, from the writer's last line before it died.
fn moment(last_line: Option<&str>) -> &'static str {
    match last_line {
        None => "while opening (replay and startup commit)",
        Some("READY") => "in the first journal append",
        Some("COMMIT-BEGIN") => "inside a commit",
        Some("COMMIT-END") => "in a journal append after a commit",
        Some(_) => "in a journal append or between batches",
    }
}

/// Starts the writer, kills it at a random moment and returns every line it printed.
fn run_and_kill(dir: &Path, rng: &mut StdRng) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "writer_child_entry_point",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test executable starts again as the writer");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    // Kill on a line chosen now: early (mid-open), after some acknowledgements, or
    // just after a commit began; then after a random delay of up to 3 ms.
    let target = match rng.random_range(0..10) {
        0 => None,
        1..=5 => Some(("ACK", rng.random_range(1..12))),
        _ => Some(("COMMIT-BEGIN", rng.random_range(1..3))),
    };
    if let Some((prefix, count)) = target {
        let mut seen = 0;
        while seen < count {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the writer keeps printing");
            if line.starts_with(prefix) {
                seen += 1;
            }
            lines.push(line);
        }
    }
    // The delay, collecting what the writer prints meanwhile.
    let kill_at = Instant::now() + Duration::from_micros(rng.random_range(0..3000));
    while let Some(left) = kill_at.checked_duration_since(Instant::now()) {
        if let Ok(line) = rx.recv_timeout(left) {
            lines.push(line);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
}

/// Checks the reopened store: every acknowledged minute (of the newest
/// `ARCHIVE_ROWS`) reads back with its values, and every file opens.
fn check(dir: &Path, acked: i64, first_acked: i64) {
    let (store, recovery) = RrdStore::open(dir).unwrap();
    assert!(recovery.errors.is_empty(), "{:?}", recovery.errors);
    let cursor = store.cursor(&remote()).0.unwrap_or(0);
    assert!(cursor >= acked, "cursor {cursor} lost acknowledged {acked}");
    let from_minute = ((acked - T0) / 60 - ARCHIVE_ROWS + 20)
        .max(first_acked)
        .max(2);
    let to_minute = (acked - T0) / 60;
    for e in 0..ENTITIES {
        let entity = format!("qemu/{}", 100 + e);
        let result = store
            .fetch(
                &remote(),
                &entity,
                &FetchRequest {
                    cf: Cf::Average,
                    start: T0 + 60 * (from_minute - 1),
                    end: T0 + 60 * to_minute - 1,
                    resolution: 60,
                },
            )
            .unwrap()
            .unwrap_or_else(|| panic!("{entity} is missing"));
        assert_eq!(result.step, 60);
        let col = |name: &str| result.names.iter().position(|n| n == name).unwrap();
        let rows: BTreeMap<i64, &Vec<f64>> = result.rows.iter().map(|(t, v)| (*t, v)).collect();
        for m in from_minute..=to_minute {
            let row = rows[&(T0 + 60 * m)];
            for k in 0..GAUGES {
                assert_eq!(
                    row[col(&format!("g{k}"))],
                    gauge(m, e, k),
                    "{entity} g{k} m{m}"
                );
            }
            assert_eq!(row[col("net_in")], 10.0, "{entity} net_in minute {m}");
            if m > LATE_FROM {
                assert_eq!(row[col("late")], gauge(m, e, 9), "{entity} late m{m}");
            }
        }
    }
    // A write torn by the kill is replayed over, never taken for damage.
    assert_eq!(
        store.damaged_file_count(),
        0,
        "a crash set files aside: {:?}",
        store.damaged_files()
    );
    drop(store);
    for entry in std::fs::read_dir(dir.join("lab")).unwrap().flatten() {
        let path = entry.path();
        assert!(
            !path.to_string_lossy().contains(".corrupt"),
            "{} was set aside after a crash",
            path.display()
        );
        if path.extension().is_some_and(|x| x == "rrd") {
            RrdFile::open(&path).unwrap_or_else(|err| panic!("{err}"));
        }
    }
}

#[test]
fn every_acknowledged_point_survives_kill_9_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(0x5EED_C4A5);
    let mut moments: BTreeMap<&str, usize> = BTreeMap::new();
    let mut acked: Option<i64> = None;
    let mut first_acked: Option<i64> = None;
    for _ in 0..KILLS {
        let lines = run_and_kill(dir.path(), &mut rng);
        let last = lines
            .iter()
            .rev()
            .find(|l| ["READY", "ACK", "COMMIT"].iter().any(|p| l.starts_with(p)));
        *moments.entry(moment(last.map(String::as_str))).or_default() += 1;
        for line in &lines {
            if let Some(ts) = line.strip_prefix("ACK ") {
                let ts: i64 = ts.parse().unwrap();
                first_acked.get_or_insert((ts - T0) / 60);
                acked = Some(acked.map_or(ts, |a| a.max(ts)));
            }
        }
        if let (Some(acked), Some(first)) = (acked, first_acked) {
            check(dir.path(), acked, first);
        }
    }
    eprintln!("kills by moment: {moments:?}");
    assert!(acked.is_some(), "the writer never acknowledged a batch");
    assert!(
        moments.len() >= 3,
        "the kills should land at several kinds of moments: {moments:?}"
    );
}

//! Scenario `task-query`: the task cache with a week of history for a large fleet
//! (default 1,000 remotes × 500 tasks a day × 7 days = 3.5 million tasks), built on disk
//! through the store (journal, apply, daily rotation, compression), then reopened cold
//! in a fresh process and queried: p99 latency of the three common queries, resident
//! bytes per cached task, and the time to open. A second fresh process merges the same
//! tasks into an empty cache the way the daemon's first cycle does (each remote's whole
//! history as one batch) while another thread queries: the peak memory of the merge
//! above the final index, and the query latency behind the merges.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use fleetpoll::engine::{RemoteId, TaskBatch, TaskQuery, TaskRecord, TaskWrite};
use fleetpoll::tasks::{TaskCache, TaskFilter};
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::time::Instant;

use crate::measure::{percentile, process_peak_rss_mib, process_rss_mib, round, rss_bytes};

/// 2025-06-16 00:00:00 UTC, the first simulated day.
const T0: i64 = 1_750_032_000;
const DAY: i64 = 86_400;
/// Remotes merged per `store` call, as the Storage actor groups writes.
const REMOTES_PER_STORE: usize = 50;
/// Nodes per simulated remote.
const NODES: usize = 4;

/// Flags of the `task-query` scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct TaskQueryArgs {
    /// Number of remotes.
    #[arg(long, default_value_t = 1_000)]
    remotes: usize,
    /// Tasks per remote and day.
    #[arg(long, default_value_t = 500)]
    tasks_per_day: usize,
    /// Days of history (the last one stays in the active file).
    #[arg(long, default_value_t = 7)]
    days: usize,
    /// Timed samples per query kind.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Cache directory; built there if it holds no cache (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Only build the cache in `--dir` and exit (used by the scenario itself, so that the
    /// measured open starts in a fresh process).
    #[arg(long, hide = true)]
    build_only: bool,
    /// Batches (each one remote's whole history) per `store` call in the merge
    /// measurement.
    #[arg(long, default_value_t = 4)]
    merge_group: usize,
    /// Only run the merge measurement in `--dir` and print its figures (used by the
    /// scenario itself, so that the measured peak is the merge's alone).
    #[arg(long, hide = true)]
    merge_only: bool,
}

fn task(remote: usize, day: usize, n: usize, per_day: usize, running: bool) -> TaskRecord {
    let node = format!("node{}", n % NODES);
    let start = T0 + (day as i64) * DAY + (n as i64 * (DAY - 600)) / per_day as i64;
    let types = [
        "vzdump",
        "qmstart",
        "qmstop",
        "vzmigrate",
        "qmsnapshot",
        "aptupdate",
    ];
    let task_type = types[(n + remote) % types.len()];
    let vmid = 100 + (n * 7 + remote) % 300;
    let user = if n.is_multiple_of(5) {
        "backup@pbs!job"
    } else {
        "root@pam"
    };
    let pid = (remote * 100_000 + day * 1_000 + n) as u32;
    TaskRecord {
        upid: format!(
            "UPID:{node}:{pid:08X}:{:08X}:{start:08X}:{task_type}:{vmid}:{user}:",
            0x0026_38B8 + day * 1000
        ),
        node,
        task_type: task_type.to_string(),
        task_id: Some(vmid.to_string()),
        user: user.to_string(),
        start_time: start,
        end_time: (!running).then_some(start + 30),
        status: (!running).then(|| {
            if n.is_multiple_of(97) {
                "command 'vzdump' failed: exit code 2".to_string()
            } else {
                "OK".to_string()
            }
        }),
    }
}

/// Builds the cache through the store, a day at a time, rotating at each midnight.
fn build(dir: &Path, args: &TaskQueryArgs) -> Result<()> {
    let cache = TaskCache::open(dir, T0).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nodes: Vec<String> = (0..NODES).map(|i| format!("node{i}")).collect();
    for day in 0..args.days {
        let started = Instant::now();
        for group in (0..args.remotes)
            .collect::<Vec<_>>()
            .chunks(REMOTES_PER_STORE)
        {
            let writes: Vec<TaskWrite> = group
                .iter()
                .map(|&r| TaskWrite {
                    remote: RemoteId::new(format!("remote-{r:04}")),
                    batch: TaskBatch {
                        tasks: (0..args.tasks_per_day)
                            .map(|n| {
                                // On the last day, the newest task of each remote runs.
                                let running = day + 1 == args.days && n + 1 == args.tasks_per_day;
                                task(r, day, n, args.tasks_per_day, running)
                            })
                            .collect(),
                        complete_nodes: nodes.clone(),
                    },
                    query: TaskQuery::default(),
                })
                .collect();
            cache.store(&writes).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if day + 1 < args.days {
            cache
                .rotate_at(T0 + (day as i64 + 1) * DAY)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        eprintln!(
            "day {day}: stored {} tasks in {:.1} s",
            args.remotes * args.tasks_per_day,
            started.elapsed().as_secs_f64()
        );
    }
    cache.apply().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// One remote's whole history, newest first (as the remotes list it).
fn backfill_batch(remote: usize, args: &TaskQueryArgs, nodes: &[String]) -> TaskWrite {
    let mut tasks = Vec::with_capacity(args.days * args.tasks_per_day);
    for day in (0..args.days).rev() {
        for n in (0..args.tasks_per_day).rev() {
            let running = day + 1 == args.days && n + 1 == args.tasks_per_day;
            tasks.push(task(remote, day, n, args.tasks_per_day, running));
        }
    }
    TaskWrite {
        remote: RemoteId::new(format!("remote-{remote:04}")),
        batch: TaskBatch {
            tasks,
            complete_nodes: nodes.to_vec(),
        },
        query: TaskQuery::default(),
    }
}

/// Merges every remote's history into an empty cache in `dir`, `--merge-group` batches
/// per `store`, while a second thread runs the API's default query (all remotes, 50
/// newest) every millisecond. Reports the peak RSS above the final RSS and the query
/// latency.
fn merge_backfill(dir: &Path, args: &TaskQueryArgs) -> Result<serde_json::Value> {
    let now = T0 + (args.days as i64) * DAY - 1;
    let cache = TaskCache::open(dir, now).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nodes: Vec<String> = (0..NODES).map(|i| format!("node{i}")).collect();
    let rss_before = process_rss_mib("self");
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (merged, mut query_ms) = std::thread::scope(|scope| {
        let querier = scope.spawn(|| {
            let mut samples = Vec::new();
            let filter = TaskFilter::default();
            while !stop.load(Ordering::Relaxed) {
                time_ms(&mut samples, || cache.query(&filter).tasks.len());
                #[allow(clippy::disallowed_methods)] // reason: paces a plain thread, no runtime
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            samples
        });
        let merged = (|| {
            let remotes: Vec<usize> = (0..args.remotes).collect();
            for group in remotes.chunks(args.merge_group.max(1)) {
                let writes: Vec<TaskWrite> = group
                    .iter()
                    .map(|&r| backfill_batch(r, args, &nodes))
                    .collect();
                cache.store(&writes).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            cache.apply().map_err(|e| anyhow::anyhow!("{e}"))
        })();
        stop.store(true, Ordering::Relaxed);
        (merged, querier.join().unwrap_or_default())
    });
    merged?;
    let merge_s = started.elapsed().as_secs_f64();
    let tasks = cache.len();
    let (rss_after, peak) = (process_rss_mib("self"), process_peak_rss_mib("self"));
    Ok(json!({
        "merge_tasks": tasks,
        "merge_group": args.merge_group,
        "merge_s": round(merge_s, 1),
        "merge_rss_growth_mib": round(rss_after - rss_before, 1),
        "merge_peak_rss_growth_mib": round(peak - rss_after, 1),
        "merge_queries": query_ms.len(),
        "merge_query_p99_ms": round(percentile(&mut query_ms, 99.0), 3),
        "merge_query_max_ms": round(percentile(&mut query_ms, 100.0), 3),
    }))
}

/// Runs the merge measurement in a fresh process and returns its figures.
fn merge_in_child(args: &TaskQueryArgs, dir: &Path) -> Result<serde_json::Value> {
    eprintln!(
        "merging the same tasks into an empty cache in {} (child process)",
        dir.display()
    );
    let output = Command::new(std::env::current_exe()?)
        .arg("task-query")
        .args(["--remotes", &args.remotes.to_string()])
        .args(["--tasks-per-day", &args.tasks_per_day.to_string()])
        .args(["--days", &args.days.to_string()])
        .args(["--merge-group", &args.merge_group.to_string()])
        .arg("--dir")
        .arg(dir)
        .arg("--merge-only")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting the merge child")?;
    let _ = std::fs::remove_dir_all(dir);
    if !output.status.success() {
        bail!("the merge measurement failed: {}", output.status);
    }
    serde_json::from_slice(&output.stdout).context("reading the merge child's figures")
}

fn time_ms(samples: &mut Vec<f64>, f: impl FnOnce() -> usize) -> usize {
    let started = Instant::now();
    let n = f();
    samples.push(started.elapsed().as_secs_f64() * 1e3);
    n
}

/// The `task-query` scenario.
pub(crate) fn run(args: TaskQueryArgs) -> Result<serde_json::Value> {
    if args.remotes == 0 || args.tasks_per_day == 0 || args.days == 0 {
        bail!("--remotes, --tasks-per-day and --days must be at least 1");
    }
    let (dir, remove_after) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => {
            let d =
                std::env::temp_dir().join(format!("fleetpoll-task-query-{}", std::process::id()));
            (d, true)
        }
    };
    if args.build_only {
        build(&dir, &args)?;
        return Ok(json!({ "scenario": "task-query", "built": dir }));
    }
    if args.merge_only {
        return merge_backfill(&dir, &args);
    }
    let expected = args.remotes * args.tasks_per_day * args.days;
    let build_s = if dir.join("active.jsonl").exists() {
        eprintln!("using the cache in {}", dir.display());
        None
    } else {
        eprintln!(
            "building {expected} tasks in {} (child process)",
            dir.display()
        );
        let started = Instant::now();
        let status = Command::new(std::env::current_exe()?)
            .arg("task-query")
            .args(["--remotes", &args.remotes.to_string()])
            .args(["--tasks-per-day", &args.tasks_per_day.to_string()])
            .args(["--days", &args.days.to_string()])
            .arg("--dir")
            .arg(&dir)
            .arg("--build-only")
            .stdout(std::process::Stdio::null())
            .status()
            .context("starting the build child")?;
        if !status.success() {
            bail!("building the cache failed: {status}");
        }
        Some(started.elapsed().as_secs_f64())
    };
    let disk_bytes: u64 = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    let rss_before = rss_bytes();
    let started = Instant::now();
    let cache = TaskCache::open_read_only(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let open_s = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let tasks = cache.len();
    let from_snapshot = cache.loaded_from_snapshot();
    if !cache.problems().is_empty() {
        bail!("the cache reported problems: {:?}", cache.problems());
    }
    eprintln!("opened {tasks} tasks in {open_s:.2} s");
    let bytes_per_task = rss_after.saturating_sub(rss_before) as f64 / tasks.max(1) as f64;

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut remote_ms, mut running_ms, mut since_ms) = (Vec::new(), Vec::new(), Vec::new());
    let span = (args.days as i64) * DAY;
    let mut running_total = 0;
    for _ in 0..args.samples {
        let remote = RemoteId::new(format!("remote-{:04}", rng.random_range(0..args.remotes)));
        let filter = TaskFilter {
            remote: Some(remote),
            ..TaskFilter::default()
        };
        let n = time_ms(&mut remote_ms, || cache.query(&filter).tasks.len());
        if n != args.tasks_per_day.min(50) {
            bail!("remote query returned {n} tasks");
        }
        let filter = TaskFilter {
            running_only: true,
            ..TaskFilter::default()
        };
        running_total = 0;
        time_ms(&mut running_ms, || {
            let page = cache.query(&filter);
            running_total = page.total;
            page.tasks.len()
        });
        let filter = TaskFilter {
            since: Some(T0 + rng.random_range(0..span)),
            ..TaskFilter::default()
        };
        time_ms(&mut since_ms, || cache.query(&filter).tasks.len());
    }
    drop(cache);
    // What an open costs when the snapshot cannot be used (none yet, stale, damaged):
    // every data file decoded.
    let snapshot = dir.join(fleetpoll::tasks::SNAPSHOT);
    let open_files_s = if snapshot.exists() {
        let aside = dir.join("snapshot.bench-aside");
        std::fs::rename(&snapshot, &aside)?;
        let started = Instant::now();
        let cache = TaskCache::open_read_only(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let s = started.elapsed().as_secs_f64();
        if cache.len() != tasks {
            bail!(
                "the open without snapshot found {} tasks, not {tasks}",
                cache.len()
            );
        }
        drop(cache);
        std::fs::rename(&aside, &snapshot)?;
        Some(round(s, 2))
    } else {
        None
    };
    if remove_after {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let merge_dir =
        std::env::temp_dir().join(format!("fleetpoll-task-merge-{}", std::process::id()));
    let merge = merge_in_child(&args, &merge_dir)?;
    let p99 = |s: &mut Vec<f64>| round(percentile(s, 99.0), 3);
    let p50 = |s: &mut Vec<f64>| round(percentile(s, 50.0), 3);
    let mut figures = json!({
        "scenario": "task-query",
        "remotes": args.remotes,
        "tasks_per_day": args.tasks_per_day,
        "days": args.days,
        "tasks": tasks,
        "running": running_total,
        "samples": args.samples,
        "build_s": build_s.map(|s| round(s, 1)),
        "disk_mib": round(disk_bytes as f64 / (1024.0 * 1024.0), 1),
        "open_s": round(open_s, 2),
        "opened_from_snapshot": from_snapshot,
        "open_without_snapshot_s": open_files_s,
        "bytes_per_task": round(bytes_per_task, 1),
        "p50_remote_ms": p50(&mut remote_ms),
        "p99_remote_ms": p99(&mut remote_ms),
        "p50_running_ms": p50(&mut running_ms),
        "p99_running_ms": p99(&mut running_ms),
        "p50_since_ms": p50(&mut since_ms),
        "p99_since_ms": p99(&mut since_ms),
    });
    if let (Some(all), Some(merge)) = (figures.as_object_mut(), merge.as_object()) {
        all.extend(merge.clone());
    }
    Ok(figures)
}

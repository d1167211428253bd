//! Scenario `export`: the `fleet` scenario's remotes with two exporters — Prometheus
//! remote write and InfluxDB line protocol over HTTP, distinct prefixes — into a real
//! VictoriaMetrics on loopback (`victoria-metrics` must be installed).
//!
//! Three engines poll the same simulated fleet in turn: a backfill cycle (cursors
//! `--backfill-secs` old) with the exporters, whose drops are `backfill_dropped`; a
//! regular cycle (`--since-secs`, as `fleet`) with fresh exporters, measured from the
//! cycle's start until both have sent everything; the same regular cycle without
//! exporters, the baseline. `export_cpu_us_per_point` is the CPU the exporters added,
//! per point exported (both exporters' points together); `lag_p99_ms` is the
//! point-weighted 99th percentile from a batch being stored to VictoriaMetrics
//! acknowledging it (its `/api/v1/export` reads a point at once after that).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fleetpoll::engine::{Clock, Engine, TokioClock};
use fleetpoll::export::Exporters;
use fleetpoll_actors::testing::{MemoryMetricStore, MemoryTaskStore};
use serde_json::json;
use tokio::time::Instant;

use crate::fleet::{fleet_config, start_sim, FleetArgs, SimProcess};
use crate::measure::{cpu_time, process_cpu_secs, round};

/// Flags of the `export` scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// How far back the backfill cycle reaches.
    #[arg(long, default_value_t = 1200)]
    backfill_secs: i64,
    /// Each exporter's `queue_max_points`.
    #[arg(long, default_value_t = 2_000_000)]
    queue_max_points: usize,
    /// Each exporter's `batch_max_points`.
    #[arg(long, default_value_t = 10_000)]
    batch_max_points: usize,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.get(9..12)?.parse().ok()
}

/// VictoriaMetrics on a free port with data under `dir`.
fn start_victoria(dir: &Path) -> anyhow::Result<(SimProcess, u16)> {
    let port = free_port()?;
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting victoria-metrics (apt-get install victoria-metrics)")?;
    let vm = SimProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(port, "/health") != Some(200) {
        if Instant::now() > deadline {
            bail!("VictoriaMetrics did not become healthy within 30 s");
        }
        #[allow(clippy::disallowed_methods)] // reason: a plain thread polling another process
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((vm, port))
}

/// What one cycle did.
struct Cycle {
    /// From the cycle's start until every poll was stored (the export not waited for).
    cycle_s: f64,
    cpu_s: f64,
    wall_s: f64,
    polled_points: u64,
    exported: u64,
    dropped: u64,
    lag_p99_ms: Option<u64>,
}

async fn one_cycle(
    args: &ExportArgs,
    remotes: &[crate::fleet::SimRemote],
    vm_port: u16,
    since_secs: i64,
    with_exporters: bool,
) -> anyhow::Result<Cycle> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let metrics = MemoryMetricStore::new();
    let fleet = FleetArgs {
        since_secs,
        ..args.fleet.clone()
    };
    let config = fleet_config(&fleet, remotes, &metrics, clock.clone())?;
    let text = format!(
        "[[exporters]]\nname = \"rw\"\nkind = \"prometheus-remote-write\"\n\
         url = \"http://127.0.0.1:{vm_port}/api/v1/write\"\nprefix = \"fprw\"\n\
         queue_max_points = {q}\nbatch_max_points = {b}\n\n\
         [[exporters]]\nname = \"influx\"\nkind = \"influxdb\"\n\
         url = \"http://127.0.0.1:{vm_port}/write?db=bench\"\nprefix = \"fpih\"\n\
         queue_max_points = {q}\nbatch_max_points = {b}\n",
        q = args.queue_max_points,
        b = args.batch_max_points
    );
    let file = Path::new("bench-export.toml");
    let parsed = fleetpoll::config::parse(file, &text)?;
    let specs = if with_exporters {
        fleetpoll::config::resolve_exporters(file, &parsed.exporters, "bench")?
    } else {
        Vec::new()
    };
    let (exporters, builder) = Exporters::register(&specs, Engine::builder(config));
    let engine = builder
        .metric_store(metrics.clone())
        .task_store(MemoryTaskStore::new())
        .clock(clock)
        .start()
        .await
        .context("starting the engine")?;
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let report = engine.cycle(true).await?;
    let cycle_s = t0.elapsed().as_secs_f64();
    if let Some((id, Err(e))) = report.results.iter().find(|(_, r)| r.is_err()) {
        bail!("remote {id} failed: {e}");
    }
    // Until both exporters hold nothing (the hooks' queues included).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let st = exporters.status(&engine);
        if st.iter().all(|s| s.queued == 0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the exporters did not drain within 600 s: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = (cpu_time() - cpu0).as_secs_f64();
    let st = exporters.status(&engine);
    let lag_p99_ms = ["rw", "influx"]
        .iter()
        .filter_map(|n| exporters.stats(n)?.lag_p99_ms())
        .max();
    let polled_points = metrics.total_points();
    engine.shutdown(Duration::from_secs(30)).await?;
    if let Some(e) = st.iter().find_map(|s| s.last_error.clone()) {
        eprintln!("export: an exporter reported: {e}");
    }
    Ok(Cycle {
        cycle_s,
        cpu_s,
        wall_s,
        polled_points,
        exported: st.iter().map(|s| s.sent).sum(),
        dropped: st.iter().map(|s| s.dropped).sum(),
        lag_p99_ms,
    })
}

pub(crate) fn run(args: ExportArgs) -> anyhow::Result<serde_json::Value> {
    // The simulator runs until the end of the scenario.
    let (_sim, remotes) = start_sim(&args.fleet)?;
    let data = tempfile::tempdir()?;
    let (vm, vm_port) = start_victoria(data.path())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let vm_pid = vm.0.id().to_string();

    eprintln!("export: backfill cycle ({} s)", args.backfill_secs);
    let backfill = rt.block_on(one_cycle(
        &args,
        &remotes,
        vm_port,
        args.backfill_secs,
        true,
    ))?;
    eprintln!(
        "export: backfill exported {} points, dropped {}, in {:.1} s",
        backfill.exported, backfill.dropped, backfill.wall_s
    );
    eprintln!(
        "export: regular cycle ({} s) with exporters",
        args.fleet.since_secs
    );
    let vm_cpu0 = process_cpu_secs(&vm_pid);
    let regular = rt.block_on(one_cycle(
        &args,
        &remotes,
        vm_port,
        args.fleet.since_secs,
        true,
    ))?;
    let vm_cpu = process_cpu_secs(&vm_pid) - vm_cpu0;
    eprintln!("export: the same cycle without exporters");
    let baseline = rt.block_on(one_cycle(
        &args,
        &remotes,
        vm_port,
        args.fleet.since_secs,
        false,
    ))?;
    let extra = (regular.cpu_s
        - baseline.cpu_s * regular.polled_points as f64 / baseline.polled_points.max(1) as f64)
        .max(0.0);
    let per_point = extra * 1e6 / regular.exported.max(1) as f64;
    eprintln!(
        "export: regular cycle {} points exported, cpu {:.2} s vs {:.2} s without, lag p99 {:?} ms",
        regular.exported, regular.cpu_s, baseline.cpu_s, regular.lag_p99_ms
    );
    drop(vm);
    Ok(json!({
        "scenario": "export",
        "remotes": args.fleet.remotes,
        "since_secs": args.fleet.since_secs,
        "backfill_secs": args.backfill_secs,
        "points": regular.exported,
        "polled_points": regular.polled_points,
        "export_cpu_us_per_point": round(per_point, 4),
        "lag_p99_ms": regular.lag_p99_ms,
        "dropped": regular.dropped,
        "backfill_dropped": backfill.dropped,
        "backfill_points": backfill.exported,
        "cycle_s": round(regular.cycle_s, 3),
        "baseline_cycle_s": round(baseline.cycle_s, 3),
        "regular_wall_s": round(regular.wall_s, 3),
        "baseline_wall_s": round(baseline.wall_s, 3),
        "cpu_s": round(regular.cpu_s, 3),
        "baseline_cpu_s": round(baseline.cpu_s, 3),
        "victoria_cpu_s": round(vm_cpu, 3),
        "queue_max_points": args.queue_max_points,
    }))
}

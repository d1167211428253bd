//! Scenario `e2e`: the product as deployed. `fleetpoll sim` and `fleetpoll run` run as
//! separate processes; the daemon's config comes from `sim --write-config`. Two full
//! cycles are started through the API (`{"cycle": true}`: what a scheduler tick runs
//! when the task lists fall due — scheduled lane, each remote's task lists right after
//! its metric poll over the same connection) and waited for, while another thread
//! measures the API's latency for a task page and an hour of a node's metrics. The
//! simulator's clock starts `--lag-secs` (one collection interval) behind real time:
//! the first cycle backfills an empty store against it; then the daemon's kept-alive
//! connections time out, the simulator catches up (SIGHUP), and the second, regular,
//! cycle moves a whole interval's worth of generations, none of them in the future —
//! the production cycle. Each is reported against the latency-bound floor of the
//! requests a full cycle cannot avoid — `ceil(requests / concurrency) × (latency +
//! rtt)`, where a PVE cluster needs its metric export, one task list per node and its
//! node list when the one it keeps has expired (the backfill; the regular cycle comes
//! within the list's 600 s), a PBS its metrics and its task list, plus
//! `ceil(remotes / concurrency) × 2 × rtt` for the TCP and TLS handshakes of one new
//! connection per remote — with the daemon's CPU time per stored point, its peak
//! memory, and both latencies' p99. The simulator serves every node on its own address
//! with its own certificate; `--rtt-ms` adds a round-trip time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::measure::{percentile, process_cpu_secs, process_peak_rss_mib, process_rss_mib, round};

/// Flags of the `e2e` scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct E2eArgs {
    /// Number of simulated remotes (a third of them PBS).
    #[arg(long, default_value_t = 1000)]
    remotes: usize,
    /// The simulator's reply latency in milliseconds: each remote's time to answer
    /// (the `latency` fault), paid once per request.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// The simulator's round-trip time in milliseconds (`fleetpoll sim --rtt-ms`): paid
    /// by the TCP and TLS handshakes of every new connection and by every request.
    #[arg(long, default_value_t = 0)]
    rtt_ms: u64,
    /// The daemon's global connection cap.
    #[arg(long, default_value_t = 20)]
    concurrency: u32,
    /// Nodes per PVE cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Guests per PVE cluster.
    #[arg(long, default_value_t = 10)]
    guests: usize,
    /// How far the simulator's clock starts behind real time, in seconds: what the
    /// regular cycle moves after the backfill (default: the default collection
    /// interval, 600 s).
    #[arg(long, default_value_t = 600)]
    lag_secs: u64,
    /// After the regular cycle, how long every remote is made unreachable (the
    /// simulator's outage, SIGUSR1 … SIGUSR2) before `recovery_s` is measured; 0 skips it.
    #[arg(long, default_value_t = 60)]
    outage_secs: u64,
}

pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).context("connecting to the API")?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub(crate) fn binary() -> anyhow::Result<std::path::PathBuf> {
    let bin = std::env::current_exe()?.with_file_name("fleetpoll");
    if !bin.exists() {
        bail!(
            "{} is missing; build it first: cargo build --release --bin fleetpoll",
            bin.display()
        );
    }
    Ok(bin)
}

pub(crate) fn wait_for(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting until {what}");
        }
        #[allow(clippy::disallowed_methods)] // reason: a plain thread polling other processes
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Starts `sim` (a `fleetpoll sim` command with its fleet flags) writing its config to
/// `config`, and waits up to `limit` until it has.
pub(crate) fn sim_writing_config(
    mut sim: Command,
    config: &std::path::Path,
    limit: Duration,
) -> anyhow::Result<Proc> {
    let proc = Proc(
        sim.arg("--write-config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting fleetpoll sim")?,
    );
    wait_for(limit, "the simulator wrote its config", || config.exists())?;
    Ok(proc)
}

pub(crate) fn run(args: E2eArgs) -> anyhow::Result<Value> {
    let bin = binary()?;
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let config = dir.path().join("fleet.toml");
    let pbs = args.remotes / 3;
    let mut sim = Command::new(&bin);
    sim.args(["sim", "--port", "0", "--seed", "1"])
        .args([
            "--pve",
            &(args.remotes - pbs).to_string(),
            "--pbs",
            &pbs.to_string(),
        ])
        .args([
            "--nodes",
            &args.nodes.to_string(),
            "--guests",
            &args.guests.to_string(),
        ])
        .args(["--fault", &format!("latency={}", args.latency_ms)])
        .args(["--rtt-ms", &args.rtt_ms.to_string()])
        .args(["--clock-behind-secs", &args.lag_secs.to_string()]);
    let sim = sim_writing_config(sim, &config, Duration::from_secs(60))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    prepare_config(&config, port, args.concurrency)?;
    let daemon = Proc(
        Command::new(&bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting fleetpoll run")?,
    );
    let pid = daemon.0.id().to_string();
    wait_for(Duration::from_secs(60), "the API answers", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;

    // The first cycle finds an empty store: 30 minutes of metric history and 7 days of
    // tasks per remote (the backfill), against the lagging simulator.
    let backfill = measured_cycle(port, &pid)?;
    let rss_after_backfill = process_rss_mib(&pid);
    // As after a real interval, no connection is still kept alive for the next cycle.
    #[allow(clippy::disallowed_methods)] // reason: a plain thread waits out the idle timeout
    std::thread::sleep(fleetpoll::remote::IDLE_TIMEOUT + Duration::from_secs(1));
    // The simulator catches up: the regular cycle moves the lag's generations.
    let sim_pid = sim.0.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &sim_pid]).status()?;
    if !hup.success() {
        bail!("kill -HUP {sim_pid} failed: {hup}");
    }
    #[allow(clippy::disallowed_methods)] // reason: let the simulator take the signal
    std::thread::sleep(Duration::from_millis(200));
    let regular = measured_cycle(port, &pid)?;
    let rss_mib = process_peak_rss_mib(&pid);
    let rss_after_regular = process_rss_mib(&pid);
    let recovery = if args.outage_secs > 0 {
        Some(crate::recovery::measure(
            port,
            sim.0.id(),
            Duration::from_secs(args.outage_secs),
        )?)
    } else {
        None
    };
    // The bound of the issue: one collection interval (the default 600 s; the canary
    // period does not depend on the benchmark's day-long interval) plus the cycle.
    let recovery_target = 600.0 + regular.seconds;
    let latency = args.latency_ms as f64 / 1000.0;
    let rtt = args.rtt_ms as f64 / 1000.0;
    let concurrency = args.concurrency as usize;
    // What a full cycle cannot do with fewer requests: a cluster's node list can be kept
    // between cycles, its nodes' task lists cannot be merged into one request. Every
    // request pays one round trip; every remote at least one new connection (TCP and
    // TLS handshakes, a round trip each), since no connection serves two remotes.
    let requests = (args.remotes - pbs) * (1 + args.nodes) + pbs * 2;
    let handshakes = args.remotes.div_ceil(concurrency) as f64 * 2.0 * rtt;
    let ideal = requests.div_ceil(concurrency) as f64 * (latency + rtt) + handshakes;
    // The backfill lists each cluster's nodes too: no node list is kept yet.
    let backfill_requests = requests + (args.remotes - pbs);
    let backfill_ideal =
        backfill_requests.div_ceil(concurrency) as f64 * (latency + rtt) + handshakes;
    // The regular cycle's generations: how far it moved each remote's cursor, at 10 s.
    let mut moved: Vec<f64> = regular
        .cursors
        .iter()
        .filter_map(|(remote, after)| Some((after - backfill.cursors.get(remote)?) as f64 / 10.0))
        .collect();
    let generations = percentile(&mut moved, 50.0);
    // The metrics-only floor (one request per remote), as in the `fleet` scenario.
    let ideal_metrics_only = args.remotes.div_ceil(concurrency) as f64 * (latency + 3.0 * rtt);
    Ok(json!({
        "scenario": "e2e",
        "remotes": args.remotes,
        "latency_ms": args.latency_ms,
        "rtt_ms": args.rtt_ms,
        "concurrency": args.concurrency,
        "lag_s": args.lag_secs,
        "requests_min": requests,
        "ideal_s": round(ideal, 3),
        "ideal_metrics_only_s": round(ideal_metrics_only, 3),
        "backfill_requests_min": backfill_requests,
        "backfill_ideal_s": round(backfill_ideal, 3),
        "backfill_cycle_s": round(backfill.seconds, 3),
        "backfill_ratio": round(backfill.seconds / backfill_ideal, 4),
        "backfill_daemon_cpu_s": round(backfill.cpu, 2),
        "backfill_points": backfill.points,
        "backfill_daemon_cpu_us_per_point": round(backfill.cpu_us_per_point(), 3),
        "backfill_api_tasks_p99_ms": round(backfill.tasks_p99, 3),
        "backfill_api_rrd_p99_ms": round(backfill.rrd_p99, 3),
        "cycle_s": round(regular.seconds, 3),
        "ratio": round(regular.seconds / ideal, 4),
        "ratio_vs_metrics_only": round(regular.seconds / ideal_metrics_only, 4),
        "daemon_cpu_s": round(regular.cpu, 2),
        "regular_points": regular.points,
        "regular_generations_median": round(generations, 1),
        "daemon_cpu_us_per_point": round(regular.cpu_us_per_point(), 3),
        "api_tasks_p99_ms": round(regular.tasks_p99, 3),
        "api_rrd_p99_ms": round(regular.rrd_p99, 3),
        "api_samples": regular.samples,
        "daemon_rss_mib": round(rss_mib, 1),
        "daemon_rss_after_backfill_mib": round(rss_after_backfill, 1),
        "daemon_rss_after_regular_mib": round(rss_after_regular, 1),
        "outage_s": args.outage_secs,
        "recovery_s": recovery.as_ref().map(|r| round(r.seconds, 2)),
        "recovery_longest_backoff_left_s": recovery.as_ref().map(|r| r.longest_wait_s),
        "recovery_target_s": round(recovery_target, 1),
    }))
}

/// What one cycle cost.
struct Cycle {
    seconds: f64,
    cpu: f64,
    /// Metric points the cycle stored.
    points: u64,
    /// Each remote's cursor (newest stored point) after the cycle.
    cursors: std::collections::HashMap<String, i64>,
    tasks_p99: f64,
    rrd_p99: f64,
    samples: usize,
}

impl Cycle {
    fn cpu_us_per_point(&self) -> f64 {
        if self.points == 0 {
            return 0.0;
        }
        self.cpu * 1e6 / self.points as f64
    }
}

/// Runs one full cycle (metrics and task lists of every remote, waited for through the
/// API) while another thread probes the API's latency.
fn measured_cycle(port: u16, pid: &str) -> anyhow::Result<Cycle> {
    let running = Arc::new(AtomicBool::new(true));
    let probe_flag = running.clone();
    let prober = std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let (mut tasks, mut rrd) = (Vec::new(), Vec::new());
        while probe_flag.load(Ordering::Relaxed) {
            let t = Instant::now();
            request(port, "GET", "/api/v1/tasks?limit=50", "")?;
            tasks.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            request(
                port,
                "GET",
                "/api/v1/rrd/pve-1/node/pve-1-n1?timeframe=hour&cf=AVERAGE",
                "",
            )?;
            rrd.push(t.elapsed().as_secs_f64() * 1000.0);
            #[allow(clippy::disallowed_methods)] // reason: pacing a plain probe thread
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((tasks, rrd))
    });
    let cpu0 = process_cpu_secs(pid);
    let t0 = Instant::now();
    let answer = request(
        port,
        "POST",
        "/api/v1/collect",
        r#"{"cycle":true,"wait":true}"#,
    );
    let seconds = t0.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    let cpu = process_cpu_secs(pid) - cpu0;
    let (status, body) = answer?;
    if status != 200 {
        bail!("the cycle: HTTP {status}: {body}");
    }
    let v: Value = serde_json::from_str(&body).context("the API's JSON")?;
    for part in ["results", "task_results"] {
        let results = v[part].as_array().map(Vec::as_slice).unwrap_or_default();
        let stored = |x: &&Value| x["ok"] == true && x["result"]["outcome"] == "stored";
        let failed: Vec<&Value> = results.iter().filter(|x| !stored(x)).collect();
        if results.is_empty() || !failed.is_empty() {
            bail!(
                "the cycle's {part}: {} of {} remotes not stored, e.g. {}",
                failed.len(),
                results.len(),
                failed.first().map_or(String::new(), |x| x.to_string())
            );
        }
    }
    let results = v["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let points = results
        .iter()
        .filter_map(|x| x["result"]["points"].as_u64())
        .sum();
    let cursors = results
        .iter()
        .filter_map(|x| {
            Some((
                x["remote"].as_str()?.to_string(),
                x["result"]["cursor"].as_i64()?,
            ))
        })
        .collect();
    let (mut tasks_ms, mut rrd_ms) = prober
        .join()
        .map_err(|_| anyhow::anyhow!("probe panicked"))??;
    Ok(Cycle {
        seconds,
        cpu,
        points,
        cursors,
        samples: tasks_ms.len(),
        tasks_p99: percentile(&mut tasks_ms, 99.0),
        rrd_p99: percentile(&mut rrd_ms, 99.0),
    })
}

/// Points the written config at our API port and connection cap; nothing time-driven
/// runs during the measurement (daily intervals), so the cycles are the ones we start.
pub(crate) fn prepare_config(path: &Path, port: u16, concurrency: u32) -> anyhow::Result<()> {
    let mut config = fleetpoll::config::load(path)?;
    config.api.listen = format!("127.0.0.1:{port}");
    config.limits.global_connections = concurrency;
    let day = Duration::from_secs(86_400);
    config.collection.interval = day;
    config.collection.start_offset_max = Duration::ZERO;
    config.collection.connection_delay_max = Duration::ZERO;
    config.tasks.tick = day;
    config.tasks.running_interval = day;
    config.tasks.full_interval = day;
    let text = toml::to_string(&config).context("serializing the benchmark's config")?;
    std::fs::write(path, text)?;
    Ok(())
}

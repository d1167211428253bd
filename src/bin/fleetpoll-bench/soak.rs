//! Scenario `soak`: the daemon (`fleetpoll run`) against a simulated fleet
//! (`fleetpoll sim`), both as processes, for many short collection cycles, with a
//! rules file and a statsd exporter on. Most remotes are healthy; the rest carry one
//! fault each — 10 % hang, 10 % answer 500 at random, 5 % send malformed or oversized
//! replies, 5 % present a wrong certificate, a few have a clock a day ahead, a few
//! Prometheus targets exceed their `series_limit`. The same fleet without faults runs
//! first as the baseline (its own simulator and daemon, same seed, same config
//! otherwise), and with `--rounds N` the two alternate. A watcher reads
//! `GET /api/v1/remotes` twice a second to see every collection (`soak_watch`).
//!
//! Figures: `healthy_collected_pct` (the share of (healthy remote, cycle) pairs
//! collected within their cycle), `healthy_ratio` (the mean time from a cycle's tick
//! until its last healthy remote is stored, faulty fleet against baseline),
//! `misclassified` (failures of a faulty remote whose error class is not its fault's),
//! `rss_growth_mib` and `fd_growth` of the faulty daemon from after the warm-up to
//! the end (with `rss_by_cycle_mib`, its RSS once per cycle, and
//! `rss_growth_halves_mib`, the growth in the first and second half of the measured
//! cycles, to tell a plateau from a leak), `escaped_panics` (`panicked` lines of the daemon's stderr beyond the
//! restarts the supervision tree accounts for, plus one if the daemon exited).
//! `tests/soak.rs` runs this scenario small and asserts the targets.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::e2e::{binary, request, sim_writing_config, wait_for, Proc};
use crate::measure::round;
use crate::soak_watch::{self, Expect, Phase};

/// Flags of the `soak` scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Number of simulated remotes: half PVE clusters, 30 % PBS, 20 % Prometheus targets.
    #[arg(long, default_value_t = 500)]
    remotes: usize,
    /// How long the faulty fleet is watched per round, warm-up included, in seconds.
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// How long the fault-free baseline is watched per round, warm-up included.
    #[arg(long, default_value_t = 180)]
    baseline_secs: u64,
    /// Rounds of baseline then faulty fleet (alternating).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// The collection interval in seconds (cycles start on its wall-clock multiples).
    #[arg(long, default_value_t = 15)]
    interval_secs: u64,
    /// Cycles at the start of each phase not measured (and the RSS / fd reference).
    #[arg(long, default_value_t = 3)]
    warmup_cycles: u64,
    /// The daemon's global connection cap.
    #[arg(long, default_value_t = 128)]
    concurrency: u32,
    /// The daemon's request timeout in seconds (what a hanging remote costs).
    #[arg(long, default_value_t = 3)]
    request_timeout_secs: u64,
    /// Every remote's time to answer a request, in milliseconds.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// The simulator's round-trip time in milliseconds (`fleetpoll sim --rtt-ms`).
    #[arg(long, default_value_t = 20)]
    rtt_ms: u64,
    /// Nodes per PVE cluster.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Guests per PVE cluster.
    #[arg(long, default_value_t = 5)]
    guests: usize,
    /// Seed of the simulator and of which remote gets which fault.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The daemon's reply-size cap in the soak: above a backfill's metric export, below
/// what the `oversize` remotes send.
const BODY_CAP_MIB: u64 = 8;

/// The fault a remote carries in the faulty phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Planted {
    Hang,
    ErrorRate,
    Malformed,
    Oversize,
    WrongCert,
    ClockAhead,
    SeriesLimit,
}

impl Planted {
    /// The simulator's `--fault` spec for `remote`, if the fault is the simulator's.
    fn sim_spec(self, remote: &str) -> Option<String> {
        let kind = match self {
            Planted::Hang => "hang".to_string(),
            Planted::ErrorRate => "error-rate=0.5".to_string(),
            Planted::Malformed => "malformed".to_string(),
            // Past the daemon's body cap (set below), below the simulator's default.
            Planted::Oversize => format!("oversize={}", (BODY_CAP_MIB + 8) << 20),
            Planted::WrongCert => "wrong-cert".to_string(),
            Planted::ClockAhead => "skew=86400".to_string(),
            // The daemon's side: a `series_limit` below what the target exports.
            Planted::SeriesLimit => return None,
        };
        Some(format!("{kind}@{remote}"))
    }

    /// The error classes (as `GET /api/v1/remotes` names them) its failures belong to.
    pub(crate) fn classes(self) -> &'static [&'static str] {
        match self {
            Planted::Hang => &["timeout"],
            Planted::ErrorRate => &["remote"],
            Planted::Malformed | Planted::Oversize | Planted::SeriesLimit => &["bad_reply"],
            Planted::WrongCert => &["tls"],
            Planted::ClockAhead => &["clock"],
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Planted::Hang => "hang",
            Planted::ErrorRate => "error_rate",
            Planted::Malformed => "malformed",
            Planted::Oversize => "oversize",
            Planted::WrongCert => "wrong_cert",
            Planted::ClockAhead => "clock_ahead",
            Planted::SeriesLimit => "series_limit",
        }
    }
}

/// Which remotes exist and which fault each faulty one carries.
pub(crate) struct Plan {
    pve: usize,
    pbs: usize,
    prom: usize,
    pub(crate) faults: HashMap<String, Planted>,
}

impl Plan {
    fn new(remotes: usize, seed: u64) -> Plan {
        let pbs = remotes * 3 / 10;
        let prom = remotes / 5;
        let pve = remotes - pbs - prom;
        let share = |pct: usize| (remotes * pct).div_ceil(100);
        let few = remotes.div_ceil(100);
        // The faults of the API remotes, spread over PVE and PBS by a seeded shuffle.
        let mut api: Vec<String> = (1..=pve)
            .map(|i| format!("pve-{i}"))
            .chain((1..=pbs).map(|i| format!("pbs-{i}")))
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        api.shuffle(&mut rng);
        let bad = share(5);
        let kinds = [
            (Planted::Hang, share(10)),
            (Planted::ErrorRate, share(10)),
            (Planted::Malformed, bad.div_ceil(2)),
            (Planted::Oversize, bad / 2),
            (Planted::WrongCert, share(5)),
            (Planted::ClockAhead, few),
        ];
        let mut faults = HashMap::new();
        let mut next = api.into_iter();
        for (kind, n) in kinds {
            for remote in next.by_ref().take(n) {
                faults.insert(remote, kind);
            }
        }
        for i in 1..=few.min(prom) {
            faults.insert(format!("prom-{i}"), Planted::SeriesLimit);
        }
        Plan {
            pve,
            pbs,
            prom,
            faults,
        }
    }

    fn count(&self, kind: Planted) -> usize {
        self.faults.values().filter(|k| **k == kind).count()
    }
}

pub(crate) fn run(args: SoakArgs) -> anyhow::Result<Value> {
    let plan = Plan::new(args.remotes, args.seed);
    let mut baselines = Vec::new();
    let mut faulty = Vec::new();
    for round in 0..args.rounds.max(1) {
        eprintln!("soak: round {round}: baseline (no faults)");
        baselines.push(run_phase(&args, &plan, false, args.baseline_secs)?);
        eprintln!("soak: round {round}: faulty fleet");
        faulty.push(run_phase(&args, &plan, true, args.duration_secs)?);
    }
    Ok(report(&args, &plan, &baselines, &faulty))
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn report(args: &SoakArgs, plan: &Plan, baselines: &[Phase], faulty: &[Phase]) -> Value {
    let base_cycles: Vec<f64> = baselines
        .iter()
        .flat_map(|p| p.cycle_secs.clone())
        .collect();
    let fault_cycles: Vec<f64> = faulty.iter().flat_map(|p| p.cycle_secs.clone()).collect();
    let (base_mean, fault_mean) = (mean(&base_cycles), mean(&fault_cycles));
    let ratio = fault_mean / base_mean;
    let sum = |f: fn(&Phase) -> u64| faulty.iter().map(f).sum::<u64>();
    let (hits, expected) = (sum(|p| p.healthy_hits), sum(|p| p.healthy_expected));
    let collected_pct = if expected == 0 {
        0.0
    } else {
        100.0 * hits as f64 / expected as f64
    };
    let base_hits: u64 = baselines.iter().map(|p| p.healthy_hits).sum();
    let base_expected: u64 = baselines.iter().map(|p| p.healthy_expected).sum();
    let misclassified = sum(|p| p.misclassified);
    let escaped = sum(|p| p.escaped_panics);
    let rss = faulty
        .iter()
        .map(|p| p.rss_growth_mib)
        .fold(f64::MIN, f64::max);
    let fds = faulty.iter().map(|p| p.fd_growth).max().unwrap_or(0);
    // Where the growth happened: the first and the second half of each faulty phase's
    // measured cycles (growth that levels off lands in the first).
    let halves: Vec<[f64; 2]> = faulty
        .iter()
        .map(|p| {
            let s = &p.rss_by_cycle_mib;
            match (s.first(), s.get(s.len() / 2), s.last()) {
                (Some(a), Some(m), Some(z)) => [round(m - a, 2), round(z - m, 2)],
                _ => [f64::NAN; 2],
            }
        })
        .collect();
    let series: Vec<Vec<f64>> = faulty
        .iter()
        .map(|p| p.rss_by_cycle_mib.iter().map(|v| round(*v, 1)).collect())
        .collect();
    let mut failures_by_fault = serde_json::Map::new();
    for p in faulty {
        for (k, v) in &p.failures_by_fault {
            let e = failures_by_fault.entry(k.clone()).or_insert(json!(0));
            *e = json!(e.as_u64().unwrap_or(0) + v);
        }
    }
    let mut faults = serde_json::Map::new();
    for kind in [
        Planted::Hang,
        Planted::ErrorRate,
        Planted::Malformed,
        Planted::Oversize,
        Planted::WrongCert,
        Planted::ClockAhead,
        Planted::SeriesLimit,
    ] {
        faults.insert(kind.name().into(), json!(plan.count(kind)));
    }
    let targets = json!({
        "healthy_collected_pct": collected_pct >= 100.0,
        "healthy_ratio": ratio <= 1.10,
        "misclassified": misclassified == 0,
        "rss_growth_mib": rss <= 16.0,
        "fd_growth": fds <= 8,
        "escaped_panics": escaped == 0,
    });
    let met = targets
        .as_object()
        .map(|t| t.values().all(|v| v == true))
        .unwrap_or(false);
    json!({
        "scenario": "soak",
        "remotes": args.remotes,
        "pve": plan.pve, "pbs": plan.pbs, "prom": plan.prom,
        "healthy_remotes": args.remotes - plan.faults.len(),
        "faults": faults,
        "interval_s": args.interval_secs,
        "duration_s": args.duration_secs,
        "baseline_s": args.baseline_secs,
        "rounds": args.rounds.max(1),
        "concurrency": args.concurrency,
        "request_timeout_s": args.request_timeout_secs,
        "latency_ms": args.latency_ms,
        "rtt_ms": args.rtt_ms,
        "cycles_measured": fault_cycles.len(),
        "baseline_cycles_measured": base_cycles.len(),
        "healthy_collected_pct": round(collected_pct, 3),
        "healthy_pairs": expected,
        "baseline_collected_pct": round(100.0 * base_hits as f64 / base_expected.max(1) as f64, 3),
        "healthy_cycle_s": round(fault_mean, 3),
        "baseline_cycle_s": round(base_mean, 3),
        "healthy_ratio": round(ratio, 4),
        "misclassified": misclassified,
        "misclassified_examples": faulty.iter().flat_map(|p| p.misclassified_examples.clone()).take(5).collect::<Vec<_>>(),
        "faulty_failures_seen": Value::Object(failures_by_fault),
        "faulty_never_failed": faulty.iter().flat_map(|p| p.never_failed.clone()).collect::<Vec<_>>(),
        "healthy_failures": sum(|p| p.healthy_failures),
        "rss_growth_mib": round(rss, 2),
        "rss_growth_halves_mib": halves,
        "rss_by_cycle_mib": series,
        "fd_growth": fds,
        "escaped_panics": escaped,
        "panicked_lines": sum(|p| p.panicked_lines),
        "supervised_restarts": sum(|p| p.restarts),
        "alerts_firing": faulty.last().map_or(0, |p| p.alerts_firing),
        "statsd_datagrams": sum(|p| p.statsd_datagrams),
        "targets_met": targets,
        "all_targets_met": met,
    })
}

/// One simulator and one daemon, watched for `secs`.
fn run_phase(args: &SoakArgs, plan: &Plan, faults: bool, secs: u64) -> anyhow::Result<Phase> {
    let bin = binary()?;
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let config = dir.path().join("fleet.toml");
    let mut sim = Command::new(&bin);
    sim.args(["sim", "--port", "0", "--seed", &args.seed.to_string()])
        .args([
            "--pve",
            &plan.pve.to_string(),
            "--pbs",
            &plan.pbs.to_string(),
        ])
        .args(["--prom", &plan.prom.to_string()])
        .args(["--nodes", &args.nodes.to_string()])
        .args(["--guests", &args.guests.to_string()])
        .args(["--fault", &format!("latency={}", args.latency_ms)])
        .args(["--rtt-ms", &args.rtt_ms.to_string()]);
    if faults {
        let mut specs: Vec<String> = plan
            .faults
            .iter()
            .filter_map(|(remote, kind)| kind.sim_spec(remote))
            .collect();
        specs.sort();
        for spec in specs {
            sim.args(["--fault", &spec]);
        }
    }
    let _sim = sim_writing_config(sim, &config, Duration::from_secs(120))?;
    let statsd = UdpSocket::bind("127.0.0.1:0")?;
    let statsd_addr = statsd.local_addr()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    write_config(&config, args, plan, faults, port, &statsd_addr.to_string())?;
    let stderr_path = dir.path().join("daemon.stderr");
    let stderr = std::fs::File::create(&stderr_path)?;
    let mut daemon = Proc(
        Command::new(&bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting fleetpoll run")?,
    );
    let pid = daemon.0.id();
    wait_for(Duration::from_secs(60), "the API answers", || {
        request(port, "GET", "/api/v1/remotes", "").is_ok_and(|(s, _)| s == 200)
    })?;
    let datagrams = Arc::new(AtomicU64::new(0));
    let draining = Arc::new(AtomicBool::new(true));
    let drain = {
        let (datagrams, draining) = (datagrams.clone(), draining.clone());
        statsd.set_read_timeout(Some(Duration::from_millis(200)))?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while draining.load(Ordering::Relaxed) {
                if statsd.recv(&mut buf).is_ok() {
                    datagrams.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let expect = Expect {
        interval: args.interval_secs,
        warmup_cycles: args.warmup_cycles,
        faults: if faults {
            plan.faults.clone()
        } else {
            HashMap::new()
        },
        // The baseline's cycle time is that of the same healthy remotes.
        healthy_only_of: plan.faults.keys().cloned().collect(),
    };
    let watched = soak_watch::watch(port, pid, &expect, Duration::from_secs(secs));
    draining.store(false, Ordering::Relaxed);
    let _ = drain.join();
    let mut phase = watched?;
    phase.statsd_datagrams = datagrams.load(Ordering::Relaxed);
    if let Ok(Some(status)) = daemon.0.try_wait() {
        eprintln!("soak: the daemon exited during the run: {status}");
        phase.escaped_panics += 1;
    }
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    phase.panicked_lines = log.lines().filter(|l| l.contains("panicked")).count() as u64;
    phase.escaped_panics += phase.panicked_lines.saturating_sub(phase.restarts);
    eprintln!(
        "soak: phase done: {} cycles, {}/{} healthy pairs, {} misclassified, log {} bytes",
        phase.cycle_secs.len(),
        phase.healthy_hits,
        phase.healthy_expected,
        phase.misclassified,
        log.len()
    );
    if phase.healthy_failures > 0 || phase.misclassified > 0 {
        let mut shown = std::collections::HashSet::new();
        for l in log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        {
            let key: String = l.chars().skip(28).take(60).collect();
            if shown.insert(key) && shown.len() <= 8 {
                eprintln!("soak: daemon: {l}");
            }
        }
    }
    if phase.panicked_lines > 0 {
        for l in log.lines().filter(|l| l.contains("panicked")).take(5) {
            eprintln!("soak: daemon: {l}");
        }
    }
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    Ok(phase)
}

/// The simulator's config with the soak's cadence: short interval, no start offset or
/// per-connection delay (so a cycle starts on its tick), task lists rarely, a short
/// request timeout, a smaller body cap, rules and a statsd exporter.
fn write_config(
    path: &Path,
    args: &SoakArgs,
    plan: &Plan,
    faults: bool,
    port: u16,
    statsd: &str,
) -> anyhow::Result<()> {
    let mut config = fleetpoll::config::load(path)?;
    config.api.listen = format!("127.0.0.1:{port}");
    config.limits.global_connections = args.concurrency;
    config.limits.request_timeout = Duration::from_secs(args.request_timeout_secs);
    config.limits.connect_timeout = Duration::from_secs(args.request_timeout_secs);
    config.limits.max_body_mib = BODY_CAP_MIB;
    config.collection.interval = Duration::from_secs(args.interval_secs);
    config.collection.start_offset_min = Duration::ZERO;
    config.collection.start_offset_max = Duration::ZERO;
    config.collection.connection_delay_min = Duration::ZERO;
    config.collection.connection_delay_max = Duration::ZERO;
    config.collection.skip_recent = Duration::ZERO;
    config.collection.backoff_base = Duration::from_secs(args.interval_secs);
    config.collection.backoff_cap = Duration::from_secs(args.interval_secs * 4);
    let hour = Duration::from_secs(3600);
    config.tasks.running_interval = hour;
    config.tasks.full_interval = hour;
    for remote in &mut config.remotes {
        if remote.kind == "prometheus" {
            // Exposition targets have their own default interval; here they share the
            // cycle of the others.
            remote.interval_secs = Some(args.interval_secs);
        }
        if faults && plan.faults.get(&remote.id) == Some(&Planted::SeriesLimit) {
            remote.series_limit = Some(20);
        }
    }
    let rules = path.with_file_name("rules.toml");
    std::fs::write(
        &rules,
        r#"[[rules]]
name = "node-cpu-busy"
entities = "node/*"
metric = "cpu_current"
op = ">"
threshold = 0.5
severity = "warning"

[[rules]]
name = "remote-down"
state = ["failing", "backoff", "failed"]
for_secs = 30
severity = "critical"
"#,
    )?;
    config.rules.file = Some(rules);
    let mut text = toml::to_string(&config).context("serializing the soak's config")?;
    text.push_str(&format!(
        "\n[[exporters]]\nname = \"soak-statsd\"\nkind = \"statsd\"\naddress = \"{statsd}\"\n"
    ));
    std::fs::write(path, text)?;
    Ok(())
}

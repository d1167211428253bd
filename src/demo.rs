//! `fleetpoll demo`: the main job on an embedded default, no configuration. It starts
//! the fleet simulator in-process (PVE clusters and PBS servers over HTTPS on loopback,
//! a few of them faulty), writes a config for it as `fleetpoll sim --write-config`
//! would, and runs exactly what `fleetpoll run` runs on it — the real PVE/PBS clients
//! with pinned fingerprints, the stores in a data directory, the HTTP API — printing
//! the API's URL and one progress line per second until Ctrl-C (or until
//! `--duration-secs` has passed), then shutting down gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetpoll_actors::{Clock, PollState, TokioClock};

use crate::config::resolve;
use crate::daemon::Service;
use crate::sim::write_config::fleet_config;
use crate::sim::{SimConfig, Simulator};

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How many remotes the simulated fleet has (two thirds PVE clusters, the rest PBS).
    pub remotes: usize,
    /// Collection interval.
    pub interval: Duration,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Where metrics and tasks are stored; a temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// Where the API listens (an ephemeral port is used when this one is taken).
    pub listen: SocketAddr,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            remotes: 36,
            interval: Duration::from_secs(10),
            duration: None,
            data_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8450)),
        }
    }
}

/// The flags of `fleetpoll demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of simulated remotes.
    #[arg(long, default_value_t = 36)]
    remotes: usize,
    /// Collection interval in seconds.
    #[arg(long, default_value_t = 10)]
    interval_secs: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Where to keep the data (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the API listens (a free port is used when this one is taken).
    #[arg(long, default_value = "127.0.0.1:8450")]
    listen: SocketAddr,
}

/// Flags the demo cannot run with (exit code 64).
#[derive(Debug, thiserror::Error)]
#[error("--remotes and --interval-secs must be at least 1")]
pub struct DemoUsageError;

impl DemoArgs {
    /// The options the flags ask for.
    pub fn options(self) -> Result<DemoOptions, DemoUsageError> {
        if self.remotes == 0 || self.interval_secs == 0 {
            return Err(DemoUsageError);
        }
        Ok(DemoOptions {
            remotes: self.remotes,
            interval: Duration::from_secs(self.interval_secs),
            duration: self.duration_secs.map(Duration::from_secs),
            data_dir: self.data_dir,
            listen: self.listen,
        })
    }
}

/// The faults of the demo fleet: everyone has some latency, a few remotes fail half
/// their requests, one in twenty hangs (and times out), one in twenty presents a
/// certificate that does not match its pinned fingerprint.
const DEMO_FAULTS: &[&str] = &[
    "latency=20+150",
    "error-rate=0.5@8%",
    "hang@5%",
    "wrong-cert@5%",
];

/// The demo's rules: its faulty remotes fire `remote-down`, its busy nodes and guests
/// the others as the simulated load moves.
const DEMO_RULES: &str = r#"# fleetpoll demo rules (docs/rules.md)
[[rules]]
name = "remote-down"
state = ["failing", "backoff", "failed"]
for_secs = 30
severity = "critical"

[[rules]]
name = "node-memory-high"
entities = "node/*"
metric = "mem_used"
of = "mem_total"
op = ">"
threshold = 0.6
clear_threshold = 0.55
for_secs = 60

[[rules]]
name = "guest-cpu-busy"
entities = ["qemu/*", "lxc/*"]
metric = "cpu_current"
op = ">"
threshold = 0.5
clear_threshold = 0.4
for_secs = 60
labels = { team = "demo" }
"#;

/// The simulated fleet the demo runs against: seeded, so the same options give the same
/// remotes, names and token secrets every time (which is how the secrets test knows the
/// tokens to look for).
pub fn sim_config(options: &DemoOptions) -> anyhow::Result<SimConfig> {
    let pbs = options.remotes / 3;
    Ok(SimConfig {
        seed: 42,
        pve_remotes: options.remotes - pbs,
        pbs_remotes: pbs,
        nodes_per_cluster: 3,
        guests_per_cluster: 12,
        task_interval_secs: 120,
        faults: DEMO_FAULTS
            .iter()
            .map(|f| f.parse())
            .collect::<Result<_, _>>()
            .context("the demo's fault list")?,
        ..SimConfig::default()
    })
}

/// Runs the demo; returns when it was interrupted or its duration passed.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let sim_config = sim_config(&options)?;
    let (pve, pbs) = (sim_config.pve_remotes, sim_config.pbs_remotes);
    let sim = Simulator::start(sim_config)
        .await
        .context("starting the simulator")?;

    let temp;
    let data_dir = match &options.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("creating the data directory {} (--data-dir)", dir.display())
            })?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary data directory")?;
            temp.path().to_path_buf()
        }
    };
    let mut config = fleet_config(&sim, &data_dir);
    let rules_file = data_dir.join("rules.toml");
    std::fs::write(&rules_file, DEMO_RULES)
        .with_context(|| format!("writing the demo's rules to {}", rules_file.display()))?;
    config.rules.file = Some(rules_file);
    // The demo shows its own host too (opt-in for `run`).
    config.local.enabled = true;
    let interval_secs = options.interval.as_secs().max(1);
    let c = &mut config.collection;
    c.interval = Duration::from_secs(interval_secs);
    c.start_offset_max = Duration::from_secs((interval_secs / 5).min(interval_secs - 1));
    c.connection_delay_max = Duration::from_millis(500);
    c.backoff_base = Duration::from_secs(2);
    c.backoff_cap = Duration::from_secs(30);
    c.skip_recent = Duration::from_secs(2);
    config.limits.request_timeout = Duration::from_secs(5);
    config.limits.connect_timeout = Duration::from_secs(2);
    // The demo's API: the asked-for address, or any free port when it is taken.
    config.api.listen = match std::net::TcpListener::bind(options.listen) {
        Ok(probe) => {
            drop(probe);
            options.listen.to_string()
        }
        Err(_) => "127.0.0.1:0".to_string(),
    };
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let resolved = resolve(Path::new("(demo)"), config, clock.clone())
        .context("the demo's generated config")?;
    let service = Service::start(resolved, clock).await?;
    let engine = service.engine.clone();
    // The page first: it is what someone who never read the docs opens.
    println!(
        "fleetpoll demo: status page on http://{}/  (open it in a browser)",
        service.api_addr
    );
    println!(
        "fleetpoll demo: simulator on {} ({} PVE clusters, {} PBS, faults: {})",
        sim.describe_listeners(),
        pve,
        pbs,
        DEMO_FAULTS.join(", "),
    );
    println!(
        "fleetpoll demo: API on http://{}  (try: fleetpoll status --api http://{})",
        service.api_addr, service.api_addr
    );
    println!(
        "fleetpoll demo: data in {}, collecting every {} s, rules in {} (alerts: /api/v1/alerts); Ctrl-C stops",
        data_dir.display(),
        options.interval.as_secs(),
        data_dir.join("rules.toml").display(),
    );
    // Ctrl-C stops the demo whether or not it was given a duration.
    let stop = async {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match options.duration {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = ctrl_c => {}
                }
            }
            None => ctrl_c.await,
        }
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let status = engine.status().await?;
                let count = |f: &dyn Fn(PollState) -> bool| status.iter().filter(|s| f(s.state)).count();
                let ok = count(&|s| s == PollState::Ok);
                let failing = count(&|s| matches!(s, PollState::Failing | PollState::Backoff | PollState::Failed));
                let tasks_cached = service.tasks.len();
                let limiter = engine.limiter().await?;
                let storage = engine.storage().await?;
                println!(
                    "remotes ok {ok:>3} | failing {failing:>3} | pending {:>3} | points stored {:>8} | tasks cached {:>7} | connections {:>2}/{} | alerts firing {:>3}",
                    status.len() - ok - failing,
                    storage.points_stored,
                    tasks_cached,
                    limiter.in_use,
                    limiter.global_cap,
                    service.rules.firing_count(),
                );
            }
        }
    }
    let failing: Vec<String> = engine
        .status()
        .await?
        .into_iter()
        .filter(|s| s.state != PollState::Ok)
        .map(|s| {
            format!(
                "  {}: {:?} — {}",
                s.remote,
                s.state,
                s.last_error.unwrap_or_default()
            )
        })
        .collect();
    if !failing.is_empty() {
        println!("remotes not ok at the end:\n{}", failing.join("\n"));
    }
    let report = service.stop(Duration::from_secs(5)).await?;
    sim.shutdown().await;
    println!(
        "fleetpoll demo: stopped in {} ms ({} polls cut short)",
        report.elapsed_ms,
        report.cut_short.len()
    );
    Ok(())
}

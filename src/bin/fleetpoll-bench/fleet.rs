//! Scenario `fleet`: one metrics cycle of a whole simulated fleet over real HTTPS.
//!
//! The simulator runs as a separate process (`fleetpoll sim`, every node on its own
//! loopback address with its own certificate, a fixed reply latency and an optional
//! round-trip time), so the CPU time measured here is the polling side alone: the
//! engine, the TLS clients and the parser. Every remote is asked once for the points
//! of the last `--since-secs` (a regular cycle's worth by default) and the batches are
//! stored in memory; the cycle is compared with the floor
//! `ceil(remotes / concurrency) × (latency + 3 × rtt)`: each poll opens a new
//! connection to its remote (TCP 1 RTT, TLS 1.3 1 RTT, the request 1 RTT) and waits
//! for the remote's latency.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fleetpoll::engine::{Clock, Engine, RemoteConfig, RemoteKind, TokioClock};
use fleetpoll::remote::tls::{system_roots, TlsSessions};
use fleetpoll::remote::{
    ApiToken, ClientOptions, Fingerprint, IdleBudget, NodeAddress, RemoteEndpoint,
};
use fleetpoll_actors::testing::{MemoryMetricStore, MemoryTaskStore};
use serde_json::json;
use tokio::time::Instant;

use crate::e2e::wait_for;
use crate::measure::{cpu_time, process_cpu_secs, quiet_engine_config, round, rss_bytes};

/// Flags of the `fleet` scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FleetArgs {
    /// Number of simulated remotes (a third of them PBS, the rest PVE clusters).
    #[arg(long, default_value_t = 1000)]
    pub(crate) remotes: usize,
    /// The simulator's reply latency in milliseconds: each remote's time to answer
    /// (the `latency` fault), paid once per request.
    #[arg(long, default_value_t = 100)]
    pub(crate) latency_ms: u64,
    /// The simulator's round-trip time in milliseconds (`fleetpoll sim --rtt-ms`): paid
    /// by the TCP and TLS handshakes of every new connection and by every request.
    #[arg(long, default_value_t = 0)]
    pub(crate) rtt_ms: u64,
    /// Global connection cap of the engine.
    #[arg(long, default_value_t = 20)]
    pub(crate) concurrency: u32,
    /// Nodes per PVE cluster.
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: usize,
    /// Guests per PVE cluster.
    #[arg(long, default_value_t = 10)]
    pub(crate) guests: usize,
    /// How far back each poll reaches (the cursor's age).
    #[arg(long, default_value_t = 600)]
    pub(crate) since_secs: i64,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// The simulator child; killed when dropped.
pub(crate) struct SimProcess(pub(crate) Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One simulated remote as the written config describes it.
pub(crate) struct SimRemote {
    id: String,
    kind: RemoteKind,
    nodes: Vec<NodeAddress>,
    prefix: String,
    token_id: String,
    secret: String,
}

pub(crate) fn fleetpoll_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating fleetpoll-bench")?;
    let bin = exe.with_file_name("fleetpoll");
    if !bin.exists() {
        bail!(
            "{} is missing; build it first: cargo build --release --bin fleetpoll",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts `fleetpoll sim` (free ports, every node on its own address) and reads the
/// fleet from the config it writes.
pub(crate) fn start_sim(args: &FleetArgs) -> anyhow::Result<(SimProcess, Vec<SimRemote>)> {
    let pbs = args.remotes / 3;
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let written = dir.path().join("fleet.toml");
    let child = Command::new(fleetpoll_binary()?)
        .args(["sim", "--port", "0"])
        .args(["--pve", &(args.remotes - pbs).to_string()])
        .args(["--pbs", &pbs.to_string()])
        .args(["--nodes", &args.nodes.to_string()])
        .args(["--guests", &args.guests.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--fault", &format!("latency={}", args.latency_ms)])
        .args(["--rtt-ms", &args.rtt_ms.to_string()])
        .arg("--write-config")
        .arg(&written)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting fleetpoll sim")?;
    let sim = SimProcess(child);
    wait_for(
        Duration::from_secs(120),
        "the simulator wrote its config",
        || written.exists(),
    )?;
    let remotes = read_fleet(&written)?;
    if remotes.len() != args.remotes {
        bail!(
            "the simulator wrote {} remotes, expected {}",
            remotes.len(),
            args.remotes
        );
    }
    Ok((sim, remotes))
}

/// The remotes of a config written by `fleetpoll sim --write-config`.
fn read_fleet(path: &Path) -> anyhow::Result<Vec<SimRemote>> {
    let config = fleetpoll::config::load(path)?;
    config
        .remotes
        .into_iter()
        .map(|r| {
            let kind = match r.kind.as_str() {
                "pve" => RemoteKind::Pve,
                "pbs" => RemoteKind::Pbs,
                other => bail!("unexpected remote kind {other:?} in the simulator's config"),
            };
            let nodes = r
                .nodes
                .iter()
                .map(|n| {
                    let addr: std::net::SocketAddr = n
                        .address
                        .parse()
                        .with_context(|| format!("node address {:?}", n.address))?;
                    let fingerprint = n
                        .fingerprint
                        .as_deref()
                        .map(str::parse::<Fingerprint>)
                        .transpose()
                        .map_err(anyhow::Error::msg)?;
                    Ok(NodeAddress::new(
                        addr.ip().to_string(),
                        addr.port(),
                        fingerprint,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(SimRemote {
                id: r.id,
                kind,
                nodes,
                prefix: r.path_prefix,
                token_id: r.auth_id,
                secret: r.token.context("the simulator's config has no token")?.0,
            })
        })
        .collect()
}

pub(crate) fn run(args: FleetArgs) -> anyhow::Result<serde_json::Value> {
    if args.remotes == 0 || args.concurrency == 0 {
        bail!("--remotes and --concurrency must be at least 1");
    }
    let (sim, remotes) = start_sim(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let sim_cpu0 = process_cpu_secs(&sim.0.id().to_string());
    let mut result = rt.block_on(poll_fleet(&args, remotes))?;
    let sim_cpu = process_cpu_secs(&sim.0.id().to_string()) - sim_cpu0;
    result["sim_cpu_s"] = json!(round(sim_cpu, 3));
    Ok(result)
}

/// The engine's config for the simulated fleet, every cursor `since_secs` old.
pub(crate) fn fleet_config(
    args: &FleetArgs,
    remotes: &[SimRemote],
    metrics: &MemoryMetricStore,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<fleetpoll::engine::EngineConfig> {
    let roots = system_roots();
    let idle = IdleBudget::new(2 * args.concurrency as usize);
    let tls_sessions = TlsSessions::default();
    let now = clock.now_secs();
    let mut config = quiet_engine_config(args.concurrency);
    for r in remotes {
        let endpoint = RemoteEndpoint {
            remote: r.id.as_str().into(),
            nodes: r.nodes.clone(),
            token: ApiToken::new(r.token_id.clone(), r.secret.clone()),
            options: ClientOptions {
                path_prefix: r.prefix.clone(),
                roots: Some(roots.clone()),
                clock: clock.clone(),
                idle: idle.clone(),
                tls_sessions: tls_sessions.clone(),
                ..ClientOptions::default()
            },
        };
        let source = endpoint
            .into_source(r.kind)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        config
            .remotes
            .push(RemoteConfig::new(r.id.as_str(), r.kind, source));
        metrics.seed_cursor(&r.id, now - args.since_secs);
    }
    Ok(config)
}

async fn poll_fleet(
    args: &FleetArgs,
    remotes: Vec<SimRemote>,
) -> anyhow::Result<serde_json::Value> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let metrics = MemoryMetricStore::new();
    let config = fleet_config(args, &remotes, &metrics, clock.clone())?;
    let engine = Engine::builder(config)
        .metric_store(metrics.clone())
        .task_store(MemoryTaskStore::new())
        .clock(clock)
        .start()
        .await
        .context("starting the engine")?;

    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let report = engine.cycle(true).await?;
    let cycle = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    let failed: Vec<String> = report
        .results
        .iter()
        .filter_map(|(id, r)| r.as_ref().err().map(|e| format!("{id}: {e}")))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} remotes failed, first: {}",
            failed.len(),
            failed.first().map(String::as_str).unwrap_or_default()
        );
    }
    let points = metrics.total_points();
    // Each poll: a new connection (TCP and TLS 1.3, one RTT each), the request (one
    // RTT) and the remote's latency.
    let per_poll = (args.latency_ms + 3 * args.rtt_ms) as f64 / 1000.0;
    let ideal = args.remotes.div_ceil(args.concurrency as usize) as f64 * per_poll;
    let rss = rss_bytes();
    engine.shutdown(Duration::from_secs(5)).await?;
    eprintln!("fleet: {points} points in {cycle:.3} s (ideal {ideal:.3} s), client cpu {cpu:.2} s");
    Ok(json!({
        "scenario": "fleet",
        "remotes": args.remotes,
        "latency_ms": args.latency_ms,
        "rtt_ms": args.rtt_ms,
        "concurrency": args.concurrency,
        "since_secs": args.since_secs,
        "cycle_s": round(cycle, 4),
        "ideal_s": round(ideal, 4),
        "ratio": round(cycle / ideal, 4),
        "points": points,
        "client_cpu_s": round(cpu, 3),
        "client_cpu_us_per_point": round(cpu * 1e6 / points.max(1) as f64, 4),
        "client_rss_mib": round(rss as f64 / (1024.0 * 1024.0), 1),
    }))
}

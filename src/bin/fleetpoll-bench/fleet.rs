//! Scenario `fleet`: one metrics cycle of a whole simulated fleet over real HTTPS.
//!
//! The simulator runs as a separate process (`fleetpoll sim`, with a fixed reply
//! latency), so the CPU time measured here is the polling side alone: the engine, the
//! TLS clients and the parser. Every remote is asked once for the points of the last
//! `--since-secs` (a regular cycle's worth by default) and the batches are stored in
//! memory; the cycle is compared with `ceil(remotes / concurrency) × latency`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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

use crate::measure::{cpu_time, process_cpu_secs, quiet_engine_config, round, rss_bytes};

/// Flags of the `fleet` scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FleetArgs {
    /// Number of simulated remotes (a third of them PBS, the rest PVE clusters).
    #[arg(long, default_value_t = 1000)]
    pub(crate) remotes: usize,
    /// The simulator's reply latency in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub(crate) latency_ms: u64,
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

pub(crate) struct SimRemote {
    id: String,
    kind: RemoteKind,
    port: u16,
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

/// Starts `fleetpoll sim` and reads the fleet it announces on stdout.
pub(crate) fn start_sim(
    args: &FleetArgs,
) -> anyhow::Result<(SimProcess, Fingerprint, Vec<SimRemote>)> {
    let pbs = args.remotes / 3;
    let mut child = Command::new(fleetpoll_binary()?)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .args(["--pve", &(args.remotes - pbs).to_string()])
        .args(["--pbs", &pbs.to_string()])
        .args(["--nodes", &args.nodes.to_string()])
        .args(["--guests", &args.guests.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--fault", &format!("latency={}", args.latency_ms)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting fleetpoll sim")?;
    let stdout = child.stdout.take().context("the simulator's stdout")?;
    let sim = SimProcess(child);
    let mut fingerprint = None;
    let mut remotes = Vec::with_capacity(args.remotes);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the simulator's announcement")?;
        if let Some(fp) = line.strip_prefix("fingerprint ") {
            fingerprint = Some(
                fp.trim()
                    .parse::<Fingerprint>()
                    .map_err(anyhow::Error::msg)?,
            );
        } else if let Some(rest) = line.strip_prefix("remote ") {
            remotes.push(parse_remote_line(rest)?);
            if remotes.len() == args.remotes {
                break;
            }
        }
    }
    let fingerprint = fingerprint.context("the simulator printed no fingerprint")?;
    if remotes.len() != args.remotes {
        bail!(
            "the simulator announced {} remotes, expected {}",
            remotes.len(),
            args.remotes
        );
    }
    Ok((sim, fingerprint, remotes))
}

/// `pve-1 pve https://127.0.0.1:PORT/pve-1 nodes=… token=ID=SECRET` (PBS: `ID:SECRET`).
fn parse_remote_line(rest: &str) -> anyhow::Result<SimRemote> {
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let [id, kind, url, _nodes, token] = fields[..] else {
        bail!("unexpected remote line from the simulator: {rest:?}");
    };
    let kind = match kind {
        "pve" => RemoteKind::Pve,
        "pbs" => RemoteKind::Pbs,
        other => bail!("unknown remote kind {other:?} from the simulator"),
    };
    let hostport = url
        .strip_prefix("https://")
        .context("the remote's URL is not https")?;
    let (addr, prefix) = hostport.split_once('/').context("the URL has no path")?;
    let port = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .context("the URL has no port")?;
    let token = token.strip_prefix("token=").context("no token field")?;
    let sep = match kind {
        RemoteKind::Pbs => ':',
        _ => '=',
    };
    let (token_id, secret) = token
        .rsplit_once(sep)
        .context("the token has no secret part")?;
    Ok(SimRemote {
        id: id.to_string(),
        kind,
        port,
        prefix: format!("/{prefix}"),
        token_id: token_id.to_string(),
        secret: secret.to_string(),
    })
}

pub(crate) fn run(args: FleetArgs) -> anyhow::Result<serde_json::Value> {
    if args.remotes == 0 || args.concurrency == 0 {
        bail!("--remotes and --concurrency must be at least 1");
    }
    let (sim, fingerprint, remotes) = start_sim(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let sim_cpu0 = process_cpu_secs(&sim.0.id().to_string());
    let mut result = rt.block_on(poll_fleet(&args, fingerprint, remotes))?;
    let sim_cpu = process_cpu_secs(&sim.0.id().to_string()) - sim_cpu0;
    result["sim_cpu_s"] = json!(round(sim_cpu, 3));
    Ok(result)
}

/// The engine's config for the simulated fleet, every cursor `since_secs` old.
pub(crate) fn fleet_config(
    args: &FleetArgs,
    fingerprint: Fingerprint,
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
            nodes: vec![NodeAddress::new("127.0.0.1", r.port, Some(fingerprint))],
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
    fingerprint: Fingerprint,
    remotes: Vec<SimRemote>,
) -> anyhow::Result<serde_json::Value> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let metrics = MemoryMetricStore::new();
    let config = fleet_config(args, fingerprint, &remotes, &metrics, clock.clone())?;
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
    let ideal =
        args.remotes.div_ceil(args.concurrency as usize) as f64 * args.latency_ms as f64 / 1000.0;
    let rss = rss_bytes();
    engine.shutdown(Duration::from_secs(5)).await?;
    eprintln!("fleet: {points} points in {cycle:.3} s (ideal {ideal:.3} s), client cpu {cpu:.2} s");
    Ok(json!({
        "scenario": "fleet",
        "remotes": args.remotes,
        "latency_ms": args.latency_ms,
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

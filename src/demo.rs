//! `fleetpoll demo`: the main job on an embedded default, no configuration. It starts
//! the fleet simulator in-process (PVE clusters and PBS servers over HTTPS on loopback,
//! a few of them faulty), points the engine's real PVE/PBS clients at it with pinned
//! certificate fingerprints, and prints one progress line per second until Ctrl-C (or
//! until `--duration-secs` has passed), then shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetpoll_actors::testing::{MemoryMetricStore, MemoryTaskStore};
use fleetpoll_actors::{Clock, Engine, EngineConfig, PollState, RemoteConfig, TokioClock};

use crate::remote::tls::system_roots;
use crate::remote::{ApiToken, ClientOptions, NodeAddress, RemoteEndpoint};
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
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            remotes: 36,
            interval: Duration::from_secs(10),
            duration: None,
        }
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

/// Runs the demo; returns when it was interrupted or its duration passed.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let pbs = options.remotes / 3;
    let sim_config = SimConfig {
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
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().context("loopback address")?;
    let sim = Simulator::start(sim_config, listen)
        .await
        .context("starting the simulator")?;

    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let roots = system_roots();
    let mut config = EngineConfig::default();
    config.collection.interval = options.interval;
    config.collection.start_offset_max = options.interval / 5;
    config.collection.connection_delay_max = Duration::from_millis(500);
    config.collection.backoff_base = Duration::from_secs(2);
    config.collection.backoff_cap = Duration::from_secs(30);
    config.collection.skip_recent = Duration::from_secs(2);
    for info in sim.remotes() {
        let endpoint = RemoteEndpoint {
            remote: info.id.as_str().into(),
            nodes: vec![NodeAddress::new(
                "127.0.0.1",
                info.address.port(),
                Some(info.fingerprint),
            )],
            token: ApiToken::new(info.token_id.clone(), info.secret.clone()),
            options: ClientOptions {
                request_timeout: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(2),
                path_prefix: info.path_prefix.clone(),
                roots: Some(roots.clone()),
                clock: clock.clone(),
                ..ClientOptions::default()
            },
        };
        let source = endpoint
            .into_source(info.kind)
            .with_context(|| format!("building the client of {}", info.id))?;
        config
            .remotes
            .push(RemoteConfig::new(info.id.as_str(), info.kind, source));
    }
    let metrics = MemoryMetricStore::new();
    let tasks = MemoryTaskStore::new();
    let engine = Engine::builder(config)
        .metric_store(metrics.clone())
        .task_store(tasks.clone())
        .clock(clock)
        .start()
        .await?;
    println!(
        "fleetpoll demo: simulator on https://{} ({} PVE clusters, {} PBS, faults: {}), \
         collecting every {} s; Ctrl-C stops",
        sim.addr(),
        options.remotes - pbs,
        pbs,
        DEMO_FAULTS.join(", "),
        options.interval.as_secs()
    );
    let stop = async {
        match options.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
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
                let limiter = engine.limiter().await?;
                println!(
                    "remotes ok {ok:>3} | failing {failing:>3} | pending {:>3} | points stored {:>8} | tasks cached {:>6} | connections {:>2}/{}",
                    status.len() - ok - failing,
                    metrics.total_points(),
                    tasks.total_tasks(),
                    limiter.in_use,
                    limiter.global_cap,
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
    let report = engine.shutdown(Duration::from_secs(5)).await?;
    sim.shutdown().await;
    println!(
        "fleetpoll demo: stopped in {} ms ({} polls cut short)",
        report.elapsed_ms,
        report.cut_short.len()
    );
    Ok(())
}

//! Scenario `engine`: the supervision tree alone, with in-process fake remotes that
//! answer after a fixed real-time latency and jitter set to zero.
//!
//! 1. Idle memory: resident memory before and after starting one poller per remote.
//! 2. One full cycle through the shared rate limiter, against the ideal
//!    `ceil(remotes / concurrency) × latency`, with the CPU time it used.
//! 3. Trigger latency: while a regular (scheduled-lane) cycle runs, single-remote
//!    triggers are issued and timed until their remote's source sees the request. They
//!    are issued from a task on the runtime, as the daemon's API handlers issue them,
//!    or with `--caller outside` from the thread that blocks on the runtime (an embedder
//!    calling in from elsewhere: its wake-ups wait in the runtime's shared queue).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fleetpoll::engine::{Clock, Engine, RemoteConfig, RemoteId, RemoteKind, Target, TokioClock};
use fleetpoll_actors::testing::{CallKind, FakeSource, MemoryMetricStore, MemoryTaskStore, Probe};
use serde_json::json;
use tokio::time::Instant;

use crate::measure::{cpu_time, percentile, quiet_engine_config, round, rss_bytes};

/// Flags of the `engine` scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct EngineArgs {
    /// Number of simulated remotes (one poller each).
    #[arg(long, default_value_t = 10_000)]
    remotes: usize,
    /// Latency of every fake request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Global connection cap.
    #[arg(long, default_value_t = 100)]
    concurrency: u32,
    /// Single-remote triggers timed during the running cycle.
    #[arg(long, default_value_t = 200)]
    trigger_samples: usize,
    /// Permits kept for manual triggers (the engine's `limits.manual_reserve`; default 0).
    #[arg(long, default_value_t = 0)]
    manual_reserve: u32,
    /// Connections manual triggers may open beyond the cap (`limits.manual_burst`;
    /// default 2, the engine's default).
    #[arg(long, default_value_t = 2)]
    manual_burst: u32,
    /// Where the triggers are issued from.
    #[arg(long, value_enum, default_value_t = Caller::Task)]
    caller: Caller,
}

/// Where the timed triggers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Caller {
    /// A task on the engine's runtime, like an API request handler of the daemon.
    Task,
    /// The thread blocked on the runtime, outside its worker threads.
    Outside,
}

pub(crate) fn run(args: EngineArgs) -> anyhow::Result<serde_json::Value> {
    if args.remotes == 0 || args.concurrency == 0 {
        bail!("--remotes and --concurrency must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: EngineArgs) -> anyhow::Result<serde_json::Value> {
    let latency = Duration::from_millis(args.latency_ms);
    let probe = Probe::new();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let metrics = MemoryMetricStore::new();
    let tasks = MemoryTaskStore::new();
    let now = clock.now_secs();

    let mut config = quiet_engine_config(args.concurrency);
    config.limits.manual_reserve = args.manual_reserve;
    config.limits.manual_burst = args.manual_burst;
    let ids: Vec<String> = (0..args.remotes)
        .map(|i| format!("remote-{i:05}"))
        .collect();
    for id in &ids {
        let source = FakeSource::new(id, probe.clone(), clock.clone()).with_latency(latency);
        config.remotes.push(RemoteConfig::new(
            id.as_str(),
            RemoteKind::Pbs,
            Arc::new(source),
        ));
        // Collected just now: start-up collects nothing.
        metrics.seed_cursor(id, now);
    }

    let rss_before = rss_bytes();
    let started = Instant::now();
    let engine = Engine::builder(config)
        .metric_store(metrics.clone())
        .task_store(tasks.clone())
        .clock(clock.clone())
        .start()
        .await
        .context("starting the engine")?;
    let start_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_bytes();
    let per_poller_kib = rss_idle.saturating_sub(rss_before) as f64 / args.remotes as f64 / 1024.0;
    eprintln!(
        "engine: {} pollers started in {start_s:.2} s, {per_poller_kib:.2} KiB each when idle",
        args.remotes
    );

    // One full regular cycle (scheduled lane, as the timer would start it).
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let report = engine.cycle(true).await?;
    let cycle = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let failed = report.results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        bail!("{failed} remotes failed during the cycle");
    }
    let ideal = args.remotes.div_ceil(args.concurrency as usize) as f64 * latency.as_secs_f64();
    eprintln!(
        "engine: cycle {:.3} s (ideal {ideal:.3} s), cpu {:.2} s",
        cycle.as_secs_f64(),
        cpu.as_secs_f64()
    );

    // Single triggers during running cycles, each aimed at a remote still queued in the
    // cycle and spaced more than one latency apart so that each is on its own (a storm
    // of triggers is a different question). Cycles are restarted until enough samples.
    let samples = args.trigger_samples;
    let spacing = latency + Duration::from_millis(10);
    let sampling = {
        let engine = engine.clone();
        let ids = ids.clone();
        async move {
            let mut issued: Vec<(String, Instant)> = Vec::with_capacity(samples);
            let mut cycles = 0;
            while issued.len() < samples {
                engine.cycle(false).await?;
                cycles += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                // Stay in the first half of the cycle: the tail is still queued there.
                let window_end = Instant::now() + cycle / 2;
                let mut k = 0;
                let half = (ids.len() / 2).max(1);
                while issued.len() < samples && Instant::now() < window_end {
                    let pick = ids.len() / 2 + (issued.len() * 7919 + k) % half;
                    k += 1;
                    let id = &ids[pick.min(ids.len() - 1)];
                    let at = Instant::now();
                    engine
                        .trigger(Target::Remote(RemoteId::new(id)), false)
                        .await?;
                    issued.push((id.clone(), at));
                    tokio::time::sleep(spacing).await;
                }
                wait_idle(&engine).await?;
            }
            anyhow::Ok((issued, cycles))
        }
    };
    let (issued, cycles) = match args.caller {
        Caller::Task => tokio::spawn(sampling)
            .await
            .context("the trigger task panicked")??,
        Caller::Outside => sampling.await?,
    };
    let mut waits_ms = Vec::with_capacity(samples);
    for (id, at) in &issued {
        let reached = probe
            .calls_to(id, CallKind::Metrics)
            .into_iter()
            .map(|c| c.at)
            .filter(|t| t >= at)
            .min()
            .with_context(|| format!("the trigger of {id} never reached its source"))?;
        waits_ms.push(reached.duration_since(*at).as_secs_f64() * 1000.0);
    }
    let p50 = percentile(&mut waits_ms, 50.0);
    let p99 = percentile(&mut waits_ms, 99.0);
    let rss_end = rss_bytes();
    engine.shutdown(Duration::from_secs(5)).await?;

    Ok(json!({
        "scenario": "engine",
        "remotes": args.remotes,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "manual_reserve": args.manual_reserve,
        "manual_burst": args.manual_burst,
        "caller": format!("{:?}", args.caller).to_lowercase(),
        "cycle_s": round(cycle.as_secs_f64(), 4),
        "ideal_s": round(ideal, 4),
        "ratio": round(cycle.as_secs_f64() / ideal, 4),
        "cpu_s": round(cpu.as_secs_f64(), 3),
        "rss_mib": round(rss_end as f64 / (1024.0 * 1024.0), 1),
        "rss_per_idle_poller_kib": round(per_poller_kib, 2),
        "start_s": round(start_s, 3),
        "trigger_samples": samples,
        "trigger_cycles": cycles,
        "trigger_p50_ms": round(p50, 3),
        "trigger_p99_ms": round(p99, 3),
    }))
}

/// Waits until the limiter has nothing queued or leased (the cycle is over).
async fn wait_idle(engine: &fleetpoll::engine::EngineHandle) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let snap = engine.limiter().await?;
        if snap.in_use == 0 && snap.queued_manual + snap.queued_scheduled == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("a cycle did not finish within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

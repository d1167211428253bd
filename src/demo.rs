//! `fleetpoll demo`: the engine running on an embedded default, no configuration. It
//! starts a mixed fleet of simulated remotes (a few of them faulty), runs the engine
//! with short intervals, and prints one progress line per second until Ctrl-C (or until
//! `--duration-secs` has passed), then shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::testing::{FakeSource, MemoryMetricStore, MemoryTaskStore, Probe};
use fleetpoll_actors::{
    Clock, Engine, EngineConfig, ErrorClass, PollState, RemoteConfig, RemoteKind, TokioClock,
};

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How many remotes the simulated fleet has.
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

/// Runs the demo; returns when it was interrupted or its duration passed.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let probe = Probe::new();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let metrics = MemoryMetricStore::new();
    let tasks = MemoryTaskStore::new();
    let mut config = EngineConfig::default();
    config.collection.interval = options.interval;
    config.collection.start_offset_max = options.interval / 5;
    config.collection.connection_delay_max = Duration::from_millis(500);
    config.collection.backoff_base = Duration::from_secs(2);
    config.collection.backoff_cap = Duration::from_secs(30);
    config.collection.skip_recent = Duration::from_secs(2);
    let mut faulty = Vec::new();
    for i in 0..options.remotes {
        let (kind, name) = if i % 3 == 2 {
            (RemoteKind::Pbs, format!("pbs-{i:02}"))
        } else {
            (RemoteKind::Pve, format!("pve-{i:02}"))
        };
        let connections = kind.default_connection_cap().min(3);
        let latency = Duration::from_millis(40 + (i as u64 * 37) % 260);
        let source = Arc::new(
            FakeSource::new(&name, probe.clone(), clock.clone())
                .with_connections(connections)
                .with_latency(latency),
        );
        if i % 11 == 5 {
            faulty.push(source.clone());
        }
        config
            .remotes
            .push(RemoteConfig::new(name.as_str(), kind, source));
    }
    let engine = Engine::builder(config)
        .metric_store(metrics.clone())
        .task_store(tasks)
        .clock(clock)
        .start()
        .await?;
    println!(
        "fleetpoll demo: {} simulated remotes ({} faulty), collecting every {} s; Ctrl-C stops",
        options.remotes,
        faulty.len(),
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
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                round += 1;
                // Faulty remotes fail in bursts: they show backoff, then recover.
                if round % 15 == 1 {
                    for f in &faulty {
                        f.fail_next(3, ErrorClass::Timeout);
                    }
                }
                let status = engine.status().await?;
                let ok = status.iter().filter(|s| s.state == PollState::Ok).count();
                let failing = status
                    .iter()
                    .filter(|s| matches!(s.state, PollState::Failing | PollState::Backoff | PollState::Failed))
                    .count();
                let limiter = engine.limiter().await?;
                println!(
                    "remotes ok {ok:>3} | failing {failing:>3} | pending {:>3} | points stored {:>7} | connections {:>2}/{}",
                    status.len() - ok - failing,
                    metrics.total_points(),
                    limiter.in_use,
                    limiter.global_cap,
                );
            }
        }
    }
    let report = engine.shutdown(Duration::from_secs(5)).await?;
    println!(
        "fleetpoll demo: stopped in {} ms ({} polls cut short)",
        report.elapsed_ms,
        report.cut_short.len()
    );
    Ok(())
}

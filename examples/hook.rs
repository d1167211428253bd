//! An embedder's own hook: it sees every batch the engine stores, with counter rates
//! beside the raw values, off the polling path. This one prints the samples of one
//! entity whose value (or rate, for a counter) lies above a threshold:
//!
//! `cargo run --example hook -- [ENTITY [METRIC [THRESHOLD]]]`
//! (default: `node/pve-1-n1 cpu_current 0.0`), against the fleet simulator.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetpoll::engine::{Engine, EngineConfig, Hook, HookBatch, HookError, Target, TokioClock};
use fleetpoll::rrd::RrdStore;
use fleetpoll::sim::{SimConfig, Simulator};
use fleetpoll::tasks::TaskCache;
use fleetpoll_actors::system_now_secs;
use tokio::sync::mpsc;

/// Forwards the matching samples to `main`, which prints them.
struct AboveThreshold {
    entity: String,
    metric: String,
    threshold: f64,
    out: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Hook for AboveThreshold {
    async fn on_batch(&mut self, batch: &HookBatch) -> Result<(), HookError> {
        for sample in batch.samples() {
            if sample.entity != self.entity || sample.metric != self.metric {
                continue;
            }
            // Gauges compare their value, counters and derives their per-second rate.
            match sample.comparable() {
                Some(v) if v > self.threshold => {
                    let line = format!(
                        "{} {} {} at {}: {v} > {}",
                        batch.remote,
                        sample.entity,
                        sample.metric,
                        sample.timestamp,
                        self.threshold
                    );
                    self.out.send(line)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let entity = args.next().unwrap_or_else(|| "node/pve-1-n1".into());
    let metric = args.next().unwrap_or_else(|| "cpu_current".into());
    let threshold: f64 = match args.next() {
        Some(t) => t
            .parse()
            .map_err(|e| anyhow::anyhow!("THRESHOLD {t:?} is not a number: {e}"))?,
        None => 0.0,
    };

    let sim = Simulator::start(SimConfig::default()).await?;
    let clock = Arc::new(TokioClock::system());
    let mut config = EngineConfig::default();
    for info in sim.remotes() {
        config.remotes.push(info.engine_remote(clock.clone())?);
    }
    let data = tempfile::tempdir()?;
    let (metrics, _) = RrdStore::open(&data.path().join("metrics"))?;
    let tasks = TaskCache::open(data.path().join("tasks"), system_now_secs())?;

    let (out, mut lines) = mpsc::unbounded_channel();
    let hook = AboveThreshold {
        entity,
        metric,
        threshold,
        out,
    };
    let engine = Engine::builder(config)
        .metric_store(Arc::new(metrics))
        .task_store(Arc::new(tasks))
        .clock(clock)
        .hook("above-threshold", hook)
        .start()
        .await?;

    // One full collection (the backfill of every remote), then let the hook catch up.
    engine.trigger(Target::All, true).await?;
    let mut printed = 0;
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), lines.recv()).await {
        println!("{line}");
        printed += 1;
    }
    let status = &engine.hooks()[0];
    println!(
        "{printed} samples above the threshold; the hook saw {} batches ({} points), dropped {}",
        status.delivered_batches, status.delivered_points, status.dropped_batches
    );
    engine.shutdown(Duration::from_secs(5)).await?;
    sim.shutdown().await;
    Ok(())
}

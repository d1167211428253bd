//! Embedding fleetpoll in a host tokio application: start the engine on the host's
//! runtime, collect one remote now and wait for it, look at the status, follow what is
//! stored, and shut down gracefully. The remotes here are the fleet simulator's, so the
//! example runs anywhere: `cargo run --example embed`.

use std::sync::Arc;
use std::time::Duration;

use fleetpoll::engine::{Engine, EngineConfig, RemoteConfig, RemoteId, Target, TokioClock};
use fleetpoll::remote::tls::system_roots;
use fleetpoll::remote::{ApiToken, ClientOptions, NodeAddress, RemoteEndpoint};
use fleetpoll::sim::{SimConfig, Simulator};
use fleetpoll_actors::testing::{MemoryMetricStore, MemoryTaskStore};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A small simulated fleet over HTTPS on loopback stands in for real remotes.
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse()?).await?;

    // The host decides which remotes to watch; each gets a real PVE/PBS client.
    let clock = Arc::new(TokioClock::system());
    let mut config = EngineConfig::default();
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
                path_prefix: info.path_prefix.clone(),
                roots: Some(system_roots()),
                clock: clock.clone(),
                ..ClientOptions::default()
            },
        };
        let source = endpoint.into_source(info.kind)?;
        config
            .remotes
            .push(RemoteConfig::new(info.id.as_str(), info.kind, source));
    }

    // The engine runs on the host's runtime; nothing global, so several could run.
    let metrics = MemoryMetricStore::new();
    let engine = Engine::builder(config)
        .metric_store(metrics.clone())
        .task_store(MemoryTaskStore::new())
        .clock(clock)
        .start()
        .await?;

    // Follow stored batches while we work.
    let mut live = engine.subscribe(None).receiver;
    let follower = tokio::spawn(async move {
        while let Ok(batch) = live.recv().await {
            println!("stored {} points of {}", batch.batch.len(), batch.remote);
        }
    });

    // "Collect now" and wait until the data is stored.
    let report = engine
        .trigger(Target::Remote(RemoteId::new("pve-1")), true)
        .await?;
    println!("trigger: {:?}", report.results);

    // Task lists, fetched on demand (in production the scheduler does this every 10 min).
    engine.refresh_tasks(Target::All, true).await?;

    for status in engine.status().await? {
        println!(
            "{:<8} {:?} newest point {:?}",
            status.remote, status.state, status.newest_datapoint
        );
    }

    let shutdown = engine.shutdown(Duration::from_secs(5)).await?;
    println!(
        "stopped in {} ms, {} points stored",
        shutdown.elapsed_ms,
        metrics.total_points()
    );
    follower.abort();
    sim.shutdown().await;
    Ok(())
}

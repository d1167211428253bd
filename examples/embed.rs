//! Embedding fleetpoll in a host tokio application, as a datacenter manager would: the
//! real RRD store and task cache (in a temporary directory here), the real PVE/PBS
//! clients, the engine on the host's runtime, and fleetpoll's HTTP API mounted under
//! `/fleetpoll` of the host's own axum server. The remotes are the fleet simulator's,
//! so the example runs anywhere: `cargo run --example embed`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use fleetpoll::api::{router, ApiState};
use fleetpoll::cluster::{ClusterView, Shard};
use fleetpoll::engine::{Engine, EngineConfig, RemoteId, Target, TokioClock};
use fleetpoll::rrd::RrdStore;
use fleetpoll::sim::{SimConfig, Simulator};
use fleetpoll::tasks::TaskCache;
use fleetpoll_actors::system_now_secs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A small simulated fleet over HTTPS on loopback stands in for real remotes.
    let sim = Simulator::start(SimConfig::default()).await?;

    // The host decides which remotes to watch; each gets a real PVE/PBS client.
    let clock = Arc::new(TokioClock::system());
    let mut config = EngineConfig::default();
    for info in sim.remotes() {
        config.remotes.push(info.engine_remote(clock.clone())?);
    }

    // The real stores, as the daemon opens them (replaying their journals).
    let data = tempfile::tempdir()?;
    let (metrics, _recovery) =
        RrdStore::open(&data.path().join("metrics")).context("opening the RRD store")?;
    let metrics = Arc::new(metrics);
    let tasks = Arc::new(TaskCache::open(
        data.path().join("tasks"),
        system_now_secs(),
    )?);

    // The resource lists (guest names, running state, health) with the same clients.
    let inventory = fleetpoll::inventory::Inventory::start(
        fleetpoll::inventory::InventoryRemote::from_engine(&config.remotes),
        Duration::from_secs(900),
        clock.clone(),
    );

    // The engine runs on the host's runtime; nothing global, so several could run.
    let engine = Engine::builder(config)
        .metric_store(metrics.clone())
        .task_store(tasks.clone())
        .clock(clock.clone())
        .start()
        .await?;

    // fleetpoll's API under a prefix of the host's own server. Reloading is the host's
    // business here (it owns the config), so reload requests are answered with that.
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<fleetpoll::api::ReloadRequest>(1);
    tokio::spawn(async move {
        while let Some(reply) = reload_rx.recv().await {
            let _ = reply.send(Err("this host applies config changes itself".into()));
        }
    });
    let defaults = fleetpoll::config::ApiConfig::default();
    let state = ApiState {
        engine: engine.clone(),
        metrics: metrics.clone(),
        tasks: tasks.clone(),
        interval_secs: Arc::new(600.into()),
        token: fleetpoll::api::ApiToken::new(None),
        reload: reload_tx,
        last_reload: Default::default(),
        clock,
        live_streams: ApiState::live_stream_permits(defaults.max_streams as usize),
        max_streams: defaults.max_streams as usize,
        max_rows: defaults.max_rows,
        rules: None,
        // One instance polling every remote it was given.
        cluster: Arc::new(ClusterView::new(Shard::single("embedded"), Vec::new())),
        exporters: Default::default(),
        local: None,
        inventory: Some(inventory.clone()),
    };
    let host = Router::new()
        .route("/", get(|| async { "the host's own page" }))
        .nest("/fleetpoll", router(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, host).await });
    println!(
        "host server on http://{addr}, fleetpoll's API under /fleetpoll/api/v1/, its status page at /fleetpoll"
    );

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

    // The host's users reach fleetpoll through the mounted API.
    let (status, body) = get_text(addr, "/fleetpoll/api/v1/rrd/pve-1/node/pve-1-n1").await?;
    println!(
        "GET /fleetpoll/api/v1/rrd/pve-1/node/pve-1-n1: {status}, {} bytes",
        body.len()
    );
    for status in engine.status().await? {
        println!(
            "{:<8} {:?} newest point {:?}",
            status.remote, status.state, status.newest_datapoint
        );
    }

    inventory.stop().await;
    let shutdown = engine.shutdown(Duration::from_secs(5)).await?;
    println!("stopped in {} ms", shutdown.elapsed_ms);
    follower.abort();
    server.abort();
    sim.shutdown().await;
    Ok(())
}

/// One plain HTTP/1.1 GET; the status line and the body.
async fn get_text(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

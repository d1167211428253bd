//! What a stale hour view may make the daemon do, counted at the remote: the engine, the
//! stores and the API run in this process (`daemon::Service`) against the simulator
//! over loopback, and the simulator counts every metric export request it is sent.
//! The daemon's clock runs two days ahead of the simulator's, so whatever it stored
//! is stale; the collection interval is a day, so no scheduled cycle interferes.
//! (That a read may freshen again once an interval has passed is the engine's test
//! `a_read_freshens_a_remote_at_most_once_per_interval_and_never_in_backoff`, in
//! paused time.)

mod daemon_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll::config::{self, Secret};
use fleetpoll::daemon::Service;
use fleetpoll::engine::TokioClock;
use fleetpoll::sim::write_config::fleet_config;
use fleetpoll::sim::{SimConfig, Simulator};
use fleetpoll_actors::Clock;
use serde_json::Value;

/// How far the daemon's clock runs ahead of the simulator's: more than the interval,
/// so what the daemon stored is stale.
const AHEAD_SECS: u64 = 2 * 86_400;

/// The system clock, [`AHEAD_SECS`] ahead.
#[derive(Debug)]
struct Ahead(TokioClock);

impl Clock for Ahead {
    fn now(&self) -> Duration {
        self.0.now() + Duration::from_secs(AHEAD_SECS)
    }
}

/// A GET on the API, off the async workers (the helper blocks).
async fn get(port: u16, path: &str) -> (u16, Value) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || daemon_support::json(port, "GET", &path, ""))
        .await
        .unwrap()
}

/// Starts the daemon's service for `config`, stored under `dir`.
async fn start(dir: &Path, config: config::Config) -> (Service, u16) {
    let clock: Arc<dyn Clock> = Arc::new(Ahead(TokioClock::system()));
    let resolved = config::resolve(&dir.join("fleetpoll.toml"), config, clock.clone()).unwrap();
    let service = Service::start(resolved, clock).await.unwrap();
    let port = service.api_addr.port();
    (service, port)
}

/// Waits until `pve-1`'s status satisfies `cond`; returns it.
async fn wait_for_status(port: u16, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = get(port, "/api/v1/remotes/pve-1").await;
        if cond(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_hour_view_freshens_once_per_interval_never_for_a_missing_entity_nor_in_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        pve_remotes: 1,
        pbs_remotes: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let node = sim.remote("pve-1").unwrap().nodes[0].name.clone();
    let view = format!("/api/v1/rrd/pve-1/node/{node}?timeframe=hour");
    let mut config = fleet_config(&sim, dir.path());
    config.api.listen = "127.0.0.1:0".into();
    config.collection.interval = Duration::from_secs(86_400);
    let exports = || sim.metric_export_requests("pve-1");

    let (service, port) = start(dir.path(), config.clone()).await;
    wait_for_status(port, "pve-1 stored its first collection", |s| {
        s["state"] == "ok" && s["newest_datapoint"].is_i64()
    })
    .await;
    let collected = exports();
    assert!(collected > 0);

    // Stale: the first hour view freshens the remote (and waits for it) ...
    let (status, answer) = get(port, &view).await;
    assert_eq!(status, 200, "{answer}");
    let freshened = exports();
    assert!(
        freshened > collected,
        "the stale view did not freshen pve-1"
    );
    // ... the next ones within the interval do not, though it is still stale.
    for _ in 0..5 {
        assert_eq!(get(port, &view).await.0, 200);
    }
    // An entity nothing is stored for never freshens.
    for _ in 0..3 {
        let (status, _) = get(port, "/api/v1/rrd/pve-1/qemu/999999?timeframe=hour").await;
        assert_eq!(status, 404);
    }
    assert_eq!(
        exports(),
        freshened,
        "reads polled the remote more than once"
    );
    service.stop(Duration::from_secs(10)).await.unwrap();

    // Restarted with a wrong token, pve-1 is refused and backs off; its stored entity
    // is still stale, and reading it does not poll the remote.
    config.remotes[0].token = Some(Secret("wrong-secret".into()));
    let (service, port) = start(dir.path(), config).await;
    let before = wait_for_status(port, "pve-1 backs off, its retry at least 15 s away", |s| {
        s["state"] == "backoff"
            && s["next_attempt"]
                .as_i64()
                .is_some_and(|t| t >= daemon_support::unix_now() + AHEAD_SECS as i64 + 15)
    })
    .await;
    let refused = exports();
    for _ in 0..5 {
        let (status, answer) = get(port, &view).await;
        assert_eq!(status, 200, "what is stored is served: {answer}");
    }
    let (_, after) = get(port, "/api/v1/remotes/pve-1").await;
    assert_eq!(exports(), refused, "a read polled a backing-off remote");
    assert_eq!(
        after["consecutive_failures"],
        before["consecutive_failures"]
    );
    service.stop(Duration::from_secs(10)).await.unwrap();
    sim.shutdown().await;
}

//! The resource lists against the real simulator over HTTPS: the daemon's service (engine,
//! stores, inventory and API) runs in this process, the simulator beside it, and the
//! simulator's faults change while the daemon runs. The lists are filled at start and
//! stamped when their replies arrive, fetched again by a manual collect, kept when a
//! reply is bad, and each remote's health follows them and its state.

mod daemon_support;

use std::time::Duration;

use fleetpoll::config;
use fleetpoll::daemon::Service;
use fleetpoll::engine::TokioClock;
use fleetpoll::sim::write_config::fleet_config;
use fleetpoll::sim::{Fault, SimConfig, Simulator};
use fleetpoll_actors::Clock;
use serde_json::Value;
use std::sync::Arc;

/// An API request, off the async workers (the helper blocks).
async fn call(port: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    tokio::task::spawn_blocking(move || daemon_support::json(port, &method, &path, &body))
        .await
        .unwrap()
}

async fn get(port: u16, path: &str) -> Value {
    let (status, v) = call(port, "GET", path, "").await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// Collects `remote` now and waits until it (and its resource list) is stored.
async fn collect(port: u16, remote: &str) {
    let body = format!(r#"{{"remote": "{remote}", "wait": true}}"#);
    let (status, v) = call(port, "POST", "/api/v1/collect", &body).await;
    assert_eq!(status, 200, "{v}");
}

/// The list state (`filled_at`, `last_error`, …) of one remote.
async fn list_state(port: u16, remote: &str) -> (Value, Vec<Value>) {
    let v = get(port, &format!("/api/v1/resources?remote={remote}")).await;
    let state = v["remotes"][0].clone();
    assert_eq!(state["remote"], remote, "{v}");
    (state, v["resources"].as_array().unwrap().clone())
}

/// One remote's status, with its health.
async fn remote(port: u16, id: &str) -> Value {
    let v = get(port, "/api/v1/remotes").await;
    v["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["remote"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} is not listed: {v}"))
}

/// Waits until `cond` holds for the answer of `path`; returns it.
async fn wait_for(port: u16, path: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = get(port, path).await;
        if cond(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the wall clock shows a later second than `t`, so a new stamp differs.
async fn a_second_after(t: i64) {
    while daemon_support::unix_now() <= t {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_lists_are_stamped_on_fill_refreshed_by_collect_kept_on_bad_replies_and_drive_health(
) {
    let dir = tempfile::tempdir().unwrap();
    // pve-1 answers everything two seconds late at first: its list's stamp must be the
    // time the reply arrived, two seconds after it was asked for.
    let sim = Simulator::start(SimConfig {
        pve_remotes: 1,
        pbs_remotes: 1,
        faults: vec!["latency=2000@pve-1".parse().unwrap()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut config = fleet_config(&sim, dir.path());
    config.api.listen = "127.0.0.1:0".into();
    // No scheduled collection or list refresh interferes: only the start and the test's
    // collects fetch.
    config.collection.interval = Duration::from_secs(86_400);
    assert_eq!(config.inventory.resources_interval.as_secs(), 900);
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let started = daemon_support::unix_now();
    let resolved =
        config::resolve(&dir.path().join("fleetpoll.toml"), config, clock.clone()).unwrap();
    let service = Service::start(resolved, clock).await.unwrap();
    let port = service.api_addr.port();

    // Filled at start, for both kinds, with names and running state.
    let all = wait_for(port, "/api/v1/resources", "both lists are filled", |v| {
        v["remotes"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|e| e["filled_at"].is_i64()))
    })
    .await;
    let filled = daemon_support::unix_now();
    let entries = all["resources"].as_array().unwrap();
    let of = |remote: &str, t: &str| {
        entries
            .iter()
            .filter(|e| e["remote"] == remote && e["type"] == t)
            .count()
    };
    assert_eq!((of("pve-1", "node"), of("pve-1", "storage")), (3, 6));
    assert_eq!(of("pve-1", "qemu") + of("pve-1", "lxc"), 30);
    assert_eq!(of("pbs-1", "datastore"), 2);
    let fields = [
        "remote", "id", "type", "node", "name", "status", "cpu", "maxcpu", "mem", "maxmem", "disk",
        "maxdisk", "uptime",
    ];
    for e in entries {
        let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = fields.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "{e}");
    }
    let guests: Vec<&Value> = entries
        .iter()
        .filter(|e| e["type"] == "qemu" || e["type"] == "lxc")
        .collect();
    assert!(guests
        .iter()
        .all(|g| g["name"].as_str().is_some_and(|n| !n.is_empty())));
    assert!(guests.iter().any(|g| g["status"] == "running"));
    assert!(guests.iter().any(|g| g["status"] == "stopped"));
    let store = entries
        .iter()
        .find(|e| e["id"] == "datastore/store1")
        .unwrap();
    assert!(store["disk"].as_u64().unwrap() < store["maxdisk"].as_u64().unwrap());

    let (pve, _) = list_state(port, "pve-1").await;
    let (asked, at) = (
        pve["last_attempt"].as_i64().unwrap(),
        pve["filled_at"].as_i64().unwrap(),
    );
    assert!(
        at - asked >= 2,
        "stamped when asked, not when filled: {pve}"
    );
    assert!(started <= asked && at <= filled, "{pve}");
    assert_eq!(pve["last_error"], Value::Null);
    for id in ["pve-1", "pbs-1"] {
        let r = wait_for(port, "/api/v1/remotes", "both remotes are collected", |v| {
            v["remotes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["state"] == "ok")
        })
        .await;
        let r = r["remotes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["remote"] == id)
            .unwrap()
            .clone();
        assert_eq!(
            (r["health"].as_str(), &r["health_reason"]),
            (Some("good"), &Value::Null),
            "{r}"
        );
    }

    // A manual collect fetches the list again: a new stamp.
    assert!(sim.set_faults("pve-1", &[]));
    a_second_after(at).await;
    collect(port, "pve-1").await;
    let (pve, before) = list_state(port, "pve-1").await;
    let refreshed = pve["filled_at"].as_i64().unwrap();
    assert!(refreshed > at, "not refreshed by the collect: {pve}");

    // A bad reply keeps the list and records the error; the remote's health is an error.
    assert!(sim.set_faults("pve-1", &[Fault::BadResources]));
    a_second_after(refreshed).await;
    collect(port, "pve-1").await;
    let (pve, kept) = list_state(port, "pve-1").await;
    assert_eq!(kept, before, "the previous list is kept");
    assert_eq!(pve["filled_at"].as_i64(), Some(refreshed), "{pve}");
    assert_eq!(pve["last_error_class"], "bad_reply", "{pve}");
    assert!(pve["last_attempt"].as_i64().unwrap() > refreshed, "{pve}");
    let r = remote(port, "pve-1").await;
    assert_eq!(r["state"], "ok", "the metrics still come: {r}");
    assert_eq!(r["health"], "error", "{r}");
    assert!(
        r["health_reason"]
            .as_str()
            .unwrap()
            .starts_with("resource list: bad_reply"),
        "{r}"
    );

    // A node offline: a warning naming it, its guests' status unknown.
    assert!(sim.set_faults("pve-1", &[Fault::NodeOffline(1)]));
    collect(port, "pve-1").await;
    let r = remote(port, "pve-1").await;
    assert_eq!(r["health"], "warning", "{r}");
    assert_eq!(r["health_reason"], "node pve-1-n3 is offline", "{r}");
    let (pve, list) = list_state(port, "pve-1").await;
    assert_eq!(pve["last_error"], Value::Null);
    assert!(list
        .iter()
        .filter(|e| e["node"] == "pve-1-n3" && e["type"] != "node")
        .all(|e| e["status"] == "unknown"));

    // A datastore above 80 %: a warning.
    assert!(sim.set_faults("pbs-1", &[Fault::DatastoreFull(95.0)]));
    collect(port, "pbs-1").await;
    let r = remote(port, "pbs-1").await;
    assert_eq!(r["health"], "warning", "{r}");
    assert_eq!(r["health_reason"], "datastore store1 is 95 % full", "{r}");

    // Unreachable: an error with the cause; the list from before stays.
    assert!(sim.set_faults("pbs-1", &[Fault::Reset]));
    collect(port, "pbs-1").await;
    let r = wait_for(port, "/api/v1/remotes", "pbs-1 is failing", |v| {
        v["remotes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["remote"] == "pbs-1" && r["health"] == "error")
    })
    .await;
    let pbs = r["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["remote"] == "pbs-1")
        .unwrap();
    assert!(
        pbs["health_reason"].as_str().unwrap().contains("reach"),
        "{pbs}"
    );
    let (_, stores) = list_state(port, "pbs-1").await;
    assert_eq!(stores.len(), 2);

    // An unknown remote is a 404 in the API's error shape; a bad parameter a 400.
    let (status, v) = call(port, "GET", "/api/v1/resources?remote=nope", "").await;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    let (status, v) = call(port, "GET", "/api/v1/resources?remotes=pve-1", "").await;
    assert_eq!(status, 400, "{v}");
    // No token secret is ever shown.
    let everything = get(port, "/api/v1/resources").await.to_string()
        + &get(port, "/api/v1/remotes").await.to_string();
    for info in sim.remotes() {
        assert!(!everything.contains(&info.secret));
    }
    service.stop(Duration::from_secs(10)).await.unwrap();
    sim.shutdown().await;
}

//! Panic storms (feature `fault-injection`, which the crate's dev-dependency on itself
//! turns on for every test build): `fleetpoll run` with `FLEETPOLL_PANIC_RATE` set
//! against `fleetpoll sim`, both as processes. The pollers of the `prom-*` targets
//! panic at random when they start a collection, the rules hook and the statsd
//! exporter when they handle an event — over 1,000 panics a minute. The test checks
//! that every injected panic shows in `GET /api/v1/tree` as a restart or as the one
//! that exhausted its slot's restart intensity, that a slot marked failed is one that
//! panicked at least `max_restarts` times, that no remote without injected panics is
//! failed or restarted, and that each of those was collected in every cycle.

mod daemon_support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daemon_support::{fleet_config, json, spawn_daemon, wait_until};
use serde_json::Value;
use tokio::time::Instant;

const INTERVAL_SECS: i64 = 10;
const MAX_RESTARTS: u64 = 5;
const PERIOD_SECS: u64 = 20;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Lines of the daemon's stderr that carry an injected panic's message.
fn injected_panics(log: &std::path::Path) -> u64 {
    injected_at(log, "")
}

/// As [`injected_panics`], of one site (`poller`, `hook`, `exporter`).
fn injected_at(log: &std::path::Path, site: &str) -> u64 {
    let prefix = format!("fault injection: {site}");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .count() as u64
}

/// Every node of the tree with its path.
fn nodes<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for c in node["children"].as_array().into_iter().flatten() {
        nodes(c, out);
    }
}

#[test]
fn a_panic_storm_is_accounted_for_and_fails_only_the_remotes_it_hits() {
    let dir = tempfile::tempdir().unwrap();
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (_sim, config, port) = fleet_config(
        dir.path(),
        &[
            "--pve", "10", "--pbs", "10", "--prom", "200", "--nodes", "1", "--guests", "3",
        ],
        &[],
    );
    let mut c = fleetpoll::config::load(&config).unwrap();
    c.collection.interval = Duration::from_secs(INTERVAL_SECS as u64);
    c.collection.start_offset_min = Duration::ZERO;
    c.collection.start_offset_max = Duration::ZERO;
    c.collection.connection_delay_min = Duration::ZERO;
    c.collection.connection_delay_max = Duration::ZERO;
    c.collection.skip_recent = Duration::ZERO;
    for r in &mut c.remotes {
        if r.kind == "prometheus" {
            r.interval_secs = Some(INTERVAL_SECS as u64);
        }
    }
    c.supervision.max_restarts = MAX_RESTARTS as u32;
    c.supervision.period = Duration::from_secs(PERIOD_SECS);
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"busy\"\nentities = \"node/*\"\nmetric = \"cpu_current\"\n\
         op = \">\"\nthreshold = 0.5\n",
    )
    .unwrap();
    c.rules.file = Some(rules);
    let mut text = toml::to_string(&c).unwrap();
    text.push_str(&format!(
        "\n[[exporters]]\nname = \"storm\"\nkind = \"statsd\"\naddress = \"{}\"\n",
        statsd.local_addr().unwrap()
    ));
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("daemon.log");
    let rate = "poller:0.6@prom-*,hook:0.004,exporter:0.004";
    let daemon = spawn_daemon(
        &config,
        &[
            ("FLEETPOLL_PANIC_RATE", rate.as_ref()),
            ("RUST_LOG", "warn".as_ref()),
        ],
        Some(&log),
    );
    wait_until(Duration::from_secs(60), "the API answers", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    // Watch three cycles after one of warm-up, twice a second.
    let start = unix_now();
    let first_cycle = start.div_euclid(INTERVAL_SECS) + 2;
    let last_cycle = first_cycle + 3;
    let panics_at_start = injected_panics(&log);
    let t_start = Instant::now();
    let mut collected: HashMap<String, HashSet<i64>> = HashMap::new();
    while unix_now() < (last_cycle + 1) * INTERVAL_SECS + 2 {
        let (status, v) = json(port, "GET", "/api/v1/remotes", "");
        assert_eq!(status, 200);
        for r in v["remotes"].as_array().unwrap() {
            if let Some(t) = r["last_success"].as_i64() {
                collected
                    .entry(r["remote"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(t.div_euclid(INTERVAL_SECS));
            }
        }
        #[allow(clippy::disallowed_methods)] // reason: pacing a plain watcher thread
        std::thread::sleep(Duration::from_millis(500));
    }
    let minutes = t_start.elapsed().as_secs_f64() / 60.0;

    // Read the log, the tree, then the log again: a panic between the two reads may or
    // may not be in the tree yet.
    let before = injected_panics(&log);
    let (status, tree) = json(port, "GET", "/api/v1/tree", "");
    assert_eq!(status, 200);
    #[allow(clippy::disallowed_methods)] // reason: let a panic of the last moment land
    std::thread::sleep(Duration::from_millis(500));
    let after = injected_panics(&log);
    let mut all = Vec::new();
    nodes(&tree, &mut all);
    let restarts: u64 = all.iter().map(|n| n["restarts"].as_u64().unwrap()).sum();
    let failed: Vec<&&Value> = all.iter().filter(|n| n["state"] == "failed").collect();
    let accounted = restarts + failed.len() as u64;
    assert!(
        (before..=after).contains(&accounted),
        "{before}..={after} injected panics, but the tree shows {restarts} restarts and {} \
         failed slots",
        failed.len()
    );
    let rate_per_min = (before - panics_at_start) as f64 / minutes;
    assert!(
        rate_per_min >= 1000.0,
        "{rate_per_min:.0} panics a minute ({before} in all): not a storm"
    );
    for node in &failed {
        let name = node["name"].as_str().unwrap();
        assert!(
            node["restarts"].as_u64().unwrap() >= MAX_RESTARTS,
            "{name} is failed after {} restarts: {node}",
            node["restarts"]
        );
        assert!(
            name.starts_with("poller:prom-") || name.starts_with("hook:"),
            "{name} failed without injected panics: {node}"
        );
    }

    let (_, v) = json(port, "GET", "/api/v1/remotes", "");
    let mut storm_failed = 0;
    for r in v["remotes"].as_array().unwrap() {
        let id = r["remote"].as_str().unwrap();
        if id.starts_with("prom-") {
            storm_failed += usize::from(r["state"] == "failed");
            continue;
        }
        assert_eq!(
            r["restarts"], 0,
            "{id} restarted without injected panics: {r}"
        );
        assert_ne!(r["state"], "failed", "{id}: {r}");
        let cycles = collected.get(id).cloned().unwrap_or_default();
        for cycle in first_cycle..=last_cycle {
            assert!(
                cycles.contains(&cycle),
                "{id} was not collected in the cycle at {}: {cycles:?}",
                cycle * INTERVAL_SECS
            );
        }
    }
    let by_site: Vec<String> = ["poller", "hook", "exporter"]
        .iter()
        .map(|s| format!("{s} {}", injected_at(&log, s)))
        .collect();
    eprintln!(
        "panic storm: {} panics in {minutes:.2} min ({rate_per_min:.0}/min; since start: {}), \
         {restarts} restarts, {} failed slots ({storm_failed} storm remotes failed), 20 remotes \
         without injected panics collected in each of {} cycles",
        before - panics_at_start,
        by_site.join(", "),
        failed.len(),
        last_cycle - first_cycle + 1
    );
    drop(daemon);
}

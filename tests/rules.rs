//! Rules end to end, over real sockets: `fleetpoll run` against `fleetpoll sim` with a
//! rules file, and a webhook receiver in the test. Each firing and each resolution
//! reaches the receiver exactly once; a ratio rule; a reload while rules fire keeps them
//! firing; a broken rules file on disk is rejected, named, and the running rules stay; a
//! moved threshold resolves; a restart does not notify the firing alerts again.

// Blocking waits are what these process tests do: no actor runs in this binary.
#![allow(clippy::disallowed_methods)]

mod daemon_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemon_support::{fleet_config, json, spawn_daemon, wait_all_ok, wait_until};
use serde_json::Value;

/// A webhook receiver on loopback: every POSTed body, in arrival order.
fn receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            let mut line = String::new();
            let mut authorized = false;
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization: bearer hook-secret") {
                    authorized = true;
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(mut v) = serde_json::from_slice::<Value>(&body) {
                    v["_authorized"] = Value::Bool(authorized);
                    out.lock().unwrap().push(v);
                }
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

fn rules_text(hook_port: u16, cpu_threshold: f64) -> String {
    format!(
        r#"
[[rules]]
name = "node-cpu"
entities = "node/*"
metric = "cpu_current"
op = ">"
threshold = {cpu_threshold}
for_secs = 300

[[rules]]
name = "node-mem-used"
entities = "node/*"
metric = "mem_used"
of = "mem_total"
op = ">"
threshold = 0.01

[[webhooks]]
url = "http://127.0.0.1:{hook_port}/alerts"
headers = {{ Authorization = "Bearer hook-secret" }}
"#
    )
}

/// (rule, remote, entity, state) → how often the receiver saw it.
fn tally(seen: &Mutex<Vec<Value>>) -> BTreeMap<(String, String, String, String), usize> {
    let mut t = BTreeMap::new();
    for v in seen.lock().unwrap().iter() {
        let key = (
            v["rule"].as_str().unwrap_or_default().to_string(),
            v["remote"].as_str().unwrap_or_default().to_string(),
            v["entity"].as_str().unwrap_or_default().to_string(),
            v["state"].as_str().unwrap_or_default().to_string(),
        );
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

fn firing(port: u16) -> Vec<Value> {
    let (_, v) = json(port, "GET", "/api/v1/alerts", "");
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .cloned()
        .collect()
}

fn collect_all(port: u16) {
    let (status, _) = json(
        port,
        "POST",
        "/api/v1/collect",
        r#"{"remote": null, "wait": true}"#,
    );
    assert_eq!(status, 200);
}

fn write(path: &Path, text: &str) {
    // Replace by rename, as editors and config tools do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn alerts_reach_the_webhook_once_per_change_across_reloads_broken_files_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (hook_port, seen) = receiver();
    let rules = dir.path().join("rules.toml");
    write(&rules, &rules_text(hook_port, -1.0));
    let (_sim, config, port) = fleet_config(
        dir.path(),
        &[],
        &[("[rules]\n", "[rules]\nfile = \"rules.toml\"\n")],
    );
    let daemon = spawn_daemon(&config, &[], None);
    wait_all_ok(port);

    // The backfill carries an hour of history: every node's cpu rule holds 300 s of
    // sample time by itself, and the ratio rule fires at once.
    wait_until(Duration::from_secs(30), "alerts fire", || {
        let f = firing(port);
        f.iter().any(|a| a["rule"] == "node-cpu") && f.iter().any(|a| a["rule"] == "node-mem-used")
    });
    // Every remote's backfill is in (all are ok); let the hook finish the last batch.
    let mut fired = firing(port);
    wait_until(Duration::from_secs(20), "the firing alerts settle", || {
        std::thread::sleep(Duration::from_secs(1));
        let now = firing(port);
        let settled = now.len() == fired.len();
        fired = now;
        settled
    });
    wait_until(
        Duration::from_secs(20),
        "every firing reaches the webhook",
        || tally(&seen).values().sum::<usize>() >= fired.len(),
    );
    collect_all(port);
    std::thread::sleep(Duration::from_secs(2));
    let t = tally(&seen);
    assert_eq!(t.len(), fired.len(), "one notification per alert: {t:?}");
    assert!(
        t.values().all(|n| *n == 1),
        "exactly once, also after more samples: {t:?}"
    );
    assert!(t.keys().all(|k| k.3 == "firing"));
    for a in &fired {
        let key = (
            a["rule"].as_str().unwrap().to_string(),
            a["remote"].as_str().unwrap().to_string(),
            a["entity"].as_str().unwrap().to_string(),
            "firing".to_string(),
        );
        assert_eq!(t.get(&key), Some(&1), "{key:?} notified");
    }
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|v| v["_authorized"] == true),
        "the header was sent"
    );
    let ratio = seen
        .lock()
        .unwrap()
        .iter()
        .find(|v| v["rule"] == "node-mem-used")
        .cloned()
        .unwrap();
    let value = ratio["value"].as_f64().unwrap();
    assert!(value > 0.01 && value < 1.0, "a ratio, not bytes: {ratio}");

    // A reload with the same rules: everything keeps firing, nothing is notified.
    let (status, _) = json(port, "POST", "/api/v1/reload", "{}");
    assert_eq!(status, 200);
    assert_eq!(firing(port).len(), fired.len());

    // A broken rules file on disk is rejected, named, and the running rules stay.
    write(
        &rules,
        &rules_text(hook_port, -1.0).replace(
            "op = \">\"\nthreshold = 0.01",
            "op = \">\"\nthreshold = 0.01\nclear_threshold = 0.5",
        ),
    );
    wait_until(
        Duration::from_secs(10),
        "the broken file is reported",
        || {
            let (_, d) = json(port, "GET", "/api/v1/daemon", "");
            d["rules_error"].as_str().is_some_and(|e| {
                e.contains("rules[1].clear_threshold") && e.contains("node-mem-used")
            })
        },
    );
    assert_eq!(firing(port).len(), fired.len(), "the running rules stay");

    // The cpu threshold moves above any cpu: at the next samples those alerts resolve.
    write(&rules, &rules_text(hook_port, 1.5));
    wait_until(Duration::from_secs(10), "the fixed file applies", || {
        let (_, d) = json(port, "GET", "/api/v1/daemon", "");
        d["rules_error"].is_null()
    });
    // The simulated remotes add a point per minute: collect until the next one is in.
    let cpu_alerts = fired.iter().filter(|a| a["rule"] == "node-cpu").count();
    wait_until(Duration::from_secs(100), "the cpu alerts resolve", || {
        collect_all(port);
        std::thread::sleep(Duration::from_millis(500));
        tally(&seen)
            .keys()
            .filter(|k| k.0 == "node-cpu" && k.3 == "resolved")
            .count()
            == cpu_alerts
    });
    std::thread::sleep(Duration::from_secs(1));
    let t = tally(&seen);
    assert!(t.values().all(|n| *n == 1), "{t:?}");
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "resolved")
        .all(|v| v["reason"] == "cleared" && v["threshold"] == 1.5));
    let still = firing(port);
    assert!(still.iter().all(|a| a["rule"] == "node-mem-used") && !still.is_empty());

    // The history holds the transitions, newest first, as the webhook got them.
    let (_, history) = json(port, "GET", "/api/v1/alerts/history?limit=3", "");
    let newest = history["history"].as_array().unwrap();
    assert_eq!(newest.len(), 3, "{history}");
    assert!(
        newest
            .iter()
            .all(|t| t["rule"] == "node-cpu" && t["state"] == "resolved"),
        "the newest are the cpu resolutions: {history}"
    );

    // A restart keeps the firing alerts: none is notified again.
    let before = seen.lock().unwrap().len();
    drop(daemon);
    let daemon = spawn_daemon(&config, &[], None);
    // Just collected: the restarted daemon waits for the next cycle, so collect now.
    wait_until(Duration::from_secs(20), "the API answers again", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    collect_all(port);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(firing(port).len(), still.len(), "restored");
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "nothing notified again after the restart"
    );
    let (_, history) = json(port, "GET", "/api/v1/alerts/history?limit=5", "");
    // The restarted daemon's history holds what happened since its start: nothing
    // changed, so nothing is in it (and a bad limit is refused below).
    assert_eq!(history["history"], serde_json::json!([]), "{history}");
    let (status, _) = json(port, "GET", "/api/v1/alerts/history?limit=0", "");
    assert_eq!(status, 400);
    let (_, metrics) = daemon_support::http(port, "GET", "/metrics", "");
    assert!(
        metrics.contains("fleetpoll_alerts{rule=\"node-mem-used\",state=\"firing\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("fleetpoll_hook_dropped_points_total{hook=\"rules\"} 0"));
    drop(daemon);
}

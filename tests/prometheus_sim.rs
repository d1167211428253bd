//! `fleetpoll sim --prom N --series M` as exposition targets of `fleetpoll run`, both as
//! processes over loopback: the written config scrapes them with their bearer tokens
//! (gzip-encoded OpenMetrics), every series is stored, and a target's failures land in
//! its own status with the error class of the other remotes: a cut-off reply and a
//! scrape over `series_limit` are bad replies, a wrong token is an auth failure.

mod daemon_support;

use std::time::Duration;

use daemon_support::{free_port, json, remote_status, spawn_daemon, start_sim_with, wait_until};

#[test]
fn simulated_targets_are_scraped_and_their_failures_classified_per_remote() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fleet.toml");
    let _sim = start_sim_with(
        &config,
        &[
            "--prom",
            "4",
            "--series",
            "120",
            "--fault",
            "malformed@prom-2",
        ],
    );
    let mut file: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let api = free_port();
    file.insert(
        "api".into(),
        toml::Value::Table(toml::toml! { listen = (format!("127.0.0.1:{api}")) }),
    );
    let remotes = file["remotes"].as_array_mut().unwrap();
    let prom: Vec<&mut toml::Value> = remotes
        .iter_mut()
        .filter(|r| r["type"].as_str() == Some("prometheus"))
        .collect();
    assert_eq!(
        prom.len(),
        4,
        "the sim writes its targets as prometheus remotes"
    );
    let mut prom = prom.into_iter();
    let first = prom.next().unwrap();
    // Its own address: after 3 PVE clusters and 2 PBS, prom-1 is the sixth remote.
    let url = first["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.1.5.1:") && url.ends_with("/metrics"),
        "{url}"
    );
    prom.next(); // prom-2: cut off by the simulator
    let set = |r: &mut toml::Value, key: &str, value: toml::Value| {
        r.as_table_mut().unwrap().insert(key.into(), value);
    };
    set(
        prom.next().unwrap(),
        "series_limit",
        toml::Value::Integer(100),
    ); // prom-3
    set(prom.next().unwrap(), "token", "wrong".into()); // prom-4
    std::fs::write(&config, toml::to_string(&file).unwrap()).unwrap();

    let _daemon = spawn_daemon(&config, &[], Some(&dir.path().join("daemon.log")));
    wait_until(Duration::from_secs(30), "every target was tried", || {
        std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
            && (1..=4).all(|i| {
                let s = remote_status(api, &format!("prom-{i}"));
                s["last_attempt"].is_i64()
            })
    });
    let s1 = remote_status(api, "prom-1");
    assert_eq!(s1["state"], "ok", "{s1}");
    assert_eq!(s1["points_stored"], 120, "one point per series: {s1}");
    let class = |id: &str| {
        let s = remote_status(api, id);
        (
            s["last_error_class"].as_str().unwrap_or("").to_string(),
            s["last_error"].to_string(),
        )
    };
    let (c2, e2) = class("prom-2");
    assert_eq!(c2, "bad_reply", "{e2}");
    let (c3, e3) = class("prom-3");
    assert_eq!(c3, "bad_reply", "{e3}");
    assert!(e3.contains("series_limit"), "{e3}");
    let (c4, e4) = class("prom-4");
    assert_eq!(c4, "auth", "{e4}");
    assert!(
        !e4.contains("wrong"),
        "the token is not in the message: {e4}"
    );

    // Labelled series are entities `metrics/<labels>`, unlabelled ones `metrics`.
    let (status, v) = json(
        api,
        "GET",
        "/api/v1/rrd/prom-1/metrics/cpu=0,mode=idle?timeframe=hour",
        "",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["metrics"][0]["name"], "node_cpu_seconds_total");
    let (status, v) = json(api, "GET", "/api/v1/rrd/prom-1/metrics?timeframe=hour", "");
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"node_memory_MemTotal_bytes"), "{names:?}");
    assert!(names.contains(&"node_load1"), "{names:?}");
}

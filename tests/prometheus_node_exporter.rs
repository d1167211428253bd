//! The real node_exporter as a `type = "prometheus"` remote: `fleetpoll run` scrapes it
//! over loopback and answers `GET /api/v1/rrd/…` with the values a direct scrape shows
//! (gauges exactly, under their full names although the store shortens them) and a
//! counter as a rate. Skipped with a note when `prometheus-node-exporter` is not
//! installed (`.ci/run` installs it).

mod daemon_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_support::{free_port, json, spawn_daemon, wait_until, Proc};
use fleetpoll::prom::parse::{parse, Format};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

fn start_node_exporter() -> (Proc, u16) {
    assert!(
        Path::new(NODE_EXPORTER).exists(),
        "{NODE_EXPORTER} is missing: install it (`apt-get install prometheus-node-exporter`; .ci/run does)"
    );
    let port = free_port();
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args([
            "--collector.disable-defaults",
            "--collector.meminfo",
            "--collector.stat",
            "--collector.cpu",
            "--collector.loadavg",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc::new(child);
    wait_until(Duration::from_secs(20), "node_exporter listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (proc, port)
}

/// The samples of one direct scrape (HTTP/1.0: the body is not chunked).
fn scrape(port: u16) -> Vec<fleetpoll::prom::parse::Sample> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.0 200") || raw.starts_with("HTTP/1.1 200"),
        "{raw:.200}"
    );
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    parse(body, Format::Text, 100_000).expect("node_exporter's output parses")
}

fn value_of(samples: &[fleetpoll::prom::parse::Sample], name: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.is_empty())
        .unwrap_or_else(|| panic!("{name} in the scrape"))
        .value
}

/// The newest known value of `metric` in an hour view of `entity`.
fn newest(api: u16, entity: &str, metric: &str) -> Option<f64> {
    let (status, v) = json(
        api,
        "GET",
        &format!("/api/v1/rrd/ne/{entity}?timeframe=hour"),
        "",
    );
    if status != 200 {
        return None;
    }
    let series = v["data"]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == metric)?;
    series["values"]
        .as_array()?
        .iter()
        .rev()
        .find_map(|x| x.as_f64())
}

#[test]
fn node_exporter_gauges_read_back_exactly_and_its_cpu_counter_as_a_rate() {
    let (_exporter, ne_port) = start_node_exporter();
    let direct = scrape(ne_port);
    let mem_total = value_of(&direct, "node_memory_MemTotal_bytes");
    let boot_time = value_of(&direct, "node_boot_time_seconds");
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let config = dir.path().join("fleetpoll.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{api}\"\n\
             [storage]\nstate_dir = \"state\"\ncache_dir = \"cache\"\n\
             [[remotes]]\nid = \"ne\"\ntype = \"prometheus\"\n\
             url = \"http://127.0.0.1:{ne_port}/metrics\"\ninterval_secs = 5\n"
        ),
    )
    .unwrap();
    let _daemon = spawn_daemon(&config, &[], Some(&dir.path().join("daemon.log")));
    wait_until(Duration::from_secs(30), "the remote is ok", || {
        std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
            && daemon_support::remote_status(api, "ne")["state"] == "ok"
    });
    // A 60 s step is known once more than half of it is: up to two steps.
    wait_until(
        Duration::from_secs(200),
        "a known memory total is stored",
        || newest(api, "metrics", "node_memory_MemTotal_bytes").is_some(),
    );
    assert_eq!(
        newest(api, "metrics", "node_memory_MemTotal_bytes"),
        Some(mem_total),
        "the gauge reads back exactly, under its full name"
    );
    assert_eq!(
        newest(api, "metrics", "node_boot_time_seconds"),
        Some(boot_time)
    );
    let cpus = direct
        .iter()
        .filter(|s| s.name == "node_cpu_seconds_total" && s.labels[1].1 == "idle")
        .count() as f64;
    assert!(cpus >= 1.0);
    wait_until(
        Duration::from_secs(90),
        "an idle-cpu rate is stored",
        || newest(api, "metrics/cpu=0,mode=idle", "node_cpu_seconds_total").is_some(),
    );
    let rate = newest(api, "metrics/cpu=0,mode=idle", "node_cpu_seconds_total").unwrap();
    assert!(
        (0.0..=1.05).contains(&rate),
        "cpu 0's idle seconds per second is {rate}, not a rate"
    );
    let status = daemon_support::remote_status(api, "ne");
    assert_eq!(status["kind"], "prometheus", "{status}");
}

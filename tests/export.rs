//! Exporters end to end: `fleetpoll run` against `fleetpoll sim`, each exporter kind
//! writing into its real receiver on loopback (VictoriaMetrics, InfluxDB 1.x,
//! Prometheus, carbon-cache; statsd into a UDP socket of the test). Every point the
//! daemon stored for one chosen entity must read back from the receiver with the same
//! timestamp and value (per-second rates for derives). A receiver that is down for 30 s
//! gets what its queue held, the rest is counted as dropped, and polling is not slowed;
//! a reload adds and removes an exporter without restarting a poller.

mod daemon_support;
mod export_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use daemon_support::*;
use export_support::*;

/// The entity whose every stored point is compared.
const REMOTE: &str = "pve-1";
const ENTITY: &str = "node/pve-1-n1";

/// The metrics the line-protocol UDP exporters select: few enough that a receiver
/// starved of CPU by the parallel tests still finds them in its socket buffer (UDP has
/// no flow control); Graphite's longer lines over UDP carry `cpu_avg1` alone.
fn over_udp(metric: &str) -> bool {
    (metric.starts_with("cpu_avg") && metric.len() == "cpu_avg1".len()) || metric == "net_in"
}

/// Starts the simulator and a daemon whose config ends with `exporters` (TOML).
fn start_with_exporters(dir: &Path, exporters: &str) -> (Proc, Proc, u16) {
    let (sim, config, port) = fleet_config(dir, &[], &[]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push('\n');
    text.push_str(exporters);
    std::fs::write(&config, text).unwrap();
    let daemon = spawn_daemon(&config, &[], Some(&dir.join("daemon.log")));
    wait_all_ok(port);
    (sim, daemon, port)
}

/// The entity's stored points, once the replay shows some (the first cycle is done).
fn stored_points(port: u16) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut points = BTreeMap::new();
    wait_until(
        Duration::from_secs(30),
        "the entity's points are stored",
        || {
            points = stored(port, REMOTE, ENTITY);
            points.values().any(|p| p.len() > 1)
        },
    );
    points
}

#[test]
fn victoria_metrics_reads_back_every_stored_point_over_remote_write_graphite_and_influx() {
    let dir = tempfile::tempdir().unwrap();
    let vm = Victoria::start(dir.path());
    // The UDP exporters write into a VictoriaMetrics of their own: UDP has no flow
    // control, and one busy ingesting the TCP and HTTP backfill drops datagrams.
    let vm_udp = Victoria::start(&dir.path().join("udp"));
    // InfluxDB v2 takes a token (VictoriaMetrics ignores it); the file is the config's
    // neighbour and private.
    let token = dir.path().join("influx.token");
    std::fs::write(&token, "v2-t0ken\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = format!(
        r#"
[[exporters]]
name = "vm-rw"
kind = "prometheus-remote-write"
url = "http://127.0.0.1:{http}/api/v1/write"
prefix = "rw"
remotes = ["pve-1"]
flush_interval_ms = 200

[[exporters]]
name = "vm-graphite-tcp"
kind = "graphite"
address = "127.0.0.1:{graphite}"
prefix = "gt"
remotes = ["pve-1"]
flush_interval_ms = 200

[[exporters]]
name = "vm-graphite-udp"
kind = "graphite"
transport = "udp"
address = "127.0.0.1:{ugraphite}"
prefix = "gu"
remotes = ["pve-1"]
metrics = ["cpu_avg1"]
flush_interval_ms = 200

[[exporters]]
name = "vm-influx-http"
kind = "influxdb"
url = "http://127.0.0.1:{http}/write?db=fp"
prefix = "ih"
remotes = ["pve-1"]
flush_interval_ms = 200

[[exporters]]
name = "vm-influx-v2"
kind = "influxdb"
url = "http://127.0.0.1:{http}/api/v2/write?org=o&bucket=b"
token_file = "influx.token"
prefix = "i2"
remotes = ["pve-1"]
flush_interval_ms = 200

[[exporters]]
name = "vm-influx-udp"
kind = "influxdb"
transport = "udp"
address = "127.0.0.1:{uinflux}"
prefix = "iu"
remotes = ["pve-1"]
metrics = ["cpu_avg?", "net_in"]
flush_interval_ms = 200
"#,
        http = vm.http,
        graphite = vm.graphite,
        ugraphite = vm_udp.graphite,
        uinflux = vm_udp.influx
    );
    let (_sim, _daemon, port) = start_with_exporters(dir.path(), &config);
    let stored = stored_points(port);
    wait_flushed(
        port,
        &[
            "vm-rw",
            "vm-graphite-tcp",
            "vm-graphite-udp",
            "vm-influx-http",
            "vm-influx-v2",
            "vm-influx-udp",
        ],
    );
    let ex = exporters(port);
    for (name, e) in &ex {
        assert_eq!(e["dropped"], 0, "{name}: {e}");
        assert_eq!(e["last_error"], serde_json::Value::Null, "{name}: {e}");
        assert!(e["last_success"].as_i64().is_some(), "{name}: {e}");
    }
    assert_eq!(ex["vm-rw"]["kind"], "prometheus-remote-write");
    assert_eq!(ex["vm-graphite-udp"]["transport"], "udp");
    let instance = gethostname();

    for (metric, points) in &stored {
        let want = expected(metric, points);
        if want.is_empty() {
            continue;
        }
        let series = |selector: String, key: Option<String>| {
            let got = vm.export(&selector);
            match key {
                Some(k) => got.get(&k).cloned().unwrap_or_default(),
                None => got.into_values().next().unwrap_or_default(),
            }
        };
        let useries = |selector: String, key: Option<String>| {
            let got = vm_udp.export(&selector);
            match key {
                Some(k) => got.get(&k).cloned().unwrap_or_default(),
                None => got.into_values().next().unwrap_or_default(),
            }
        };
        let rw =
            format!("rw_{metric}{{entity={ENTITY},instance={instance},kind=node,remote={REMOTE}}}");
        assert_reads_back(&format!("remote write {metric}"), &want, 1e-9, || {
            series(
                format!("rw_{metric}{{entity=\"{ENTITY}\"}}"),
                Some(rw.clone()),
            )
        });
        let ih = format!("ih_{metric}{{db=fp,entity={ENTITY},remote={REMOTE}}}");
        assert_reads_back(&format!("influx http {metric}"), &want, 1e-9, || {
            series(
                format!("ih_{metric}{{entity=\"{ENTITY}\"}}"),
                Some(ih.clone()),
            )
        });
        // v2 writes carry no `db`; VictoriaMetrics names the series alike.
        let i2 = format!("i2_{metric}{{entity={ENTITY},remote={REMOTE}}}");
        assert_reads_back(&format!("influx v2 {metric}"), &want, 1e-9, || {
            series(
                format!("i2_{metric}{{entity=\"{ENTITY}\"}}"),
                Some(i2.clone()),
            )
        });
        let over_udp = over_udp(metric);
        // UDP carries only the metrics its exporters select (and nothing else).
        let path = format!("pve-1.node.pve-1-n1.{metric}");
        let over_graphite_udp = metric == "cpu_avg1";
        if !over_graphite_udp {
            assert!(useries(format!("{{__name__=\"gu.{path}\"}}"), None).is_empty());
        }
        let iu = format!("iu_{metric}{{entity={ENTITY},remote={REMOTE}}}");
        if over_udp {
            assert_reads_back(&format!("influx udp {metric}"), &want, 1e-9, || {
                useries(
                    format!("iu_{metric}{{entity=\"{ENTITY}\"}}"),
                    Some(iu.clone()),
                )
            });
        }
        assert_reads_back(&format!("graphite tcp {metric}"), &want, 1e-9, || {
            series(format!("{{__name__=\"gt.{path}\"}}"), None)
        });
        if over_graphite_udp {
            assert_reads_back(&format!("graphite udp {metric}"), &want, 1e-9, || {
                useries(format!("{{__name__=\"gu.{path}\"}}"), None)
            });
        }
    }
    // Other remotes are not selected by the UDP exporters.
    assert!(vm_udp.export("{__name__=~\"gu[.]pve-2[.].*\"}").is_empty());
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn influxdb_reads_back_every_stored_point_over_http_v1_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let influx = Influx::start(dir.path());
    let config = format!(
        r#"
[[exporters]]
name = "influx-http"
kind = "influxdb"
url = "http://127.0.0.1:{http}/write?db=fp"
remotes = ["pve-1"]
flush_interval_ms = 200

[[exporters]]
name = "influx-udp"
kind = "influxdb"
transport = "udp"
address = "127.0.0.1:{udp}"
remotes = ["pve-1"]
metrics = ["cpu_avg?", "net_in"]
flush_interval_ms = 200
"#,
        http = influx.http,
        udp = influx.udp
    );
    let (_sim, _daemon, port) = start_with_exporters(dir.path(), &config);
    let stored = stored_points(port);
    wait_flushed(port, &["influx-http", "influx-udp"]);
    for (metric, points) in &stored {
        let want = expected(metric, points);
        if want.is_empty() {
            continue;
        }
        assert_reads_back(&format!("influxdb http {metric}"), &want, 1e-12, || {
            influx
                .select("fp", "fleetpoll", ENTITY)
                .remove(metric.as_str())
                .unwrap_or_default()
        });
        if over_udp(metric) {
            assert_reads_back(&format!("influxdb udp {metric}"), &want, 1e-12, || {
                influx
                    .select("fpudp", "fleetpoll", ENTITY)
                    .remove(metric.as_str())
                    .unwrap_or_default()
            });
        }
    }
}

#[test]
fn prometheus_reads_back_every_stored_point_over_remote_write() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(dir.path());
    let config = format!(
        r#"
[[exporters]]
name = "prom"
kind = "prometheus-remote-write"
url = "http://127.0.0.1:{port}/api/v1/write"
headers = {{ "X-Scope-OrgID" = "tenant-1" }}
flush_interval_ms = 200
"#,
        port = prom.http
    );
    let (_sim, _daemon, port) = start_with_exporters(dir.path(), &config);
    let stored = stored_points(port);
    wait_flushed(port, &["prom"]);
    for (metric, points) in &stored {
        let want = expected(metric, points);
        if want.is_empty() {
            continue;
        }
        assert_reads_back(&format!("prometheus {metric}"), &want, 1e-12, || {
            prom.samples(
                &format!(
                    "fleetpoll_{metric}{{entity=\"{ENTITY}\",remote=\"{REMOTE}\",kind=\"node\"}}"
                ),
                "1d",
            )
            .into_values()
            .next()
            .unwrap_or_default()
        });
    }
}

#[test]
fn carbon_cache_reads_back_every_stored_point_over_graphite_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let carbon = Carbon::start(dir.path());
    let config = format!(
        r#"
[[exporters]]
name = "carbon"
kind = "graphite"
address = "127.0.0.1:{line}"
remotes = ["pve-1"]
flush_interval_ms = 200
"#,
        line = carbon.line
    );
    let (_sim, _daemon, port) = start_with_exporters(dir.path(), &config);
    let stored = stored_points(port);
    wait_flushed(port, &["carbon"]);
    for (metric, points) in &stored {
        let want = expected(metric, points);
        if want.is_empty() {
            continue;
        }
        let path = format!("fleetpoll.pve-1.node.pve-1-n1.{metric}");
        assert_reads_back(&format!("carbon {metric}"), &want, 1e-12, || {
            carbon.read(&path).unwrap_or_default()
        });
    }
}

/// Every `name:value|g` line the socket receives within `window`, in order.
fn statsd_lines(socket: &std::net::UdpSocket, window: Duration) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let deadline = Instant::now() + window;
    let mut lines = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            assert!(n <= 1432, "a datagram of {n} bytes is above the path MTU");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines
}

#[test]
fn statsd_gauges_carry_the_newest_stored_sample_of_each_series() {
    let dir = tempfile::tempdir().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = format!(
        r#"
[[exporters]]
name = "statsd"
kind = "statsd"
address = "127.0.0.1:{port}"
prefix = "fp"
remotes = ["pve-1"]
flush_interval_ms = 200
"#,
        port = socket.local_addr().unwrap().port()
    );
    let (_sim, _daemon, port) = start_with_exporters(dir.path(), &config);
    let stored = stored_points(port);
    let lines = statsd_lines(&socket, Duration::from_secs(3));
    wait_flushed(port, &["statsd"]);
    let mut newest: BTreeMap<String, f64> = BTreeMap::new();
    for l in &lines {
        let (name, rest) = l.split_once(':').unwrap();
        let value = rest
            .strip_suffix("|g")
            .expect("a gauge")
            .parse::<f64>()
            .unwrap();
        newest.insert(name.to_string(), value);
    }
    for (metric, points) in &stored {
        let want = expected(metric, points);
        let Some((_, v)) = want.last() else { continue };
        let name = format!("fp.pve-1.node.pve-1-n1.{metric}");
        let got = newest
            .get(&name)
            .unwrap_or_else(|| panic!("{name} was not sent: {lines:?}"));
        assert!(
            (got - v).abs() <= 1e-12 * v.abs().max(1.0),
            "{name}: stored {v}, sent {got}"
        );
    }
    // One line per series per batch: the backfill's older samples are not sent.
    let sent_for_entity = lines
        .iter()
        .filter(|l| l.starts_with("fp.pve-1.node.pve-1-n1."))
        .count();
    assert!(
        sent_for_entity <= 2 * stored.len(),
        "{sent_for_entity} lines for {} series",
        stored.len()
    );
}

#[test]
fn a_receiver_down_for_30_s_gets_what_the_queue_held_and_the_rest_is_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Victoria::start(dir.path());
    // About one collection of pve-1 fits the queue; the outage sees several.
    let config = format!(
        r#"
[[exporters]]
name = "rw"
kind = "prometheus-remote-write"
url = "http://127.0.0.1:{http}/api/v1/write"
remotes = ["pve-1"]
queue_max_points = 3000
batch_max_points = 500
flush_interval_ms = 200
timeout_secs = 2
"#,
        http = vm.http
    );
    let (_sim, _daemon, port) = start_with_exporters(dir.path(), &config);
    wait_flushed(port, &["rw"]);
    // The first (backfill) collection alone is larger than the queue.
    let before = exporters(port)["rw"].clone();
    let collect = || {
        let started = Instant::now();
        let (status, body) = http(
            port,
            "POST",
            "/api/v1/collect",
            r#"{"remote":"pve-1","wait":true}"#,
        );
        assert_eq!(status, 200, "{body}");
        started.elapsed()
    };

    vm.stop();
    let down_at = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut cycles = 0;
    while down_at.elapsed() < Duration::from_secs(30) {
        // The simulator makes a new generation every 10 s.
        #[allow(clippy::disallowed_methods)] // reason: waiting for the simulator's next generation
        std::thread::sleep(Duration::from_secs(5));
        slowest = slowest.max(collect());
        cycles += 1;
    }
    let during = exporters(port)["rw"].clone();
    assert!(
        during["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "{during}"
    );
    assert!(during["queued"].as_u64().unwrap() <= 3000 + 500, "{during}");
    // Polling goes on at its own pace while the receiver is down.
    assert!(
        slowest < Duration::from_secs(5),
        "a collection took {slowest:?} during the outage"
    );
    assert!(cycles >= 5);

    vm.restart();
    let mut after = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(60),
        "the queue drained after the restart",
        || {
            after = exporters(port)["rw"].clone();
            after["queued"] == 0 && after["sent"].as_u64() > before["sent"].as_u64()
        },
    );
    let dropped = after["dropped"].as_u64().unwrap();
    assert!(
        dropped > 0,
        "the outage overflowed the queue, yet nothing was dropped: {after}"
    );
    // Everything the exporter counts as sent is in the receiver, exactly once.
    let samples: usize = vm
        .export("{__name__=~\"fleetpoll_.*\",remote=\"pve-1\"}")
        .values()
        .map(Vec::len)
        .sum();
    wait_until(
        Duration::from_secs(30),
        "the receiver holds every sent point",
        || {
            let n: usize = vm
                .export("{__name__=~\"fleetpoll_.*\",remote=\"pve-1\"}")
                .values()
                .map(Vec::len)
                .sum();
            n as u64 == after["sent"].as_u64().unwrap()
        },
    );
    let _ = samples;
    // The newest points (stored during the outage, within the bound) arrived.
    let stored = stored(port, REMOTE, ENTITY);
    let (metric, points) = stored.iter().find(|(m, _)| !is_derive(m)).unwrap();
    let newest = *points.last().unwrap();
    assert_reads_back("the newest point", &[newest], 1e-9, || {
        vm.export(&format!("fleetpoll_{metric}{{entity=\"{ENTITY}\"}}"))
            .into_values()
            .next()
            .unwrap_or_default()
    });
}

#[test]
fn a_reload_adds_and_removes_an_exporter_without_restarting_pollers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (_sim, config, port) = fleet_config(dir.path(), &[], &[]);
    let base = std::fs::read_to_string(&config).unwrap();
    let _daemon = spawn_daemon(&config, &[], Some(&dir.path().join("daemon.log")));
    wait_all_ok(port);
    assert!(exporters(port).is_empty());
    let (_, tree_before) = json(port, "GET", "/api/v1/tree", "");
    let restarts = |port| -> Vec<(String, u64)> {
        let (_, v) = json(port, "GET", "/api/v1/remotes", "");
        v["remotes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["remote"].as_str().unwrap().to_string(),
                    r["restarts"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let restarts_before = restarts(port);

    let statsd = format!(
        "\n[[exporters]]\nname = \"added\"\nkind = \"statsd\"\naddress = \"127.0.0.1:{}\"\nremotes = [\"pve-1\"]\nflush_interval_ms = 100\n",
        socket.local_addr().unwrap().port()
    );
    std::fs::write(&config, format!("{base}{statsd}")).unwrap();
    let (status, reply) = json(port, "POST", "/api/v1/reload", "{}");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["exporters"]["added"],
        serde_json::json!(["added"]),
        "{reply}"
    );
    for key in ["added", "removed", "changed"] {
        assert_eq!(
            reply[key],
            serde_json::json!([]),
            "no remote changes: {reply}"
        );
    }
    assert_eq!(exporters(port)["added"]["kind"], "statsd");
    // The next batch of pve-1 (the simulator's generations are 10 s apart) is sent.
    wait_until(Duration::from_secs(40), "the added exporter sends", || {
        http(
            port,
            "POST",
            "/api/v1/collect",
            r#"{"remote":"pve-1","wait":true}"#,
        );
        statsd_lines(&socket, Duration::from_secs(1))
            .iter()
            .any(|l| l.starts_with("fleetpoll.pve-1."))
    });

    // A reload of the same file changes nothing; removing the table stops the exporter.
    let (_, reply) = json(port, "POST", "/api/v1/reload", "{}");
    assert_eq!(
        reply["exporters"],
        serde_json::json!({"added": [], "removed": [], "changed": []})
    );
    // Changing one key replaces that exporter, and only it.
    let changed = statsd.replace("flush_interval_ms = 100", "flush_interval_ms = 150");
    std::fs::write(&config, format!("{base}{changed}")).unwrap();
    let (_, reply) = json(port, "POST", "/api/v1/reload", "{}");
    assert_eq!(
        reply["exporters"],
        serde_json::json!({"added": [], "removed": [], "changed": ["added"]}),
        "{reply}"
    );
    assert_eq!(exporters(port)["added"]["kind"], "statsd");
    std::fs::write(&config, &base).unwrap();
    let (status, reply) = json(port, "POST", "/api/v1/reload", "{}");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["exporters"]["removed"],
        serde_json::json!(["added"]),
        "{reply}"
    );
    assert!(exporters(port).is_empty());
    let _ = statsd_lines(&socket, Duration::from_millis(500));
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/collect",
        r#"{"remote":"pve-1","wait":true}"#,
    );
    assert_eq!(status, 200);
    assert!(
        statsd_lines(&socket, Duration::from_secs(1)).is_empty(),
        "a removed exporter still sends"
    );

    // No poller was restarted.
    assert_eq!(restarts(port), restarts_before);
    let (_, tree_after) = json(port, "GET", "/api/v1/tree", "");
    assert_eq!(
        tree_before["children"].as_array().map(Vec::len),
        tree_after["children"].as_array().map(Vec::len)
    );
}

#[test]
fn https_receivers_are_pinned_by_fingerprint_and_a_4xx_is_reported_not_retried() {
    // The simulator's HTTPS listener stands in for a receiver: its certificate is
    // self-signed (trusted only through the pin) and it answers 404 to a write.
    let dir = tempfile::tempdir().unwrap();
    let (_sim, config, port) = fleet_config(dir.path(), &[], &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    let value_of = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key} = \"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap()
    };
    let (address, fingerprint) = (value_of("address"), value_of("fingerprint"));
    let wrong = format!("00{}", &fingerprint[2..]);
    let exporters_toml = format!(
        r#"
[[exporters]]
name = "pinned"
kind = "prometheus-remote-write"
url = "https://{address}/api/v1/write"
fingerprint = "{fingerprint}"
remotes = ["pve-1"]
flush_interval_ms = 100

[[exporters]]
name = "wrong-pin"
kind = "prometheus-remote-write"
url = "https://{address}/api/v1/write"
fingerprint = "{wrong}"
remotes = ["pve-1"]
flush_interval_ms = 100
"#
    );
    std::fs::write(&config, format!("{text}\n{exporters_toml}")).unwrap();
    let _daemon = spawn_daemon(&config, &[], Some(&dir.path().join("daemon.log")));
    wait_all_ok(port);
    let mut ex = BTreeMap::new();
    wait_until(Duration::from_secs(30), "both exporters tried", || {
        ex = exporters(port);
        ex.values().all(|e| e["last_error"].is_string())
    });
    let pinned = &ex["pinned"];
    let error = pinned["last_error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 4"),
        "the pinned TLS handshake worked: {pinned}"
    );
    assert!(error.contains("not retried"), "{pinned}");
    assert!(pinned["rejected"].as_u64().unwrap() > 0, "{pinned}");
    // A rejected chunk is not kept: the queue empties (new batches keep arriving, so
    // it is not empty at every instant, but each is rejected and dropped at once).
    wait_until(
        Duration::from_secs(20),
        "the rejected chunks left the queue",
        || exporters(port)["pinned"]["queued"] == 0,
    );
    assert_eq!(pinned["transport"], "https");
    let wrong = &ex["wrong-pin"];
    let error = wrong["last_error"].as_str().unwrap();
    assert!(
        error.contains("TLS") && error.contains("retrying"),
        "{wrong}"
    );
    assert_eq!(wrong["rejected"], 0, "{wrong}");
    // Neither the URL nor the address is shown.
    let (_, body) = http(port, "GET", "/api/v1/exporters", "");
    assert!(!body.contains(&address), "{body}");
}

#[test]
fn with_the_local_rrd_off_every_point_still_reaches_the_receiver_no_file_is_written_and_unused_remotes_are_not_polled(
) {
    let dir = tempfile::tempdir().unwrap();
    let vm = Victoria::start(dir.path());
    let (_sim, config, port) = fleet_config(dir.path(), &[], &[("rrd = true\n", "rrd = false\n")]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[exporters]]\nname = \"vm-rw\"\nkind = \"prometheus-remote-write\"\n\
         url = \"http://127.0.0.1:{}/api/v1/write\"\nprefix = \"rw\"\nremotes = [\"pve-1\"]\n\
         flush_interval_ms = 200\n",
        vm.http
    ));
    std::fs::write(&config, &text).unwrap();
    let _daemon = spawn_daemon(&config, &[], Some(&dir.path().join("daemon.log")));
    // Only pve-1's metrics are used (the exporter selects it, no rule, no RRD): the
    // others are not polled for metrics, and show it; their tasks still are fetched.
    wait_until(
        Duration::from_secs(30),
        "pve-1 ok, the others unused",
        || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && {
                let states = daemon_support::states(port);
                states.len() > 1
                    && states.iter().all(|(id, s)| {
                        if id == REMOTE {
                            s == "ok"
                        } else {
                            s == "unused"
                        }
                    })
            }
        },
    );
    wait_until(
        Duration::from_secs(30),
        "the unused remotes' tasks are fetched",
        || {
            let (_, v) = daemon_support::json(port, "GET", "/api/v1/remotes", "");
            v["remotes"].as_array().unwrap().iter().all(|r| {
                r["remote"] == REMOTE
                    || (r["points_stored"] == 0 && r["tasks_last_success"].is_i64())
            })
        },
    );
    let stored = stored_points(port);
    wait_flushed(port, &["vm-rw"]);
    for (metric, points) in &stored {
        let want = expected(metric, points);
        if want.is_empty() {
            continue;
        }
        assert_reads_back(&format!("rrd = false, {metric}"), &want, 1e-9, || {
            vm.export(&format!("rw_{metric}{{entity=\"{ENTITY}\"}}"))
                .into_values()
                .next()
                .unwrap_or_default()
        });
    }
    let state_dir = text
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = "))
        .map(|v| PathBuf::from(v.trim_matches('"')))
        .expect("the config names its state_dir");
    let files: Vec<PathBuf> = walk(&state_dir.join("metrics"));
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_none_or(|e| e != "rrd")),
        "no RRD file with rrd = false: {files:?}"
    );
    let (status, _) = http(port, "GET", &format!("/api/v1/rrd/{REMOTE}/{ENTITY}"), "");
    assert_ne!(status, 200, "no local history");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

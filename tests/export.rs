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
use std::path::Path;
use std::time::Duration;

use daemon_support::*;
use export_support::*;

/// The entity whose every stored point is compared.
const REMOTE: &str = "pve-1";
const ENTITY: &str = "node/pve-1-n1";

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
    let config = format!(
        r#"
[[exporters]]
name = "vm-rw"
kind = "prometheus-remote-write"
url = "http://127.0.0.1:{http}/api/v1/write"
prefix = "rw"
flush_interval_ms = 200

[[exporters]]
name = "vm-graphite-tcp"
kind = "graphite"
address = "127.0.0.1:{graphite}"
prefix = "gt"
flush_interval_ms = 200

[[exporters]]
name = "vm-graphite-udp"
kind = "graphite"
transport = "udp"
address = "127.0.0.1:{graphite}"
prefix = "gu"
remotes = ["pve-1"]
metrics = ["cpu_*", "net_*"]
flush_interval_ms = 200

[[exporters]]
name = "vm-influx-http"
kind = "influxdb"
url = "http://127.0.0.1:{http}/write?db=fp"
prefix = "ih"
flush_interval_ms = 200

[[exporters]]
name = "vm-influx-udp"
kind = "influxdb"
transport = "udp"
address = "127.0.0.1:{influx}"
prefix = "iu"
remotes = ["pve-1"]
metrics = ["cpu_*", "net_*"]
flush_interval_ms = 200
"#,
        http = vm.http,
        graphite = vm.graphite,
        influx = vm.influx
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
        let over_udp = metric.starts_with("cpu_") || metric.starts_with("net_");
        // UDP carries only the metrics its exporters select (and nothing else).
        let path = format!("pve-1.node.pve-1-n1.{metric}");
        if !over_udp {
            assert!(series(format!("{{__name__=\"gu.{path}\"}}"), None).is_empty());
        }
        let iu = format!("iu_{metric}{{entity={ENTITY},remote={REMOTE}}}");
        if over_udp {
            assert_reads_back(&format!("influx udp {metric}"), &want, 1e-9, || {
                series(
                    format!("iu_{metric}{{entity=\"{ENTITY}\"}}"),
                    Some(iu.clone()),
                )
            });
        }
        assert_reads_back(&format!("graphite tcp {metric}"), &want, 1e-9, || {
            series(format!("{{__name__=\"gt.{path}\"}}"), None)
        });
        if over_udp {
            assert_reads_back(&format!("graphite udp {metric}"), &want, 1e-9, || {
                series(format!("{{__name__=\"gu.{path}\"}}"), None)
            });
        }
    }
    // Other remotes are not selected by the UDP exporters.
    assert!(vm.export("{__name__=~\"gu[.]pve-2[.].*\"}").is_empty());
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

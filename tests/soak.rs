//! The fault soak, small enough for CI: `fleetpoll-bench soak` (the scenario's one
//! implementation, `src/bin/fleetpoll-bench/soak.rs`) with 60 remotes — half PVE, 30 %
//! PBS, 20 % Prometheus targets; 10 % hanging, 10 % answering 500 at random, 5 %
//! malformed or oversized, 5 % with a wrong certificate, one with its clock a day ahead,
//! one target over its series limit — for 100 s of 10-second cycles after a
//! fault-free baseline, rules and a statsd exporter on. It asserts the soak's targets
//! that do not depend on the machine's load: every healthy remote collected in every
//! cycle, no failure of a faulty remote outside its fault's error class, no escaped
//! panic, descriptors and memory bounded.

use std::process::Command;

use serde_json::Value;

#[test]
fn a_faulty_fleet_leaves_the_healthy_remotes_collected_and_every_fault_classified() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetpoll-bench"))
        .args(["soak", "--remotes", "60", "--interval-secs", "10"])
        .args(["--baseline-secs", "40", "--duration-secs", "100"])
        .args(["--warmup-cycles", "2"])
        .output()
        .expect("fleetpoll-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("{last}");
    let context = format!("{last}\n{stderr}");
    assert!(v["cycles_measured"].as_u64().unwrap() >= 5, "{context}");
    assert!(v["healthy_pairs"].as_u64().unwrap() >= 5 * 40, "{context}");
    assert_eq!(v["healthy_collected_pct"], 100.0, "{context}");
    assert_eq!(v["misclassified"], 0, "{context}");
    assert_eq!(v["escaped_panics"], 0, "{context}");
    // Every kind of fault was seen failing, each in its own class.
    for kind in [
        "hang:timeout",
        "error_rate:remote",
        "malformed:bad_reply",
        "oversize:bad_reply",
        "wrong_cert:tls",
        "clock_ahead:clock",
        "series_limit:bad_reply",
    ] {
        assert!(
            v["faulty_failures_seen"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind} failure seen: {context}"
        );
    }
    assert!(v["fd_growth"].as_i64().unwrap() <= 8, "{context}");
    assert!(v["rss_growth_mib"].as_f64().unwrap() <= 16.0, "{context}");
    assert!(v["statsd_datagrams"].as_u64().unwrap() > 0, "{context}");
}

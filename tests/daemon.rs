//! `fleetpoll run` end to end: the daemon binary against `fleetpoll sim` over HTTPS,
//! both as real processes, driven through the HTTP API and signals.

mod daemon_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;

use daemon_support::*;

#[test]
fn the_daemon_polls_the_fleet_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.toml");
    let _sim = start_sim(&full);
    let text = std::fs::read_to_string(&full).unwrap();
    let secrets: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("token = \""))
        .map(|s| s.trim_end_matches('"').to_string())
        .collect();
    assert_eq!(secrets.len(), 5);

    // Start with pbs-2 left out; the API on a free port.
    let port = free_port();
    let base = text.replace("127.0.0.1:8450", &format!("127.0.0.1:{port}"));
    let (first, pbs2) = base.split_at(base.rfind("[[remotes]]").unwrap());
    let config = dir.path().join("fleetpoll.toml");
    std::fs::write(&config, first).unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = spawn_daemon(&config, &[("RUST_LOG", "debug".as_ref())], Some(&log));
    wait_all_ok(port);
    assert_eq!(states(port).len(), 4);

    // A waited collection returns once stored.
    let (status, v) = json(
        port,
        "POST",
        "/api/v1/collect",
        r#"{"remote":"pve-1","wait":true}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["ok"], true, "{v}");
    let (status, _) = json(port, "POST", "/api/v1/collect", r#"{"remote":"ghost"}"#);
    assert_eq!(status, 404);
    let (status, metrics) = http(port, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("fleetpoll_remotes{state=\"ok\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleetpoll_poll_duration_seconds_count"),
        "{metrics}"
    );
    let ok_polls: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fleetpoll_polls_total{outcome=\"ok\",class=\"\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(ok_polls >= 5, "{metrics}");

    // SIGHUP: pbs-2 added, pve-3 removed, pve-2 changed.
    let without_pve3 = {
        let start = first.find("id = \"pve-3\"").unwrap();
        let block_start = first[..start].rfind("[[remotes]]").unwrap();
        let block_end = first[start..]
            .find("[[remotes]]")
            .map_or(first.len(), |i| start + i);
        format!("{}{}", &first[..block_start], &first[block_end..])
    };
    let changed = without_pve3.replacen("id = \"pve-2\"", "id = \"pve-2\"\nconnection_cap = 2", 1);
    std::fs::write(&config, format!("{changed}{pbs2}")).unwrap();
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until(Duration::from_secs(20), "the reload is applied", || {
        let (_, d) = json(port, "GET", "/api/v1/daemon", "");
        d["last_reload"]["ok"] == true
    });
    let (_, d) = json(port, "GET", "/api/v1/daemon", "");
    let report = &d["last_reload"]["report"];
    assert_eq!(report["added"], serde_json::json!(["pbs-2"]), "{d}");
    assert_eq!(report["removed"], serde_json::json!(["pve-3"]), "{d}");
    assert_eq!(report["changed"], serde_json::json!(["pve-2"]), "{d}");
    wait_until(Duration::from_secs(30), "the added remote is ok", || {
        states(port)
            .iter()
            .any(|(id, s)| id == "pbs-2" && s == "ok")
    });

    // SIGHUP with a broken file: rejected, the daemon keeps running its config.
    std::fs::write(&config, "[collection]\ninterval_secs = \"soon\"\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until(
        Duration::from_secs(20),
        "the bad reload is reported",
        || {
            let (_, d) = json(port, "GET", "/api/v1/daemon", "");
            d["last_reload"]["ok"] == false
        },
    );
    let (_, d) = json(port, "GET", "/api/v1/daemon", "");
    let err = d["last_reload"]["error"].as_str().unwrap();
    assert!(err.contains("collection.interval_secs"), "{err}");
    assert_eq!(states(port).len(), 4, "the running config stays");

    // Secrets appear in no API output.
    for path in [
        "/api/v1/remotes",
        "/api/v1/tree",
        "/api/v1/daemon",
        "/metrics",
    ] {
        let (_, body) = http(port, "GET", path, "");
        for s in &secrets {
            assert!(!body.contains(s.as_str()), "{path} leaks a token");
        }
    }

    // SIGTERM: exit 0 within the grace period.
    let stopped = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(stopped.elapsed() < Duration::from_secs(15));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("config reloaded"), "{logs}");
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "the log leaks a token");
    }
}

#[test]
fn run_with_a_bad_config_exits_64_before_binding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[api]\nlisten = \"0.0.0.0:8450\"\n").unwrap();
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("api.listen") && stderr.contains("token"),
        "{stderr}"
    );
}

#[test]
fn a_live_stream_follows_from_since_without_gap_and_sees_new_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _daemon, port) = start_fleet(dir.path());
    let (_, st) = json(port, "GET", "/api/v1/remotes/pbs-1", "");
    let cursor = st["newest_datapoint"].as_i64().unwrap();

    // Follow pbs-1 from a point 60 s before its cursor: the replay delivers exactly the
    // stored samples after it, then a new collection arrives live.
    let since = cursor - 60;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /api/v1/live?remote=pbs-1&since={since} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut triggered = false;
    let mut live_ts = 0;
    while Instant::now() < deadline {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        let timestamps: Vec<i64> = seen
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .flat_map(|v| {
                v["points"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["ts"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        if !triggered && !timestamps.is_empty() {
            assert!(
                timestamps.iter().all(|t| *t > since),
                "replay starts after since"
            );
            assert!(timestamps.contains(&cursor), "replay reaches the cursor");
            triggered = true;
            // Wait for a new generation, then collect it.
            std::thread::spawn(move || {
                #[allow(clippy::disallowed_methods)] // reason: the simulator's 10 s generations
                std::thread::sleep(Duration::from_secs(11));
                http(
                    port,
                    "POST",
                    "/api/v1/collect",
                    r#"{"remote":"pbs-1","wait":true}"#,
                );
            });
        }
        if let Some(max) = timestamps.iter().max() {
            if *max > cursor {
                live_ts = *max;
                break;
            }
        }
    }
    assert!(live_ts > cursor, "no new samples arrived live:\n{seen}");
    // No sample is delivered twice.
    let mut triples: Vec<(String, String, i64)> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .flat_map(|v| {
            let entity = v["entity"].as_str().unwrap().to_string();
            v["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        entity.clone(),
                        p["metric"].as_str().unwrap().to_string(),
                        p["ts"].as_i64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let total = triples.len();
    triples.sort();
    triples.dedup();
    assert_eq!(triples.len(), total, "a sample was delivered twice");
}

#[test]
fn status_and_trigger_commands_talk_to_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _daemon, port) = start_fleet(dir.path());
    let api = format!("http://127.0.0.1:{port}");
    let out = Command::new(bin())
        .args(["status", "--api", &api])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("REMOTE"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" ok ")).count(),
        5,
        "{table}"
    );
    assert!(table.lines().next().unwrap().contains("HEALTH"), "{table}");

    let out = Command::new(bin())
        .args(["trigger", "pve-2", "--wait", "--json", "--api", &api])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cursor = v["results"][0]["result"]["cursor"].as_i64().unwrap();
    // Once trigger --wait returns, the data is there.
    let (_, st) = json(port, "GET", "/api/v1/remotes/pve-2", "");
    assert_eq!(st["newest_datapoint"].as_i64(), Some(cursor));

    let out = Command::new(bin())
        .args(["trigger", "nope", "--api", &api])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = Command::new(bin())
        .args(["status", "--api", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the fleetpoll API"));
}

#[test]
fn under_systemd_the_daemon_reports_ready_pings_the_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.toml");
    let _sim = start_sim(&full);
    let port = free_port();
    let text = std::fs::read_to_string(&full)
        .unwrap()
        .replace("127.0.0.1:8450", &format!("127.0.0.1:{port}"));
    let config = dir.path().join("fleetpoll.toml");
    std::fs::write(&config, text).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut daemon = spawn_daemon(
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.as_os_str()),
            ("WATCHDOG_USEC", "400000".as_ref()),
        ],
        None,
    );
    let mut buf = [0u8; 512];
    let mut recv = || {
        let n = socket.recv(&mut buf).expect("a notification arrives");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.starts_with("READY=1"), "{first}");
    // Pinged every 200 ms while the tree is healthy.
    let mut pings = 0;
    while pings < 3 {
        if recv() == "WATCHDOG=1" {
            pings += 1;
        }
    }
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut stopping = false;
    for _ in 0..20 {
        if recv() == "STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 was not sent");
    assert!(daemon.0.wait().unwrap().success());
}

#[test]
fn a_restarted_daemon_resumes_from_the_stored_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut daemon, port) = start_fleet(dir.path());
    let status = |port| {
        let (_, v) = json(port, "GET", "/api/v1/remotes/pve-1", "");
        (
            v["newest_datapoint"].as_i64().unwrap_or(0),
            v["points_stored"].as_u64().unwrap_or(0),
        )
    };
    let (cursor_before, first_points) = status(port);
    assert!(first_points > 1000, "the first poll fetched the history");
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(daemon.0.wait().unwrap().success());

    // Same config, same data directory.
    let config = dir.path().join("fleetpoll.toml");
    let _again = spawn_daemon(&config, &[], None);
    wait_until(Duration::from_secs(30), "the daemon is back", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Its cursor comes back from the files before any poll.
    let (cursor_after_start, _) = status(port);
    assert_eq!(
        cursor_after_start, cursor_before,
        "the cursor is read back from disk"
    );
    // A poll after the restart fetches only what is new since the cursor.
    wait_until(Duration::from_secs(20), "a new generation exists", || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now >= cursor_before + 10
    });
    let (status_code, v) = json(
        port,
        "POST",
        "/api/v1/collect",
        r#"{"remote":"pve-1","wait":true}"#,
    );
    assert_eq!(status_code, 200, "{v}");
    let (cursor_after, points_after) = status(port);
    assert!(cursor_after > cursor_before, "new points arrived");
    assert!(
        points_after * 10 < first_points,
        "after the restart only new points are fetched ({points_after} vs {first_points} at first)"
    );
}

#[test]
fn tasks_are_listed_and_filtered_and_a_tracked_task_is_seen_finished_within_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _daemon, port) = start_fleet_with(
        dir.path(),
        &["--task-interval-secs", "60"],
        &[("backfill_days = 7", "backfill_days = 1")],
    );
    let (status, v) = json(port, "POST", "/api/v1/tasks/refresh", r#"{"wait":true}"#);
    assert_eq!(status, 200, "{v}");
    let (_, all) = json(port, "GET", "/api/v1/tasks?limit=5", "");
    let total = all["total"].as_u64().unwrap();
    assert!(
        total > 1000,
        "a day of tasks of 11 nodes at one a minute: {all}"
    );
    let starts: Vec<i64> = all["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["starttime"].as_i64().unwrap())
        .collect();
    assert_eq!(starts.len(), 5);
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    let (_, pbs) = json(port, "GET", "/api/v1/tasks?remote=pbs-1&limit=0", "");
    let pbs_tasks = pbs["tasks"].as_array().unwrap();
    assert!(!pbs_tasks.is_empty());
    assert!(pbs_tasks
        .iter()
        .all(|t| t["remote"] == "pbs-1"
            && t["upid"].as_str().unwrap().starts_with("pbs:pbs-1!UPID:")));
    let (status, err) = json(port, "GET", "/api/v1/tasks?status=sideways", "");
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("status"), "{err}");
    let (status, _) = json(port, "GET", "/api/v1/tasks?remote=ghost", "");
    assert_eq!(status, 404);
    let out = Command::new(bin())
        .args([
            "tasks",
            "--remote",
            "pve-1",
            "--limit",
            "3",
            "--api",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        table.lines().filter(|l| l.contains(" pve-1 ")).count(),
        3,
        "{table}"
    );

    // Track every running task; the first to finish is reported within one tick (10 s).
    let (_, running) = json(port, "GET", "/api/v1/tasks?running=true&limit=0", "");
    let running: Vec<String> = running["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["upid"].as_str().unwrap().to_string())
        .collect();
    assert!(!running.is_empty(), "the simulator has running tasks");
    for upid in &running {
        let (status, v) = json(
            port,
            "POST",
            "/api/v1/tasks/track",
            &format!(r#"{{"upid":"{upid}"}}"#),
        );
        assert_eq!(status, 200, "{v}");
    }
    let (status, bad) = json(
        port,
        "POST",
        "/api/v1/tasks/track",
        r#"{"upid":"pve:pve-1!UPID:garbage"}"#,
    );
    assert_eq!(status, 400, "{bad}");
    let mut finished = None;
    wait_until(Duration::from_secs(120), "a tracked task finishes", || {
        let (_, t) = json(port, "GET", "/api/v1/tasks/tracked", "");
        let still: Vec<&str> = t["tracked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        finished = running
            .iter()
            .find(|u| !still.contains(&u.as_str()))
            .cloned();
        finished.is_some()
    });
    let seen_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let upid = finished.unwrap();
    let remote = upid.split_once(':').unwrap().1.split_once('!').unwrap().0;
    // The finished task's end time, from the refetched list.
    let mut end = None;
    // How long the refetch takes does not matter (the lag is measured from when the
    // tracking noticed the end); under load it can take longer than a tick.
    wait_until(
        Duration::from_secs(45),
        "the list shows it finished",
        || {
            let (_, page) = json(
                port,
                "GET",
                &format!("/api/v1/tasks?remote={remote}&limit=0"),
                "",
            );
            end = page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["upid"] == upid.as_str())
                .and_then(|t| t["endtime"].as_i64());
            end.is_some()
        },
    );
    let lag = seen_at - end.unwrap();
    assert!(
        lag <= 12,
        "the finish was noticed {lag} s after it happened (tick 10 s)"
    );
}

#[test]
fn history_is_served_per_timeframe_and_top_lists_rank_guests_and_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _daemon, port) = start_fleet(dir.path());
    let (status, v) = json(
        port,
        "GET",
        "/api/v1/rrd/pve-1/node/pve-1-n1?timeframe=hour",
        "",
    );
    assert_eq!(status, 200, "{v}");
    let data = &v["data"];
    assert_eq!(data["step"], 60);
    let rows = data["timestamps"].as_array().unwrap().len();
    assert!((60..=62).contains(&rows), "an hour of minutes: {rows}");
    let cpu = data["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "cpu_current")
        .expect("the node's cpu is stored");
    let known: Vec<f64> = cpu["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(
        known.len() >= 20,
        "30 minutes of history are known: {known:?}"
    );
    assert!(known.iter().all(|c| (0.0..=1.0).contains(c)));
    let (status, day) = json(
        port,
        "GET",
        "/api/v1/rrd/pve-1/node/pve-1-n1?timeframe=day&cf=MAX",
        "",
    );
    assert_eq!(status, 200, "{day}");
    assert_eq!(day["data"]["step"], 1800);
    for (path, code, needle) in [
        (
            "/api/v1/rrd/pve-1/node/pve-1-n1?timeframe=fortnight",
            400,
            "timeframe",
        ),
        ("/api/v1/rrd/pve-1/node/pve-1-n1?cf=MEDIAN", 400, "cf"),
        (
            "/api/v1/rrd/pve-1/qemu/99999?timeframe=hour",
            404,
            "qemu/99999",
        ),
        ("/api/v1/rrd/ghost/node/x?timeframe=hour", 404, "ghost"),
    ] {
        let (status, e) = json(port, "GET", path, "");
        assert_eq!(status, code, "{path}: {e}");
        assert!(e["error"].as_str().unwrap().contains(needle), "{path}: {e}");
    }
    let out = Command::new(bin())
        .args([
            "query",
            "pve-1/node/pve-1-n1",
            "--api",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cpu_current"));

    let (status, top) = json(port, "GET", "/api/v1/top?timeframe=hour&n=3", "");
    assert_eq!(status, 200, "{top}");
    let guests = top["guests_by_cpu"].as_array().unwrap();
    assert_eq!(guests.len(), 3, "{top}");
    let values: Vec<f64> = guests
        .iter()
        .map(|g| g["value"].as_f64().unwrap())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] >= w[1]),
        "ranked: {values:?}"
    );
    assert!(
        !top["nodes_by_memory"].as_array().unwrap().is_empty(),
        "{top}"
    );
}

#[test]
fn with_an_api_token_mutating_endpoints_need_it_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _daemon, port) = start_fleet_with_token(dir.path(), "api-secret-123");
    let (status, e) = json(port, "POST", "/api/v1/collect", r#"{"remote":"pbs-1"}"#);
    assert_eq!(status, 401, "{e}");
    assert!(e["error"].as_str().unwrap().contains("Bearer"), "{e}");
    let (status, _) = json(port, "GET", "/api/v1/remotes", "");
    assert_eq!(status, 200);
    let api = format!("http://127.0.0.1:{port}");
    let out = Command::new(bin())
        .args(["trigger", "pbs-1", "--wait", "--api", &api])
        .env("FLEETPOLL_API_TOKEN", "api-secret-123")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin())
        .args(["trigger", "pbs-1", "--api", &api])
        .env("FLEETPOLL_API_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // The token is not echoed anywhere.
    let (_, daemon_info) = http(port, "GET", "/api/v1/daemon", "");
    assert!(!daemon_info.contains("api-secret-123"));
}

#[test]
fn a_reload_applies_a_new_api_token_and_refuses_keys_that_need_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, "old-secret-1\n").unwrap();
    std::fs::set_permissions(&token_file, PermissionsExt::from_mode(0o600)).unwrap();
    let token_line = format!("token_file = \"{}\"\n", token_file.display());
    let (_sim, daemon, port) = start_fleet_with(
        dir.path(),
        &[],
        &[("[api]\n", &format!("[api]\n{token_line}"))],
    );
    let reload_with = |token: &str| {
        let request = format!(
            "POST /api/v1/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    };

    // The token file changes; SIGHUP applies it: the old token is refused, the new works.
    std::fs::write(&token_file, "new-secret-2\n").unwrap();
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until(Duration::from_secs(10), "the new token is taken", || {
        reload_with("new-secret-2").starts_with("HTTP/1.1 200")
    });
    assert!(reload_with("old-secret-1").starts_with("HTTP/1.1 401"));

    // A key only a restart can change is refused whole, naming it; the token stays.
    let config = dir.path().join("fleetpoll.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = text.replace(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", free_port()),
    );
    std::fs::write(&config, moved).unwrap();
    let reply = reload_with("new-secret-2");
    assert!(
        reply.contains("api.listen") && reply.contains("restart"),
        "{reply}"
    );
    let (_, info) = json(port, "GET", "/api/v1/daemon", "");
    assert_eq!(info["last_reload"]["ok"], false, "{info}");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_exits_non_zero_naming_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _first, port) = start_fleet(dir.path());
    let text = std::fs::read_to_string(dir.path().join("fleetpoll.toml")).unwrap();
    let state_dir = text
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = "))
        .expect("the config names its state_dir")
        .trim_matches('"')
        .to_string();
    // Its own API port and cache directory, the same state directory.
    let second_port = free_port();
    let second: String = text
        .replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{second_port}"),
        )
        .lines()
        .map(|l| match l.strip_prefix("cache_dir = ") {
            Some(v) => format!("cache_dir = \"{}-second\"\n", v.trim_matches('"')),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(second, text);
    let config = dir.path().join("second.toml");
    std::fs::write(&config, second).unwrap();
    let log = dir.path().join("second.log");
    let mut daemon = spawn_daemon(&config, &[], Some(&log));
    let mut status = None;
    wait_until(Duration::from_secs(20), "the second daemon exits", || {
        status = daemon.0.try_wait().unwrap();
        status.is_some()
    });
    let status = status.unwrap();
    assert!(!status.success(), "{status:?}");
    assert_ne!(status.code(), Some(64), "not a config error");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains(&state_dir), "{stderr}");
    assert!(stderr.contains("store.lock"), "{stderr}");
    assert!(stderr.contains("another process"), "{stderr}");
    assert!(
        TcpStream::connect(("127.0.0.1", second_port)).is_err(),
        "it bound nothing"
    );
    // The first one runs on.
    wait_all_ok(port);
}

//! The daemon's API under careless and hostile clients, end to end: `fleetpoll run`
//! against `fleetpoll sim`, both as processes, over loopback sockets. Every bound of
//! `docs/operations.md` ("Limits") that shows at this level has a test here.

mod daemon_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use daemon_support::*;

#[test]
fn reading_a_backing_off_remotes_history_starts_no_collection() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, config, port) = fleet_config(dir.path(), &["--fault", "wrong-cert@pve-3"], &[]);
    let _daemon = spawn_daemon(&config, &[], None);
    // pve-3's certificate does not match its pin: it backs off (up to 3 min, jittered).
    let mut before = Value::Null;
    wait_until(
        Duration::from_secs(120),
        "pve-3 backs off with its retry at least 15 s away",
        || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() && {
                before = remote_status(port, "pve-3");
                before["state"] == "backoff"
                    && before["next_attempt"]
                        .as_i64()
                        .is_some_and(|t| t >= unix_now() + 15)
            }
        },
    );
    for _ in 0..5 {
        let (status, e) = json(
            port,
            "GET",
            "/api/v1/rrd/pve-3/node/pve-3-n1?timeframe=hour",
            "",
        );
        assert_eq!(status, 404, "nothing is stored for pve-3: {e}");
    }
    let after = remote_status(port, "pve-3");
    assert!(
        unix_now() < before["next_attempt"].as_i64().unwrap(),
        "the reads took until the scheduled retry; the test proves nothing"
    );
    assert_eq!(
        after["consecutive_failures"], before["consecutive_failures"],
        "a read started a collection: {after}"
    );
    assert_eq!(after["last_attempt"], before["last_attempt"], "{after}");
}

#[test]
fn a_regular_cycle_by_hand_answers_for_every_remotes_metrics_and_task_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _daemon, port) = start_fleet(dir.path());
    let (status, v) = json(
        port,
        "POST",
        "/api/v1/collect",
        r#"{"cycle":true,"wait":true}"#,
    );
    assert_eq!(status, 200, "{v}");
    for part in ["results", "task_results"] {
        let results = v[part].as_array().unwrap();
        // Five remotes; their metrics were collected at start, within the skip window.
        assert_eq!(results.len(), 5, "{v}");
        assert!(results.iter().all(|r| r["ok"] == true), "{v}");
    }
    let (status, v) = json(
        port,
        "POST",
        "/api/v1/collect",
        r#"{"cycle":true,"remote":"pve-1"}"#,
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("leave out"), "{v}");
}

#[test]
fn refused_requests_answer_json_errors_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _daemon, port) = start_fleet_with_token(dir.path(), "api-secret-123");
    // The scheme is case-insensitive.
    let auth = "Authorization: bearer api-secret-123\r\n";
    let json_type = "Content-Type: application/json; charset=utf-8\r\n";
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        // A form post or a no-cors fetch from a web page: refused, whatever the body.
        (
            request("POST", "/api/v1/collect", auth, r#"{"remote":"pbs-1"}"#),
            415,
            "Content-Type: application/json",
        ),
        (
            request(
                "POST",
                "/api/v1/collect",
                &format!("{auth}Content-Type: text/plain\r\n"),
                r#"{"remote":"pbs-1"}"#,
            ),
            415,
            "text/plain",
        ),
        (request("POST", "/api/v1/reload", auth, ""), 415, "Content-Type"),
        // An empty body is not "collect everything".
        (
            request("POST", "/api/v1/collect", &format!("{auth}{json_type}"), ""),
            400,
            "empty",
        ),
        (
            request("POST", "/api/v1/collect", json_type, "{}"),
            401,
            "Bearer",
        ),
        (
            request(
                "DELETE",
                "/api/v1/tasks/tracked/pve%3Apve-1%21UPID%3Apve-1-n1%3A00000001%3A00000000%3A6560A000%3Aqmstart%3A100%3Aroot%40pam%3A",
                "",
                "",
            ),
            401,
            "Bearer",
        ),
        (request("GET", "/api/v1/nothing", "", ""), 404, "docs/api.md"),
        (request("DELETE", "/api/v1/remotes", "", ""), 405, "Allow"),
        // The body is refused on its announced length, before it is read.
        (
            format!(
                "POST /api/v1/collect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}{json_type}Content-Length: 100000\r\n\r\n"
            )
            .into_bytes(),
            413,
            "65536",
        ),
        (
            request("GET", &format!("/api/v1/remotes?{}", "a".repeat(9000)), "", ""),
            414,
            "8192",
        ),
        (
            request(
                "GET",
                "/api/v1/remotes",
                &format!("X-Padding: {}\r\n", "p".repeat(17 * 1024)),
                "",
            ),
            431,
            "16384",
        ),
    ];
    for (req, status, needle) in &cases {
        let reply = raw(port, req);
        let line = String::from_utf8_lossy(&req[..req.len().min(60)]).into_owned();
        assert_eq!(reply.status, *status, "{line}: {reply:?}");
        let body = reply.json();
        assert_eq!(body["status"], *status, "{line}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(needle), "{line}: {error}");
    }
    // With the JSON type, a body and the token in any case of the scheme: served.
    let reply = raw(
        port,
        &request(
            "POST",
            "/api/v1/collect",
            &format!("{auth}{json_type}"),
            r#"{"remote":"pbs-1","wait":true}"#,
        ),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["results"][0]["ok"], true, "{reply:?}");

    // History windows: at most api.max_rows rows, and no time arithmetic can overflow.
    let now = unix_now();
    let node = "/api/v1/rrd/pve-1/node/pve-1-n1";
    let (status, e) = json(
        port,
        "GET",
        &format!(
            "{node}?start={}&end={}&resolution=60",
            now - 3600,
            now + 60 * 1_000_000
        ),
        "",
    );
    assert_eq!(status, 400, "{e}");
    let error = e["error"].as_str().unwrap();
    assert!(
        error.contains("api.max_rows") && error.contains("20000"),
        "{error}"
    );
    for query in [
        "start=0&end=9223372036854775807",
        "start=-9223372036854775808&end=0",
        "start=0&end=3600&resolution=0",
        "start=0&end=3600&resolution=18446744073709551615",
    ] {
        let (status, e) = json(port, "GET", &format!("{node}?{query}"), "");
        assert_eq!(status, 400, "{query}: {e}");
    }
    let (status, v) = json(
        port,
        "GET",
        &format!("{node}?start={}&end={now}&resolution=60", now - 3600),
        "",
    );
    assert_eq!(status, 200, "{v}");
    let rows = v["data"]["timestamps"].as_array().unwrap().len();
    assert!((60..=62).contains(&rows), "an hour at one minute: {rows}");

    // Path segments never reach a file outside the data directory: real RRD files
    // planted where a `..` would lead are never served.
    let state = dir.path().join("full-data/state");
    let node_file = std::fs::read_dir(state.join("metrics/pve-1"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "rrd"))
        .expect("pve-1 has RRD files");
    for planted in [
        "full-data/x.rrd",
        "x.rrd",
        "full-data/state/x.rrd",
        "full-data/state/metrics/x.rrd",
    ] {
        std::fs::copy(&node_file, dir.path().join(planted)).unwrap();
    }
    for path in [
        "/api/v1/rrd/../x",
        "/api/v1/rrd/%2E%2E/x",
        "/api/v1/rrd/..%2F..%2Fx/x",
        "/api/v1/rrd/pve-1/../x",
        "/api/v1/rrd/pve-1/..%2Fx",
        "/api/v1/rrd/pve-1/%2E%2E%2F%2E%2E%2Fx",
        "/api/v1/rrd/pve-1/..%2F..%2F..%2Fx",
        "/api/v1/rrd/pve-1/%2Fx",
        "/api/v1/rrd/%2Fx/x",
        "/api/v1/rrd/pve-1/x%00",
    ] {
        let reply = raw(
            port,
            &request("GET", &format!("{path}?timeframe=hour"), "", ""),
        );
        assert!(
            matches!(reply.status, 400 | 404),
            "{path} reached a file: {reply:?}"
        );
    }
}

/// Opens a live stream of what is stored from now on (no replay: a reader that does not
/// read a replay is cut off after the idle timeout); returns the socket once the
/// reply's head arrived, and its status.
fn open_stream(port: u16) -> (TcpStream, u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /api/v1/live?since={} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        unix_now() + 3600
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let status = String::from_utf8_lossy(&head)
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (s, status)
}

#[test]
fn live_streams_beyond_the_cap_are_refused_and_shutdown_ends_the_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut daemon, port) = start_fleet(dir.path());
    let mut streams = Vec::new();
    for i in 0..64 {
        let (s, status) = open_stream(port);
        assert_eq!(status, 200, "stream {i}");
        streams.push(s);
    }
    let reply = raw(
        port,
        &request("GET", &format!("/api/v1/live?since={}", unix_now()), "", ""),
    );
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("5"), "{reply:?}");
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("64 live streams"), "{error}");
    answer_times(port, "64 live streams");
    // A closed stream frees its place (noticed at the latest by the next keep-alive).
    drop(streams.pop());
    wait_until(Duration::from_secs(40), "a new stream is accepted", || {
        let (s, status) = open_stream(port);
        if status == 200 {
            streams.push(s);
        }
        status == 200
    });

    // SIGTERM with 64 streams open: they are ended, the daemon exits 0 in time.
    let stopped = Instant::now();
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "took {:?}",
        stopped.elapsed()
    );
}

/// Asks `GET /api/v1/remotes` 20 times while `load` holds the API; prints the median and
/// slowest answer and fails beyond 3 s.
fn answer_times(port: u16, load: &str) {
    let mut took: Vec<Duration> = (0..20)
        .map(|_| {
            let asked = Instant::now();
            let (status, v) = json(port, "GET", "/api/v1/remotes", "");
            assert_eq!(status, 200, "{v}");
            asked.elapsed()
        })
        .collect();
    took.sort();
    println!(
        "with {load} open: answered in median {:?}, slowest {:?}",
        took[10], took[19]
    );
    assert!(took[19] < Duration::from_secs(3), "{load}: {took:?}");
}

/// A counter of `/metrics`, 0 when absent.
fn polls(port: u16, outcome: &str) -> u64 {
    let (status, text) = http(port, "GET", "/metrics", "");
    assert_eq!(status, 200);
    let prefix = format!("fleetpoll_polls_total{{outcome=\"{outcome}\"");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn silent_connections_are_closed_and_cannot_take_the_pollers_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, config, port) = fleet_config(
        dir.path(),
        &[],
        &[
            ("\ninterval_secs = 600", "\ninterval_secs = 4"),
            ("start_offset_max_secs = 10", "start_offset_max_secs = 1"),
            ("skip_recent_secs = 10", "skip_recent_secs = 0"),
        ],
    );
    // 300 descriptors at most, the soft limit at 200: the daemon raises it to 300.
    let child = Command::new("sh")
        .args([
            "-c",
            "ulimit -S -n 200 && ulimit -H -n 300 && exec \"$0\" run --config \"$1\"",
            bin(),
        ])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Proc::new(child);
    wait_all_ok(port);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.0.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["300", "300"], "{open_files}");
    let failed_before = polls(port, "failed");
    let ok_before = polls(port, "ok");

    // 400 clients connect and say nothing; one sends half a request head. (Those the
    // daemon accepted and closed to make room read EOF; that is fine.)
    let mut silent: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    silent[0]
        .write_all(b"GET /api/v1/remotes HTTP/1.1\r\n")
        .unwrap();
    // The API answers meanwhile: each new client takes a silent one's place.
    answer_times(port, "400 silent connections");
    let half_open = &mut silent[0];
    half_open
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(25) {
        match half_open.read(&mut buf) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {} // hyper may answer 408 first
        }
    }
    assert!(
        closed,
        "a half-open connection was kept beyond the header timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed after {:?}; the header timeout is 10 s",
        started.elapsed()
    );
    // Cycles run every 4 s while the silent clients stay: the pollers keep their
    // descriptors and keep polling.
    wait_until(
        Duration::from_secs(30),
        "the pollers polled meanwhile",
        || polls(port, "ok") >= ok_before + 10,
    );
    drop(silent);
    wait_until(Duration::from_secs(40), "the API answers again", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && states(port).iter().all(|(_, s)| s == "ok")
    });
    assert_eq!(
        polls(port, "failed"),
        failed_before,
        "polls failed while API clients held connections"
    );
    let (_, remotes) = json(port, "GET", "/api/v1/remotes", "");
    assert!(
        !remotes.to_string().contains("Too many open files"),
        "{remotes}"
    );
}

/// A made-up UPID of a node of pve-1 in the manager's form.
fn fake_task(pid: u32) -> String {
    format!(
        "pve:pve-1!UPID:pve-1-n1:{pid:08X}:00000000:{:08X}:qmstart:999:root@pam:",
        unix_now()
    )
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn tracked(port: u16) -> Vec<String> {
    let (_, t) = json(port, "GET", "/api/v1/tasks/tracked", "");
    t["tracked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tracked_tasks_are_bounded_can_be_untracked_and_are_dropped_when_their_remote_does_not_know_them()
{
    let dir = tempfile::tempdir().unwrap();
    let (_sim, _daemon, port) = start_fleet_with(
        dir.path(),
        &[],
        &[
            ("max_tracked_per_remote = 100", "max_tracked_per_remote = 2"),
            ("tick_secs = 10", "tick_secs = 2"),
        ],
    );
    let track = |upid: &str| {
        json(
            port,
            "POST",
            "/api/v1/tasks/track",
            &format!(r#"{{"upid":"{upid}"}}"#),
        )
    };
    let (first, second, third) = (fake_task(0xDEAD1), fake_task(0xDEAD2), fake_task(0xDEAD3));
    for upid in [&first, &second] {
        let (status, v) = track(upid);
        assert_eq!(status, 200, "{v}");
    }
    let (status, e) = track(&third);
    assert_eq!(status, 429, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("tasks.max_tracked_per_remote"),
        "{e}"
    );

    // Untracking takes the manager's name, percent-encoded; twice is a 404.
    let path = format!("/api/v1/tasks/tracked/{}", encode(&first));
    let (status, v) = json(port, "DELETE", &path, "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["untracked"], first.as_str(), "{v}");
    assert!(!tracked(port).contains(&first));
    let (status, e) = json(port, "DELETE", &path, "");
    assert_eq!(status, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("not tracked"), "{e}");
    let (status, v) = track(&third);
    assert_eq!(status, 200, "untracking freed a place: {v}");

    // pve-1 answers 404 for the made-up tasks: after three ticks they are dropped.
    wait_until(
        Duration::from_secs(60),
        "the made-up tasks are no longer tracked",
        || {
            let now = tracked(port);
            !now.contains(&second) && !now.contains(&third)
        },
    );
}

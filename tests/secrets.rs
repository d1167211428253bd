//! Secrets appear nowhere they should not. The daemon runs at debug level against the
//! simulator with recognisable secrets — the remotes' tokens, one remote's wrong token,
//! the API token, an InfluxDB exporter's token and a header value — while the test
//! plays the exporter's receiver. None of them may show in the log, in any answer of
//! the API or the web page (errors included), in what the exporter sends as data, or in
//! any file the daemon writes; the files that hold them are not readable by others.

mod daemon_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemon_support::*;

const API_TOKEN: &str = "API-SECRET-7f3a9c";
const INFLUX_TOKEN: &str = "INFLUX-SECRET-91c2e8";
const HEADER_SECRET: &str = "HEADER-SECRET-5d0b44";
const WRONG_TOKEN: &str = "WRONG-SECRET-0b9e17";

/// What an HTTP receiver was sent: each request's head and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An InfluxDB-shaped receiver on a free port that records every request and answers
/// 204, keeping connections alive.
fn receiver() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let log = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        let end = line == "\r\n";
                        head.push_str(&line);
                        if end {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    log.lock().unwrap().push((head, body));
                    let reply = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`, ignoring ASCII case (reply heads are read
/// lower-cased).
fn contains(haystack: &[u8], needle: &str) -> bool {
    let haystack = haystack.to_ascii_lowercase();
    memchr::memmem::find(&haystack, needle.to_ascii_lowercase().as_bytes()).is_some()
}

/// Every read the API and the page answer for the daemon on `port`, errors included:
/// the fixed pages and endpoints, then each remote's status and page.
fn read_paths(port: u16) -> Vec<String> {
    let mut paths: Vec<String> = [
        "/",
        "/ui/",
        "/ui/engine",
        "/ui/tasks",
        "/ui/charts",
        "/metrics",
        "/api/v1/remotes",
        "/api/v1/tree",
        "/api/v1/daemon",
        "/api/v1/exporters",
        "/api/v1/hooks",
        "/api/v1/alerts",
        "/api/v1/alerts/history",
        "/api/v1/local",
        "/api/v1/resources",
        "/api/v1/tasks?limit=50",
        "/api/v1/tasks/tracked",
        "/api/v1/top",
        "/api/v1/nothing",
        "/api/v1/remotes/ghost",
    ]
    .map(String::from)
    .to_vec();
    for (id, _) in states(port) {
        paths.push(format!("/api/v1/remotes/{id}"));
        paths.push(format!("/ui/remote?id={id}"));
    }
    paths
}

#[test]
fn no_secret_shows_in_logs_answers_exported_data_or_files_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver_port, received) = receiver();
    private_file(&dir.path().join("api.token"), &format!("{API_TOKEN}\n"));
    private_file(
        &dir.path().join("influx.token"),
        &format!("{INFLUX_TOKEN}\n"),
    );
    let exporter = format!(
        "[[exporters]]\nname = \"influx\"\nkind = \"influxdb\"\n\
         url = \"http://127.0.0.1:{receiver_port}/api/v2/write?org=o&bucket=b\"\n\
         token_file = \"influx.token\"\nheaders = {{ \"X-Scope-OrgID\" = \"{HEADER_SECRET}\" }}\n\
         flush_interval_ms = 100\n\n[api]\ntoken_file = \"api.token\"\n"
    );
    let (_sim, config, port) = fleet_config(dir.path(), &[], &[("[api]\n", &exporter)]);

    // The simulator's tokens, then one remote (the last) given a wrong one.
    let text = std::fs::read_to_string(&config).unwrap();
    let mut secrets: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("token = \""))
        .map(|s| s.trim_end_matches('"').to_string())
        .collect();
    assert_eq!(secrets.len(), 5, "{text}");
    let last = secrets.last().unwrap().clone();
    let at = text.rfind(&last).unwrap();
    let text = format!("{}{WRONG_TOKEN}{}", &text[..at], &text[at + last.len()..]);
    private_file(&config, &text);
    secrets.extend([API_TOKEN, INFLUX_TOKEN, HEADER_SECRET, WRONG_TOKEN].map(String::from));

    let log = dir.path().join("daemon.log");
    let _daemon = spawn_daemon(&config, &[("RUST_LOG", "debug".as_ref())], Some(&log));
    wait_until(
        Duration::from_secs(40),
        "four remotes ok, the one with the wrong token failing",
        || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && {
                let states = states(port);
                states.iter().filter(|(_, s)| s == "ok").count() == 4
                    && states.iter().any(|(_, s)| s != "ok" && s != "pending")
            }
        },
    );
    let auth = format!("Authorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\n");
    let mut answers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut ask = |what: &str, request: Vec<u8>| {
        let reply = raw(port, &request);
        answers.push((
            what.to_string(),
            format!("{}{}", reply.head, reply.body).into_bytes(),
        ));
        reply
    };
    // Mutations: refused without the token (and with a wrong one), done with it.
    let refused = ask(
        "collect without a token",
        request(
            "POST",
            "/api/v1/collect",
            "Content-Type: application/json\r\n",
            "{}",
        ),
    );
    assert_eq!(refused.status, 401);
    let wrong =
        format!("Authorization: Bearer {WRONG_TOKEN}\r\nContent-Type: application/json\r\n");
    let refused = ask(
        "collect with a wrong token",
        request("POST", "/api/v1/collect", &wrong, "{}"),
    );
    assert_eq!(refused.status, 401);
    let done = ask(
        "collect",
        request("POST", "/api/v1/collect", &auth, r#"{"wait":true}"#),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    let failing = states(port).into_iter().find(|(_, s)| s != "ok").unwrap().0;
    let done = ask(
        "collect the failing remote",
        request(
            "POST",
            "/api/v1/collect",
            &auth,
            &format!(r#"{{"remote":"{failing}","wait":true}}"#),
        ),
    );
    assert!(
        done.body.contains("auth"),
        "the failure names its class: {}",
        done.body
    );
    wait_until(Duration::from_secs(20), "the exporter sent data", || {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(_, body)| !body.is_empty())
    });

    // Every read the API and the page answer, errors included.
    let mut paths = read_paths(port);
    paths.push(format!("/api/v1/rrd/{failing}/host?timeframe=hour"));
    for path in &paths {
        ask(path, request("GET", path, "", ""));
    }

    let logs = std::fs::read(&log).unwrap();
    assert!(contains(&logs, "DEBUG"), "the daemon logged at debug level");
    assert!(
        contains(&logs, "auth"),
        "the wrong token's failure is logged"
    );
    let exported = received.lock().unwrap().clone();
    assert!(
        exported
            .iter()
            .any(|(head, _)| head.contains(&format!("Token {INFLUX_TOKEN}"))),
        "the exporter authenticates with its token"
    );
    for secret in &secrets {
        assert!(!contains(&logs, secret), "the log shows {secret}");
        for (what, answer) in &answers {
            assert!(!contains(answer, secret), "{what} shows {secret}");
        }
        for (_, body) in &exported {
            assert!(!contains(body, secret), "the exported data shows {secret}");
        }
    }

    // Files: the ones holding a secret are the config and the token files, 0600; the
    // daemon's own files (RRD, journals, task cache, state) hold none.
    let holding = [
        config.clone(),
        dir.path().join("full.toml"),
        dir.path().join("api.token"),
        dir.path().join("influx.token"),
    ];
    let mut checked = 0;
    for path in files(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        checked += 1;
        let leaked: Vec<&String> = secrets.iter().filter(|s| contains(&bytes, s)).collect();
        if leaked.is_empty() {
            continue;
        }
        assert!(
            holding.contains(&path),
            "{} holds {leaked:?}",
            path.display()
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "{} holds a secret and is mode {mode:o}",
            path.display()
        );
    }
    assert!(
        checked > 20,
        "the daemon wrote its data under the directory: {checked} files"
    );
}

/// The demo's fleet tokens, as the demo's simulator hands them out: the same seeded
/// simulator started here, asked for the config it would write, then stopped.
fn demo_tokens(options: &fleetpoll::demo::DemoOptions) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = fleetpoll::demo::sim_config(options).unwrap();
        let sim = fleetpoll::sim::Simulator::start(config).await.unwrap();
        let written = fleetpoll::sim::write_config::fleet_config(&sim, Path::new("/nowhere"));
        sim.shutdown().await;
        written
            .remotes
            .into_iter()
            .map(|r| r.token.expect("every simulated remote has a token").0)
            .collect()
    })
}

/// The lines a child prints, as they come, and whether it has closed its stream.
fn collect_lines(stream: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

#[test]
fn the_demo_shows_none_of_its_fleet_tokens() {
    let options = fleetpoll::demo::DemoOptions::default();
    let tokens = demo_tokens(&options);
    assert_eq!(tokens.len(), options.remotes, "{tokens:?}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(bin())
        .args(["demo", "--interval-secs", "2", "--duration-secs", "120"])
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect_lines(child.stdout.take().unwrap());
    let stderr = collect_lines(child.stderr.take().unwrap());
    let mut demo = Proc::new(child);
    let line_with = |prefix: &str| -> Option<String> {
        let lines = stdout.lock().unwrap();
        lines
            .iter()
            .rev()
            .find_map(|l| Some(l.strip_prefix(prefix)?.to_string()))
    };
    let mut port = 0;
    wait_until(Duration::from_secs(30), "the demo prints its API", || {
        port = line_with("fleetpoll demo: API on http://127.0.0.1:")
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        port != 0
    });
    // Most of the fleet collected and the faulty remotes failing (their errors are what
    // could carry a header): the progress line says both.
    wait_until(
        Duration::from_secs(60),
        "30 remotes ok and some failing",
        || {
            line_with("remotes ok").is_some_and(|rest| {
                let count = |field: usize| -> usize {
                    let part = rest.split('|').nth(field).unwrap_or("");
                    let number = part.split_whitespace().last().unwrap_or("");
                    number.parse().unwrap_or(0)
                };
                count(0) >= 30 && count(1) >= 1
            })
        },
    );
    let mut answers: Vec<(String, Reply)> = Vec::new();
    let collect = request(
        "POST",
        "/api/v1/collect",
        "Content-Type: application/json\r\n",
        r#"{"wait":true}"#,
    );
    answers.push(("collect".into(), raw(port, &collect)));
    let mut paths = read_paths(port);
    let ids: Vec<String> = states(port).into_iter().map(|(id, _)| id).collect();
    for id in &ids {
        paths.push(format!("/api/v1/rrd/{id}/host?timeframe=hour"));
    }
    for path in &paths {
        answers.push((path.clone(), raw(port, &request("GET", path, "", ""))));
    }
    assert!(
        answers.iter().filter(|(_, r)| r.status == 200).count() > ids.len(),
        "the demo's API answered: {:?}",
        answers
            .iter()
            .map(|(p, r)| (p, r.status))
            .collect::<Vec<_>>()
    );
    // Ctrl-C, as a user stops it; it says so and exits cleanly.
    let pid = demo.0.id().to_string();
    let signal = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(signal.unwrap().success());
    wait_until(Duration::from_secs(20), "the demo stops on Ctrl-C", || {
        demo.0.try_wait().unwrap().is_some()
    });
    assert!(demo.0.wait().unwrap().success());
    wait_until(Duration::from_secs(5), "the demo's output is read", || {
        line_with("fleetpoll demo: stopped").is_some()
    });

    let stderr = stderr.lock().unwrap().join("\n");
    let stdout = stdout.lock().unwrap().join("\n");
    assert!(contains(stderr.as_bytes(), "DEBUG"), "debug level logged");
    assert!(
        stdout.contains("remotes not ok at the end:"),
        "the failing remotes' errors are printed: {stdout}"
    );
    let written = files(&data);
    assert!(written.len() > 20, "the demo stored data: {written:?}");
    for token in &tokens {
        assert!(!contains(stdout.as_bytes(), token), "stdout shows {token}");
        assert!(!contains(stderr.as_bytes(), token), "the log shows {token}");
        for (what, reply) in &answers {
            let text = format!("{}{}", reply.head, reply.body);
            assert!(!contains(text.as_bytes(), token), "{what} shows {token}");
        }
        for path in &written {
            let bytes = std::fs::read(path).unwrap();
            assert!(!contains(&bytes, token), "{} holds {token}", path.display());
        }
    }
}

//! Helpers of the tests that run `fleetpoll run` against `fleetpoll sim` as processes:
//! starting both, plain HTTP/1.1 requests, waiting on a condition with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// A child process, killed when dropped. When the test is failing, the tail of the
/// file its stderr went to (the second field) is printed, so a daemon that exited early
/// says why.
pub struct Proc(pub Child, pub Option<PathBuf>);

impl Proc {
    /// A child whose stderr is not kept.
    pub fn new(child: Child) -> Self {
        Proc(child, None)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let exited = self.0.try_wait().ok().flatten();
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let (true, Some(path)) = (std::thread::panicking(), &self.1) {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!(
                "--- {} ({}), last lines of its stderr:",
                path.display(),
                exited.map_or("still running".to_string(), |s| format!("exited: {s}"))
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The fleetpoll binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetpoll")
}

/// A plain HTTP/1.1 request; returns the status code and the body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the API accepts connections");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Chunked bodies: keep the JSON between the chunk sizes.
    let body = if raw
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines()
            .filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit()) || l.is_empty())
            .collect::<Vec<_>>()
            .join("")
    } else {
        body.to_string()
    };
    (status, body)
}

/// As [`http`], the body parsed as JSON.
pub fn json(port: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(port, method, path, body);
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, value)
}

/// Polls `cond` until it holds; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        #[allow(clippy::disallowed_methods)] // reason: a blocking test polling real processes
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `fleetpoll sim` (3 PVE, 2 PBS), writing its config to `config`.
pub fn start_sim(config: &Path) -> Proc {
    start_sim_with(config, &[])
}

/// As [`start_sim`], with extra flags.
pub fn start_sim_with(config: &Path, extra: &[&str]) -> Proc {
    let child = Command::new(bin())
        .args([
            "sim", "--port", "0", "--pve", "3", "--pbs", "2", "--seed", "3",
        ])
        .args(extra)
        .arg("--write-config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc::new(child);
    wait_until(
        Duration::from_secs(20),
        "the simulator wrote its config",
        || config.exists(),
    );
    p
}

/// Starts `fleetpoll run --config CONFIG` with extra environment; stderr goes to `log`
/// when given.
pub fn spawn_daemon(config: &Path, env: &[(&str, &std::ffi::OsStr)], log: Option<&Path>) -> Proc {
    spawn_daemon_with_args(config, &[], env, log)
}

/// As [`spawn_daemon`], with extra arguments after `run --config CONFIG` (the variables
/// of the command-line overrides are cleared unless `env` sets them).
pub fn spawn_daemon_with_args(
    config: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
    log: Option<&Path>,
) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"])
        .arg(config)
        .args(args)
        .stdout(Stdio::null());
    for var in [
        "FLEETPOLL_INSTANCE",
        "FLEETPOLL_SHARD_INDEX",
        "FLEETPOLL_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Without a log of its own, stderr goes beside the config, for the failure report.
    let kept = config.with_extension("stderr");
    let path = log.unwrap_or(&kept);
    cmd.stderr(std::fs::File::create(path).unwrap());
    Proc(cmd.spawn().unwrap(), Some(path.to_path_buf()))
}

/// Waits until the API answers and every remote is ok.
pub fn wait_all_ok(port: u16) {
    wait_until(Duration::from_secs(30), "every remote is ok", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && states(port).iter().all(|(_, s)| s == "ok")
    });
}

/// Every remote with its state.
pub fn states(port: u16) -> Vec<(String, String)> {
    let (_, v) = json(port, "GET", "/api/v1/remotes", "");
    v["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["remote"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Starts the simulator and a daemon on its full config; returns both and the API port.
pub fn start_fleet(dir: &Path) -> (Proc, Proc, u16) {
    start_fleet_with(dir, &[], &[])
}

/// As `start_fleet`, with extra simulator flags and config text replacements.
pub fn start_fleet_with(
    dir: &Path,
    sim_flags: &[&str],
    edits: &[(&str, &str)],
) -> (Proc, Proc, u16) {
    let (sim, config, port) = fleet_config(dir, sim_flags, edits);
    let daemon = spawn_daemon(&config, &[], None);
    wait_all_ok(port);
    (sim, daemon, port)
}

/// Starts a fleet whose API requires `token` (read from a 0600 file in `dir`).
pub fn start_fleet_with_token(dir: &Path, token: &str) -> (Proc, Proc, u16) {
    let token_file = dir.join("api.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let api = format!("[api]\ntoken_file = \"{}\"\n", token_file.display());
    start_fleet_with(dir, &[], &[("[api]\n", &api)])
}

/// Starts the simulator and writes the daemon's config for it (a free API port, the
/// text replacements applied); returns the simulator, the config's path and the port.
pub fn fleet_config(
    dir: &Path,
    sim_flags: &[&str],
    edits: &[(&str, &str)],
) -> (Proc, PathBuf, u16) {
    let full = dir.join("full.toml");
    let sim = start_sim_with(&full, sim_flags);
    let port = free_port();
    let mut text = std::fs::read_to_string(&full)
        .unwrap()
        .replace("127.0.0.1:8450", &format!("127.0.0.1:{port}"));
    for (from, to) in edits {
        assert!(text.contains(from), "the config has no {from:?}");
        text = text.replace(from, to);
    }
    let config = dir.join("fleetpoll.toml");
    std::fs::write(&config, text).unwrap();
    (sim, config, port)
}

/// A reply read off a socket: status, head (lower-cased) and body.
#[derive(Debug)]
pub struct Reply {
    /// The status code (0 when there was no reply).
    pub status: u16,
    /// The status line and headers, lower-cased.
    pub head: String,
    /// The body as sent (the API's JSON answers have a length, no chunks).
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
    }
}

/// Sends `request` verbatim (one request, `Connection: close` up to the caller) and
/// reads the reply until the server closes.
pub fn raw(port: u16, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the API accepts connections");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    // Until the server closes, or 1 MiB came (an endless stream where none was expected
    // fails the test instead of hanging it). A reset after a refused body keeps what came.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while bytes.len() < 1 << 20 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// A request with the given extra header lines (each ending in CRLF) and body.
pub fn request(method: &str, path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One remote's status.
pub fn remote_status(port: u16, id: &str) -> Value {
    let (status, v) = json(port, "GET", &format!("/api/v1/remotes/{id}"), "");
    assert_eq!(status, 200, "{v}");
    v
}

//! `fleetpoll sim` as a separate process: it prints every node's address and
//! fingerprint, and a client configured from that output gets metrics.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll::remote::{
    ApiToken, ClientOptions, Fingerprint, NodeAddress, PveClient, RemoteEndpoint,
};
use fleetpoll_actors::{Cursor, RemoteId, RemoteSource};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn sim_command_prints_how_to_reach_its_remotes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args([
            "sim", "--port", "0", "--pve", "2", "--pbs", "1", "--nodes", "2", "--seed", "5",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = Vec::new();
    // The listening line, then a remote line and its node lines per remote: 1 + 3 + 3 + 2.
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            output.push(line);
            if output.len() == 9 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the simulator prints its banner");

    assert!(
        output[0].starts_with("listening on 5 addresses from 127.1.0.1:"),
        "{}",
        output[0]
    );
    let pve = output
        .iter()
        .find(|l| l.starts_with("remote pve-1 pve "))
        .unwrap();
    let token = pve.split("token=").nth(1).unwrap();
    let (id, secret) = token.rsplit_once('=').unwrap();
    assert!(output.iter().any(|l| l.starts_with("remote pbs-1 pbs ")));
    // `node pve-1 pve-1-n1 https://127.1.0.1:PORT/api2/json fingerprint AA:…`
    let nodes: Vec<NodeAddress> = output
        .iter()
        .filter_map(|l| l.strip_prefix("node pve-1 "))
        .map(|rest| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let addr: std::net::SocketAddr = fields[1]
                .strip_prefix("https://")
                .and_then(|a| a.strip_suffix("/api2/json"))
                .unwrap()
                .parse()
                .unwrap();
            let fingerprint: Fingerprint = fields[3].parse().unwrap();
            NodeAddress::new(addr.ip().to_string(), addr.port(), Some(fingerprint))
        })
        .collect();
    assert_eq!(nodes.len(), 2);
    assert_ne!(nodes[0].host, nodes[1].host, "each node its own address");
    assert_ne!(
        nodes[0].fingerprint, nodes[1].fingerprint,
        "and certificate"
    );

    let client = PveClient::new(RemoteEndpoint {
        remote: RemoteId::new("pve-1"),
        nodes,
        token: ApiToken::new(id, secret),
        options: ClientOptions {
            roots: Some(Arc::new(rustls::RootCertStore::empty())),
            request_timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        },
    })
    .unwrap();
    let batch = client.fetch_metrics(Cursor::START).await.unwrap();
    assert!(!batch.is_empty());
    child.kill().await.unwrap();
}

#[tokio::test]
async fn sim_command_rejects_bad_flags_with_exit_code_64() {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args(["sim", "--pve", "lots"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--pve"));
}

#[tokio::test]
async fn sim_writes_a_config_that_validates_and_reaches_its_fleet() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args(["sim", "--port", "0", "--pve", "2", "--pbs", "1"])
        .arg("--write-config")
        .arg(&path)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the simulator starts")
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the config holds tokens");

    let config = fleetpoll::config::load(&path).unwrap();
    assert_eq!(config.remotes.len(), 3);
    let clock = Arc::new(fleetpoll_actors::TokioClock::system());
    let resolved = fleetpoll::config::resolve(&path, config, clock).unwrap();
    // The pinned fingerprint and token in the file are right: a poll succeeds.
    let pbs = &resolved.engine.remotes[2];
    let batch = pbs.source.fetch_metrics(Cursor::START).await.unwrap();
    assert!(!batch.is_empty());
    let _ = child.kill().await;
}

#[tokio::test]
async fn sigusr1_switches_an_outage_on_and_sigusr2_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args([
            "sim", "--port", "0", "--pve", "1", "--pbs", "0", "--nodes", "1",
        ])
        .arg("--write-config")
        .arg(&path)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the simulator starts")
        .unwrap();
    let config = fleetpoll::config::load(&path).unwrap();
    let address: std::net::SocketAddr = config.remotes[0].nodes[0].address.parse().unwrap();
    let pid = child.id().unwrap().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let listens = || async move { tokio::net::TcpStream::connect(address).await.is_ok() };
    assert!(listens().await);

    signal("-USR1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while listens().await {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal("-USR2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !listens().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not listening again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill().await;
}

#[tokio::test]
async fn sighup_catches_a_lagging_clock_up() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args([
            "sim",
            "--port",
            "0",
            "--pve",
            "1",
            "--pbs",
            "0",
            "--nodes",
            "1",
            "--clock-behind-secs",
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the simulator starts")
        .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), errors.next_line())
        .await
        .expect("the simulator answers SIGHUP")
        .unwrap()
        .unwrap_or_default();
    assert_eq!(line, "fleetpoll sim: clock caught up (600 s)");
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop it"
    );
    let _ = child.kill().await;
}

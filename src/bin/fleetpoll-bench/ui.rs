//! Scenario `ui`: the web status page at fleet size. `fleetpoll sim` and `fleetpoll run`
//! run as processes (as in `e2e`); after one full collection, the overview (`/`) and
//! random remotes' pages (`ui/remote?id=`) are fetched one at a time over loopback and
//! timed from request to last byte (an upper bound of the server's render time), and
//! `tests/web/bench.mjs` opens the overview in headless Chromium: the bytes the browser
//! received for it (page, script, style sheet; gzip as the browser asks for it) and the
//! time from navigation start until the remote list is drawn.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::e2e::{binary, prepare_config, request, sim_writing_config, wait_for, Proc};
use crate::measure::{percentile, round};

/// Flags of the `ui` scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct UiArgs {
    /// Number of simulated remotes (a third of them PBS).
    #[arg(long, default_value_t = 1000)]
    remotes: usize,
    /// Guests per PVE cluster.
    #[arg(long, default_value_t = 10)]
    guests: usize,
    /// Requests per page for the percentiles.
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

pub(crate) fn run(args: UiArgs) -> anyhow::Result<Value> {
    let bin = binary()?;
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let config = dir.path().join("fleet.toml");
    let pbs = args.remotes / 3;
    let mut sim = Command::new(&bin);
    sim.args(["sim", "--port", "0", "--seed", "1"])
        .args(["--pve", &(args.remotes - pbs).to_string()])
        .args([
            "--pbs",
            &pbs.to_string(),
            "--guests",
            &args.guests.to_string(),
        ]);
    let _sim = sim_writing_config(sim, &config, Duration::from_secs(60))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    prepare_config(&config, port, 50)?;
    let _daemon = Proc(
        Command::new(&bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting fleetpoll run")?,
    );
    wait_for(Duration::from_secs(60), "the API answers", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    eprintln!("ui: collecting {} remotes once", args.remotes);
    let started = Instant::now();
    let (status, _) = request(port, "POST", "/api/v1/collect", r#"{"wait": true}"#)?;
    if status != 200 {
        bail!("the collection answered {status}");
    }
    eprintln!("ui: collected in {:.1} s", started.elapsed().as_secs_f64());

    let time = |path: &str| -> anyhow::Result<f64> {
        let t = Instant::now();
        let (status, body) = request(port, "GET", path, "")?;
        if status != 200 || body.len() < 100 {
            bail!("GET {path} answered {status}");
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let mut overview = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        overview.push(time("/")?);
    }
    let mut remote = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        // PVE remotes: the ones with nodes, guests and storages.
        let id = format!("pve-{}", 1 + (i * 7919) % (args.remotes - pbs));
        remote.push(time(&format!("/ui/remote?id={id}"))?);
    }
    eprintln!("ui: opening the overview in headless Chromium");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/bench.mjs");
    let out = Command::new("node")
        .arg(&script)
        .current_dir(script.parent().unwrap_or(std::path::Path::new(".")))
        .env("FLEETPOLL_URL", format!("http://127.0.0.1:{port}/"))
        .stderr(Stdio::inherit())
        .output()
        .context("running node tests/web/bench.mjs (needs node, npm ci in tests/web, chromium)")?;
    if !out.status.success() {
        bail!(
            "the browser part failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let browser: Value = serde_json::from_slice(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("{}")
            .as_bytes(),
    )
    .context("the browser part's JSON")?;
    Ok(json!({
        "scenario": "ui",
        "remotes": args.remotes,
        "requests": args.requests,
        "overview_p50_ms": round(percentile(&mut overview.clone(), 50.0), 2),
        "overview_p99_ms": round(percentile(&mut overview, 99.0), 2),
        "remote_p50_ms": round(percentile(&mut remote.clone(), 50.0), 2),
        "remote_p99_ms": round(percentile(&mut remote, 99.0), 2),
        "overview_bytes": browser["overview_bytes"],
        "overview_uncompressed_bytes": browser["overview_uncompressed_bytes"],
        "browser_ready_ms": browser["browser_ready_ms"],
    }))
}

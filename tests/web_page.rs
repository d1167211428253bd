//! The web status page in a real browser: headless Chromium driven by Playwright
//! (`tests/web/page.mjs`, `playwright-core` from `tests/web/package-lock.json`), against
//! `fleetpoll run` + `fleetpoll sim` over loopback, and against the API router mounted
//! under `/fleetpoll` by an embedding host (as `examples/embed.rs` mounts it). Node, the
//! npm packages and `/usr/bin/chromium` are required: a missing one fails the test and
//! names the command that installs it (`.ci/run` does).
//!
//! `FLEETPOLL_SCREENSHOTS=docs/img cargo test -p fleetpoll --test web_page` regenerates
//! the README's screenshots.

// Blocking waits are what these process tests do: no actor runs in the daemon test.
#![allow(clippy::disallowed_methods)]

mod daemon_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use daemon_support::{fleet_config, json, spawn_daemon, wait_until};

/// `tests/web`, where the script and its npm packages are.
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// Panics with what to install when the browser test cannot run here.
fn require_browser_tools() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "the browser tests need node on PATH: apt-get install nodejs npm (as .ci/run does)"
    );
    assert!(
        web_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "the browser tests need playwright-core: run `npm ci` in {} (as .ci/run does)",
        web_dir().display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Chromium at /usr/bin/chromium: apt-get install chromium (as .ci/run does)"
    );
}

/// Runs the page script against `url`; panics with its output when a check fails.
fn run_page_script(url: &str, envs: &[(&str, &str)]) {
    let mut cmd = Command::new("node");
    cmd.arg(web_dir().join("page.mjs"))
        .current_dir(web_dir())
        .env("FLEETPOLL_URL", url);
    // Only the daemon test saves screenshots (both run at once).
    let shots = envs.contains(&("FLEETPOLL_MODE", "daemon"));
    match (shots, std::env::var("FLEETPOLL_SCREENSHOTS")) {
        (true, Ok(dir)) => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            cmd.env("FLEETPOLL_SCREENSHOTS", dir);
        }
        // The other test must not inherit the variable (relative to its own directory).
        _ => {
            cmd.env_remove("FLEETPOLL_SCREENSHOTS");
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "the browser checks failed:\n{stdout}\n{stderr}"
    );
}

#[test]
fn the_page_shows_what_the_api_shows_in_chromium() {
    require_browser_tools();
    let dir = tempfile::tempdir().unwrap();
    let token = "page-test-token";
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let api = format!("[api]\ntoken_file = \"{}\"\n", token_file.display());
    // Frequent short tasks, so one runs and ends while the test watches; pve-3 presents
    // a certificate that does not match its pin.
    let (_sim, config, port) = fleet_config(
        dir.path(),
        &["--task-interval-secs", "20", "--fault", "wrong-cert@pve-3"],
        &[("[api]\n", &api)],
    );
    let _daemon = spawn_daemon(&config, &[], None);
    wait_until(Duration::from_secs(30), "pve-1 is collected", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && json(port, "GET", "/api/v1/remotes/pve-1", "").1["state"] == "ok"
    });
    run_page_script(
        &format!("http://127.0.0.1:{port}/"),
        &[
            ("FLEETPOLL_MODE", "daemon"),
            ("FLEETPOLL_TOKEN", token),
            ("FLEETPOLL_FAILING", "pve-3"),
        ],
    );
}

#[test]
fn the_page_works_under_an_embedders_path_prefix() {
    require_browser_tools();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use axum::routing::get;
        use fleetpoll::api::{router, ApiState};
        use fleetpoll::cluster::{ClusterView, Shard};
        use fleetpoll::engine::{Engine, EngineConfig, Target, TokioClock};
        use fleetpoll::rrd::RrdStore;
        use fleetpoll::sim::{SimConfig, Simulator};
        use fleetpoll::tasks::TaskCache;

        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let clock = Arc::new(TokioClock::system());
        let mut config = EngineConfig::default();
        for info in sim.remotes() {
            config
                .remotes
                .push(info.engine_remote(clock.clone()).unwrap());
        }
        let data = tempfile::tempdir().unwrap();
        let (metrics, _) = RrdStore::open(&data.path().join("metrics")).unwrap();
        let metrics = Arc::new(metrics);
        let tasks = Arc::new(
            TaskCache::open(
                data.path().join("tasks"),
                fleetpoll_actors::system_now_secs(),
            )
            .unwrap(),
        );
        let engine = Engine::builder(config)
            .metric_store(metrics.clone())
            .task_store(tasks.clone())
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        engine.trigger(Target::All, true).await.unwrap();
        let (reload, _reload_rx) = tokio::sync::mpsc::channel(1);
        let defaults = fleetpoll::config::ApiConfig::default();
        let state = ApiState {
            engine: engine.clone(),
            metrics,
            tasks,
            interval_secs: Arc::new(600.into()),
            token: fleetpoll::api::ApiToken::new(None),
            reload,
            last_reload: Default::default(),
            clock,
            live_streams: ApiState::live_stream_permits(defaults.max_streams as usize),
            max_streams: defaults.max_streams as usize,
            max_rows: defaults.max_rows,
            rules: None,
            exporters: Default::default(),
            local: None,
            inventory: None,
            cluster: Arc::new(ClusterView::new(Shard::single("embedded"), Vec::new())),
        };
        let host = axum::Router::new()
            .route("/", get(|| async { "the host's own page" }))
            .nest("/fleetpoll", router(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, host).await });
        // The prefix without its slash: the page must send the browser below it.
        let url = format!("http://{addr}/fleetpoll");
        tokio::task::spawn_blocking(move || run_page_script(&url, &[("FLEETPOLL_MODE", "prefix")]))
            .await
            .unwrap();
        server.abort();
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
        sim.shutdown().await;
    });
}

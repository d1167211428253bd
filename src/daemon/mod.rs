//! `fleetpoll run`: the daemon. It validates the config before binding anything (exit 64
//! naming the key), opens the stores, starts the engine and the API, tells systemd it is
//! ready, then waits for signals: SIGHUP reloads the config as a diff (a bad file is
//! rejected, logged and shown by the API while the running config stays), SIGTERM and
//! SIGINT shut down gracefully within the configured grace period. Under systemd the
//! watchdog is pinged only while the supervision tree is healthy. At start the soft
//! descriptor limit is raised to the hard one, and the API's connection cap keeps a
//! reserve of descriptors for the pollers (`fds`). Beside the engine runs the inventory
//! (`crate::inventory`), which fetches the remotes' resource lists with the engine's clients.

pub(crate) mod fds;
pub mod notify;
mod rules_watch;
mod stores;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use fleetpoll_actors::{Clock, Engine, EngineHandle, HookOptions, TokioClock};
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::api::{self, ApiState, ApiToken, ReloadRequest};
use crate::cluster::ClusterView;
use crate::config::{self, ConfigFileError, LogFormat, Overrides};
use crate::inventory::{Inventory, InventoryRemote};
use crate::remote::ClientPools;
use notify::Notifier;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config file is bad (exit code 64).
    #[error("invalid config: {0}")]
    Config(#[from] ConfigFileError),
    /// Anything else (exit code 1).
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

/// Sets up logging from the config (`RUST_LOG` wins over `log.filter`).
/// Where a reload puts a new `log.filter` (`None` while `RUST_LOG` rules).
type LogFilterHandle = Option<
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
>;

fn init_logging(filter: &str, format: LogFormat) -> LogFilterHandle {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(filter));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
    };
    (!pinned).then_some(handle)
}

/// Points the rules hook may have waiting (a backfill of a large fleet fits).
const RULES_QUEUE_POINTS: usize = 4_000_000;

/// What a reload may change besides the engine, and how to compare a new file with the
/// running one.
struct Running {
    config: config::Config,
    token: ApiToken,
    log: LogFilterHandle,
    rules: Arc<crate::rules::Rules>,
    /// Watches the rules file (replaced when a reload names another file).
    rules_watch: Option<rules_watch::RulesWatch>,
    /// Where the rules-file watch asks for a reload.
    reload_tx: mpsc::Sender<ReloadRequest>,
    cluster: Arc<ClusterView>,
    /// The command line's values, applied again to every reloaded file.
    overrides: Overrides,
    exporters: crate::export::Exporters,
    inventory: Inventory,
    /// The idle connections and TLS sessions every config's clients share.
    pools: ClientPools,
}

impl Running {
    /// The keys that only a restart can change, if the new file changes one.
    fn restart_needed(&self, new: &config::Config) -> Option<&'static str> {
        let (old, now) = (&self.config.api, &new.api);
        if now.listen != old.listen {
            Some("api.listen")
        } else if now.restart_only() != old.restart_only() {
            Some("the [api] bounds (max_rows, max_streams, max_connections, timeouts)")
        } else if new.storage != self.config.storage {
            Some("[storage]")
        } else if new.log.format != self.config.log.format {
            Some("log.format")
        } else if new.cluster != self.config.cluster {
            // A new split would move remotes between instances that each keep running
            // on the old one: two could poll one remote, or none.
            Some("[cluster]")
        } else {
            None
        }
    }
}

/// A running engine with its stores and its API server: what `run` and `demo` share.
#[derive(Debug)]
pub struct Service {
    /// The engine.
    pub engine: EngineHandle,
    /// The task cache (for counts and queries beside the API).
    pub tasks: Arc<crate::tasks::TaskCache>,
    /// The collection interval the API uses (updated on reload).
    pub interval_secs: Arc<std::sync::atomic::AtomicU64>,
    /// Where the API listens.
    pub api_addr: std::net::SocketAddr,
    /// Reload requests from the API (`POST /api/v1/reload`).
    pub reload_rx: mpsc::Receiver<ReloadRequest>,
    /// Where reload requests are sent (the API and the rules-file watch).
    pub reload_tx: mpsc::Sender<ReloadRequest>,
    /// The last reload's outcome, shown by the API.
    pub last_reload: Arc<Mutex<Option<serde_json::Value>>>,
    /// The API's token, replaced by a reload.
    pub token: ApiToken,
    /// The running rules.
    pub rules: Arc<crate::rules::Rules>,
    /// This instance's shard and the other shards' remotes (replaced by a reload).
    pub cluster: Arc<ClusterView>,
    /// The running exporters, changed by a reload.
    pub exporters: crate::export::Exporters,
    /// The remotes' resource lists, their remotes and interval changed by a reload.
    pub inventory: Inventory,
    stop_api: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Service {
    /// Opens the stores, binds the API, starts the engine and serves the API.
    pub async fn start(
        resolved: config::Resolved,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Service> {
        let nofile = fds::raise_nofile_limit();
        let wanted = resolved.config.api.max_connections as usize;
        let bounds = api::ServerLimits {
            max_connections: api::limits::connection_cap(
                nofile,
                // Manual triggers may open `manual_burst` beyond the global cap.
                resolved.config.limits.global_connections + resolved.config.limits.manual_burst,
                wanted,
            ),
            header_timeout: resolved.config.api.header_timeout,
            idle_timeout: resolved.config.api.idle_timeout,
            ..api::ServerLimits::default()
        };
        if bounds.max_connections < wanted {
            tracing::warn!(
                nofile,
                api_connections = bounds.max_connections,
                "the descriptor limit is low; fewer API connections are served (raise LimitNOFILE=)"
            );
        }
        let (metrics, tasks) = stores::open(&resolved.config.storage, clock.as_ref())?;
        let listener = tokio::net::TcpListener::bind(resolved.api_listen)
            .await
            .with_context(|| format!("cannot listen on {} (api.listen)", resolved.api_listen))?;
        let api_addr = listener.local_addr().context("the API's address")?;
        let rules = crate::rules::Rules::start(
            resolved.rules,
            resolved.config.collection.interval.as_secs(),
            Some(&resolved.config.storage.state_dir),
            clock.clone(),
        )?;
        // The resource lists are fetched by the engine's own clients (one pool per remote).
        let inventory = Inventory::start(
            InventoryRemote::from_engine(&resolved.engine.remotes),
            resolved.config.inventory.resources_interval,
            clock.clone(),
        );
        let (exporters, builder) = crate::export::Exporters::register(
            &resolved.exporters,
            Engine::builder(resolved.engine),
        );
        let engine_metrics: Arc<dyn fleetpoll_actors::MetricStore> = if resolved.config.storage.rrd
        {
            metrics.clone()
        } else {
            tracing::info!(
                "[storage] rrd = false: metrics go to the hooks only, no RRD file is written"
            );
            Arc::new(stores::CursorsOnly::default())
        };
        #[cfg(feature = "fault-injection")]
        let builder = match injected_panics()? {
            Some(rates) => builder.panic_rates(rates),
            None => builder,
        };
        let engine = builder
            .metric_store(engine_metrics)
            .task_store(tasks.clone())
            .clock(clock.clone())
            .hook_with(
                crate::rules::HOOK_NAME,
                Box::new(rules.hook()),
                HookOptions {
                    queue_max_points: RULES_QUEUE_POINTS,
                },
            )
            .start()
            .await
            .context("starting the engine")?;
        let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
        let token = ApiToken::new(resolved.api_token.clone());
        let last_reload = Arc::new(Mutex::new(None));
        let interval_secs = Arc::new(std::sync::atomic::AtomicU64::new(
            resolved.config.collection.interval.as_secs(),
        ));
        let cluster = Arc::new(ClusterView::new(resolved.shard, resolved.other_shards));
        let state = ApiState {
            engine: engine.clone(),
            metrics,
            tasks: tasks.clone(),
            interval_secs: interval_secs.clone(),
            token: token.clone(),
            reload: reload_tx.clone(),
            last_reload: last_reload.clone(),
            clock,
            live_streams: ApiState::live_stream_permits(resolved.config.api.max_streams as usize),
            max_streams: resolved.config.api.max_streams as usize,
            max_rows: resolved.config.api.max_rows,
            rules: Some(rules.clone()),
            cluster: cluster.clone(),
            exporters: exporters.clone(),
            local: resolved.local.clone(),
            inventory: Some(inventory.clone()),
        };
        let (stop_api, stop_api_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(async move {
            let mut stop = stop_api_rx;
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            api::serve(listener, api::router(state), bounds, shutdown).await
        });
        Ok(Service {
            engine,
            tasks,
            interval_secs,
            api_addr,
            reload_rx,
            reload_tx,
            last_reload,
            token,
            rules,
            cluster,
            exporters,
            inventory,
            stop_api,
            server,
        })
    }

    /// Stops the API, shuts the engine down within `grace` and logs what was cut short.
    pub async fn stop(self, grace: Duration) -> anyhow::Result<fleetpoll_actors::ShutdownReport> {
        let _ = self.stop_api.send(true);
        self.inventory.stop().await;
        let report = self
            .engine
            .shutdown(grace)
            .await
            .context("shutting the engine down")?;
        if !report.cut_short.is_empty() {
            tracing::warn!(remotes = ?report.cut_short, "polls cut short by the grace period");
        }
        if let Some(err) = &report.flush_error {
            tracing::error!(error = %err, "flushing the stores failed");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        Ok(report)
    }
}

/// Runs the daemon until SIGTERM/SIGINT, with `overrides` winning over the file.
pub async fn run(config_path: PathBuf, overrides: Overrides) -> Result<(), DaemonError> {
    let clock = daemon_clock()?;
    let pools = ClientPools::default();
    let resolved =
        config::load_and_resolve_reusing(&config_path, &overrides, clock.clone(), &pools)?;
    pools.idle.set_max(resolved.idle_connections);
    let log = init_logging(&resolved.config.log.filter, resolved.config.log.format);
    let running_config = resolved.config.clone();
    let notifier = Notifier::from_env();
    let grace = resolved.config.supervision.shutdown_grace;
    let remotes = resolved.engine.remotes.len();
    let shard = resolved.shard.clone();
    let mut service = Service::start(resolved, clock.clone()).await?;
    let engine = service.engine.clone();
    let api_addr = service.api_addr;
    let last_reload = service.last_reload.clone();
    let interval = service.interval_secs.clone();
    let mut running = Running {
        rules_watch: rules_watch::RulesWatch::start(
            service.rules.clone(),
            service.reload_tx.clone(),
        ),
        config: running_config,
        token: service.token.clone(),
        log,
        rules: service.rules.clone(),
        reload_tx: service.reload_tx.clone(),
        cluster: service.cluster.clone(),
        overrides,
        exporters: service.exporters.clone(),
        inventory: service.inventory.clone(),
        pools,
    };
    tracing::info!(config = %config_path.display(), remotes, api = %api_addr,
        instance = %shard.instance, shard_index = shard.shard_index,
        shard_count = shard.shard_count, "fleetpoll is running");
    println!("fleetpoll: API on http://{api_addr}");
    notifier.ready(&format!("{remotes} remotes, API on {api_addr}"));

    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut watchdog = notifier
        .watchdog_interval()
        .map(|every| tokio::time::interval(every));
    loop {
        let watchdog_tick = async {
            match watchdog.as_mut() {
                Some(w) => {
                    w.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hup.recv() => {
                let outcome = reload(&config_path, &engine, clock.clone(), &notifier, &interval, &mut running).await;
                remember(&last_reload, &outcome);
            }
            Some(reply) = service.reload_rx.recv() => {
                let outcome = reload(&config_path, &engine, clock.clone(), &notifier, &interval, &mut running).await;
                remember(&last_reload, &outcome);
                let _ = reply.send(outcome);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = watchdog_tick => {
                if healthy(&engine).await {
                    notifier.watchdog();
                } else {
                    tracing::warn!("supervision tree unhealthy; not pinging the systemd watchdog");
                }
            }
        }
    }
    notifier.stopping();
    let report = service.stop(grace).await?;
    tracing::info!(elapsed_ms = report.elapsed_ms, "fleetpoll stopped");
    Ok(())
}

fn remember(last: &Mutex<Option<serde_json::Value>>, outcome: &Result<serde_json::Value, String>) {
    let entry = match outcome {
        Ok(report) => json!({ "ok": true, "report": report }),
        Err(err) => json!({ "ok": false, "error": err }),
    };
    if let Ok(mut l) = last.lock() {
        *l = Some(entry);
    }
}

/// Reloads the config file and applies every key that can change at runtime — the
/// engine's sections and remotes as a diff, the exporters as a diff (an unchanged one
/// keeps running untouched), the API token, the log filter; a bad file,
/// or one that changes a key only a restart can apply, changes nothing.
async fn reload(
    path: &Path,
    engine: &EngineHandle,
    clock: Arc<dyn Clock>,
    notifier: &Notifier,
    interval: &std::sync::atomic::AtomicU64,
    running: &mut Running,
) -> Result<serde_json::Value, String> {
    notifier.reloading();
    let resolved =
        config::load_and_resolve_reusing(path, &running.overrides, clock, &running.pools)
            .map_err(|err| err.to_string())
            .and_then(|resolved| match running.restart_needed(&resolved.config) {
                Some(key) => Err(format!(
                    "{}: `{key}` changed, and only a restart applies it (systemctl restart \
                 fleetpoll); put it back to reload the other changes",
                    path.display()
                )),
                None => Ok(resolved),
            });
    let outcome = match resolved {
        Err(err) => {
            tracing::error!(error = %err, "reload rejected; the running config stays");
            Err(format!("reload rejected, the running config stays: {err}"))
        }
        Ok(resolved) => {
            // Taken before the engine config is handed over, applied once it is accepted.
            let inventory_remotes = InventoryRemote::from_engine(&resolved.engine.remotes);
            match engine.reload(resolved.engine).await {
                Ok(report) => {
                    running.pools.idle.set_max(resolved.idle_connections);
                    running.inventory.set_remotes(inventory_remotes).await;
                    if resolved.config.inventory != running.config.inventory {
                        running
                            .inventory
                            .set_interval(resolved.config.inventory.resources_interval)
                            .await;
                    }
                    interval.store(
                        resolved.config.collection.interval.as_secs(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    running.token.set(resolved.api_token);
                    running
                        .rules
                        .set_interval(resolved.config.collection.interval.as_secs());
                    running.rules.apply(resolved.rules);
                    running.cluster.set_others(resolved.other_shards);
                    if let Some(handle) = &running.log {
                        let filter =
                            tracing_subscriber::EnvFilter::new(&resolved.config.log.filter);
                        if let Err(err) = handle.reload(filter) {
                            tracing::warn!(error = %err, "the new log filter could not be applied");
                        }
                    }
                    if running.config.rules.file != resolved.config.rules.file {
                        running.rules_watch = rules_watch::RulesWatch::start(
                            running.rules.clone(),
                            running.reload_tx.clone(),
                        );
                    }
                    running.config = resolved.config;
                    tracing::info!(added = ?report.added, removed = ?report.removed,
                    changed = ?report.changed, timers_reset = report.timers_reset, "config reloaded");
                    let mut value = serde_json::to_value(report).unwrap_or_default();
                    match running.exporters.apply(engine, &resolved.exporters).await {
                        Ok(export) => {
                            tracing::info!(added = ?export.added, removed = ?export.removed,
                            changed = ?export.changed, "exporters reloaded");
                            value["exporters"] = serde_json::to_value(export).unwrap_or_default();
                            Ok(value)
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "applying the exporters failed");
                            Err(format!(
                                "the remotes were reloaded, the exporters failed: {err}"
                            ))
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "reload rejected; the running config stays");
                    Err(format!("reload rejected, the running config stays: {err}"))
                }
            }
        }
    };
    notifier.ready("reloaded");
    outcome
}

/// Whether every actor of the tree is running (the watchdog is pinged only then).
async fn healthy(engine: &EngineHandle) -> bool {
    match engine.tree().await {
        Ok(tree) => tree.children.iter().all(|c| c.state == "running"),
        Err(_) => false,
    }
}

/// The environment variable a `fault-injection` build reads a clock skew from: the
/// daemon's clock runs that many seconds ahead of the system's, so that a test can put
/// a UTC midnight (and the task cache's rotation) at a moment it chooses.
#[cfg(feature = "fault-injection")]
pub const CLOCK_SKEW_ENV: &str = "FLEETPOLL_CLOCK_SKEW_SECS";

/// The daemon's wall clock: the system's, or (feature `fault-injection`) the system's
/// plus `FLEETPOLL_CLOCK_SKEW_SECS`; a skew that does not parse stops the start.
fn daemon_clock() -> anyhow::Result<Arc<dyn Clock>> {
    #[cfg(feature = "fault-injection")]
    if let Ok(spec) = std::env::var(CLOCK_SKEW_ENV) {
        let ahead: u64 = spec
            .parse()
            .with_context(|| format!("{CLOCK_SKEW_ENV}={spec:?} is not a number of seconds"))?;
        let system = TokioClock::system().now() + Duration::from_secs(ahead);
        eprintln!("fault injection: the daemon's clock runs {ahead} s ahead of the system's");
        return Ok(Arc::new(TokioClock::starting_at(system)));
    }
    Ok(Arc::new(TokioClock::system()))
}

/// The environment variable a `fault-injection` build reads its panic rates from.
#[cfg(feature = "fault-injection")]
pub const PANIC_RATE_ENV: &str = "FLEETPOLL_PANIC_RATE";

/// The panic rates of `FLEETPOLL_PANIC_RATE` (feature `fault-injection`), read once at
/// start; a spec that does not parse stops the start.
#[cfg(feature = "fault-injection")]
fn injected_panics() -> anyhow::Result<Option<fleetpoll_actors::PanicRates>> {
    let Ok(spec) = std::env::var(PANIC_RATE_ENV) else {
        return Ok(None);
    };
    let rates = fleetpoll_actors::PanicRates::parse(&spec)
        .with_context(|| format!("{PANIC_RATE_ENV}={spec:?}"))?;
    tracing::warn!(spec = %spec, "fault injection: pollers, hooks and exporters panic at random");
    Ok(Some(rates))
}

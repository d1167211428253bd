//! The HTTP API (JSON, default `127.0.0.1:8450`): remote status, collect-now, task
//! refresh and tracking, the supervision tree, reload, the exporters, and fleetpoll's own metrics in
//! Prometheus text format. Errors are JSON with a message and the status code that fits;
//! mutating endpoints take JSON bodies and require the bearer token when one is
//! configured.
//!
//! # Layout
//!
//! - this file: the shared state, the router, the token check and the small endpoints.
//! - `errors`: [`ApiError`], the 404/405 fallbacks, the request-size limits and the
//!   rewrite of any other error into JSON.
//! - `body`: the JSON bodies of `POST`s (content type, size, timeout, shape).
//! - `limits`: every bound of the API, as constants.
//! - `server`: the accept loop: connection cap, header and idle timeouts, graceful drain.
//! - `tracking`: tracked tasks (track, list, untrack).
//! - `rrd`, `tasks`, `live`, `metrics`: history and top lists, the task list, the live
//!   stream, Prometheus metrics.
//! - `resources`: the cached resource lists (`GET /api/v1/resources`).

mod alerts;
mod body;
mod errors;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
pub mod limits;
mod live;
mod metrics;
mod resources;
mod rrd;
mod server;
mod tasks;
mod tracking;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use fleetpoll_actors::{Clock, EngineError, EngineHandle, RemoteId, Target};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::cluster::ClusterView;
use crate::config::Secret;
use crate::rrd::RrdStore;
use crate::tasks::TaskCache;
pub use errors::ApiError;
pub use server::{serve, ServerLimits};
pub use tracking::manager_ref;

/// Asks the daemon to reload its config file; answers with the report or the error.
pub type ReloadRequest = oneshot::Sender<Result<serde_json::Value, String>>;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The engine.
    pub engine: EngineHandle,
    /// The metric store, for history queries.
    pub metrics: Arc<RrdStore>,
    /// The task cache, for task queries.
    pub tasks: Arc<TaskCache>,
    /// The collection interval in seconds (kept current across reloads).
    pub interval_secs: Arc<std::sync::atomic::AtomicU64>,
    /// Bearer token for mutating endpoints (a reload may change it).
    pub token: ApiToken,
    /// Where reload requests go (the daemon's main loop).
    pub reload: mpsc::Sender<ReloadRequest>,
    /// The outcome of the last reload attempt, for `GET /api/v1/daemon`.
    pub last_reload: Arc<std::sync::Mutex<Option<serde_json::Value>>>,
    /// The engine's wall clock: "now" of the history and top queries.
    pub clock: Arc<dyn Clock>,
    /// One permit per open live stream, [`max_streams`](Self::max_streams) of them.
    pub live_streams: Arc<Semaphore>,
    /// The most live streams open at once (`api.max_streams`).
    pub max_streams: usize,
    /// The most rows per metric of a history answer (`api.max_rows`).
    pub max_rows: u64,
    /// The running rules (`None`: the embedder runs none).
    pub rules: Option<Arc<crate::rules::Rules>>,
    /// This instance's shard and the remotes the other shards poll.
    pub cluster: Arc<ClusterView>,
    /// The running exporters, for `GET /api/v1/exporters` and `/metrics`.
    pub exporters: crate::export::Exporters,
    /// The local host source, when `[local] enabled`.
    pub local: Option<Arc<crate::local::LocalSource>>,
    /// The remotes' resource lists (`None`: the embedder keeps none; then every
    /// remote's health comes from its state alone).
    pub inventory: Option<crate::inventory::Inventory>,
}

impl ApiState {
    /// The permits of `max_streams` live streams.
    pub fn live_stream_permits(max_streams: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(max_streams))
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        let status = match &err {
            EngineError::UnknownRemote(_) => StatusCode::NOT_FOUND,
            EngineError::InvalidConfig(_) => StatusCode::BAD_REQUEST,
            EngineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::NotRunning(_) | EngineError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::LimitReached(_) => StatusCode::TOO_MANY_REQUESTS,
            EngineError::Incomplete(_) | EngineError::Hook(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router of the whole API, with the web status page (`crate::web`) at `/`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/remotes", get(remotes))
        .route("/api/v1/remotes/{id}", get(remote))
        .route("/api/v1/collect", post(collect))
        .route("/api/v1/tasks", get(tasks::tasks))
        .route("/api/v1/tasks/refresh", post(refresh_tasks))
        .route("/api/v1/tasks/track", post(tracking::track))
        .route("/api/v1/tasks/tracked", get(tracking::tracked))
        .route("/api/v1/tasks/tracked/{upid}", delete(tracking::untrack))
        .route("/api/v1/tree", get(tree))
        .route("/api/v1/alerts", get(alerts::alerts))
        .route("/api/v1/alerts/history", get(alerts::history))
        .route("/api/v1/hooks", get(hooks))
        .route("/api/v1/live", get(live::live))
        .route("/api/v1/rrd/{remote}/{*entity}", get(rrd::history))
        .route("/api/v1/top", get(rrd::top))
        .route("/api/v1/local", get(local))
        .route("/api/v1/resources", get(resources::resources))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/daemon", get(daemon))
        .route("/api/v1/exporters", get(exporters))
        .route("/metrics", get(metrics::prometheus))
        .merge(crate::web::routes())
        .fallback(errors::no_such_endpoint)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .layer(axum::middleware::from_fn(errors::request_limits))
        .layer(axum::middleware::map_response(errors::json_errors))
        // gzip for clients that ask (never for the live stream: tower-http skips
        // `text/event-stream`).
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .with_state(state)
}

/// `GET /api/v1/local`: the local host's current values, from the source's cache when
/// it is younger than `[local] cache_ttl_secs` (a 404 when the source is off).
async fn local(State(state): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    let source = state.local.clone().ok_or_else(|| {
        ApiError::not_found("the local host source is off; set [local] enabled = true")
    })?;
    let cached = tokio::task::spawn_blocking(move || source.current())
        .await
        .map_err(|e| ApiError::internal(format!("reading the local host failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let r = &cached.reading;
    Ok(Json(serde_json::json!({
        "remote": crate::local::LOCAL_ID,
        "at": cached.at,
        "host": r.host,
        "net": r.net.iter().map(|(d, (rx, tx))| (d.clone(), serde_json::json!({"net_in": rx, "net_out": tx}))).collect::<serde_json::Map<_, _>>(),
        "disk": r.disks.iter().map(|(d, (rd, wr))| (d.clone(), serde_json::json!({"disk_read": rd, "disk_write": wr}))).collect::<serde_json::Map<_, _>>(),
    })))
}

/// The API's bearer token, shared by the handlers and replaced by a reload.
#[derive(Debug, Clone, Default)]
pub struct ApiToken(Arc<std::sync::RwLock<Option<Secret>>>);

impl ApiToken {
    /// A token holder starting with `token` (`None`: no token required).
    pub fn new(token: Option<Secret>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(token)))
    }

    /// Replaces the token; requests from now on are checked against the new one.
    pub fn set(&self, token: Option<Secret>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    fn current(&self) -> Option<Secret> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Checks the bearer token of a mutating request (constant-time comparison).
fn authorize(state: &ApiState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(expected) = state.token.current() else {
        return Ok(());
    };
    // The scheme is case-insensitive (RFC 7235); the credentials follow after spaces.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, credentials) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim())
        })
        .unwrap_or("");
    let a = given.as_bytes();
    let b = expected.0.as_bytes();
    let mut diff = (a.len() != b.len()) as u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    if diff == 0 {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the API token: send 'Authorization: Bearer <token>'".into(),
        ))
    }
}

/// Query parameters of `GET /api/v1/remotes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemotesParams {
    /// Also list the remotes other shards poll.
    #[serde(default)]
    all: bool,
}

async fn remotes(
    State(state): State<ApiState>,
    params: Result<Query<RemotesParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(p) = params
        .map_err(|e| ApiError::bad_request(format!("{e}; expected all=true or all=false")))?;
    let status = state.engine.status().await?;
    let mut remotes: Vec<serde_json::Value> =
        status.iter().map(|s| status_json(&state, s)).collect();
    if !p.all {
        return Ok(Json(json!({ "remotes": remotes })));
    }
    // Every configured remote, each with the shard that polls it.
    let own = state.cluster.shard().shard_index;
    for entry in &mut remotes {
        entry["shard"] = own.into();
    }
    remotes.extend(state.cluster.others().iter().map(
        |r| json!({ "remote": r.remote, "kind": r.kind, "state": "other-shard", "shard": r.shard }),
    ));
    remotes.sort_by(|a, b| a["remote"].as_str().cmp(&b["remote"].as_str()));
    Ok(Json(json!({ "remotes": remotes })))
}

async fn remote(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let status = state
        .engine
        .remote_status(&RemoteId::new(&id))
        .await
        .map_err(|e| other_shard(&state, &id, e))?;
    Ok(Json(status_json(&state, &status)))
}

/// A remote's health from its state and its cached resource list.
pub(crate) fn health_of(
    state: &ApiState,
    status: &fleetpoll_actors::RemoteStatus,
) -> crate::inventory::HealthReport {
    let resources = state.inventory.as_ref().and_then(|i| i.get(&status.remote));
    crate::inventory::assess(status, resources.as_ref())
}

/// A remote's status as the API writes it, with its `health` and `health_reason`.
fn status_json(state: &ApiState, status: &fleetpoll_actors::RemoteStatus) -> serde_json::Value {
    let health = health_of(state, status);
    let mut entry = serde_json::to_value(status).unwrap_or_default();
    entry["health"] = health.health.as_str().into();
    entry["health_reason"] = health.reason.into();
    entry
}

/// An unknown remote that another shard polls is still a 404, one that says where to
/// ask instead.
fn other_shard(state: &ApiState, id: &str, err: EngineError) -> ApiError {
    match (&err, state.cluster.other_owner(id)) {
        (EngineError::UnknownRemote(_), Some(shard)) => ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "remote {id:?} is polled by shard {shard}; this instance is shard {} of {}",
                state.cluster.shard().shard_index,
                state.cluster.shard().shard_count
            ),
        ),
        _ => err.into(),
    }
}

/// Body of `POST /api/v1/tasks/refresh`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    #[serde(default)]
    remote: Option<String>,
    #[serde(default)]
    wait: bool,
}

/// Body of `POST /api/v1/collect`: a refresh's fields, and `cycle` for a regular cycle
/// of every remote with its task lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectBody {
    #[serde(default)]
    remote: Option<String>,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    cycle: bool,
}

fn target(remote: Option<String>) -> Target {
    remote.map_or(Target::All, |id| Target::Remote(RemoteId::new(id)))
}

/// What the body of refresh looks like.
const REFRESH_EXAMPLE: &str =
    r#"{"remote": "<id>" | null, "wait": true|false} ({} for every remote)"#;

/// What the body of collect looks like.
const COLLECT_EXAMPLE: &str = r#"{"remote": "<id>" | null, "wait": true|false} ({} for every remote), or {"cycle": true, "wait": true|false} for a regular cycle of every remote with its task lists"#;

async fn collect(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    let b: CollectBody = body::json_body(&headers, raw, COLLECT_EXAMPLE).await?;
    if b.cycle {
        return cycle(&state, b).await;
    }
    let id = b.remote.clone().unwrap_or_default();
    let target = target(b.remote);
    let report = state
        .engine
        .trigger(target.clone(), b.wait)
        .await
        .map_err(|e| other_shard(&state, &id, e))?;
    // A manual collect fetches the resource lists too (waited for like the metrics).
    if let Some(inventory) = &state.inventory {
        inventory.refresh(target, b.wait).await;
    }
    Ok(Json(trigger_json(report)))
}

/// `{"cycle": true}`: what a scheduler tick does when the task lists fall due — every
/// remote in the scheduled lane (within `global_connections`, no manual burst), each
/// remote's task lists right after its metrics over the same connection.
async fn cycle(state: &ApiState, b: CollectBody) -> ApiResult<Json<serde_json::Value>> {
    if let Some(remote) = b.remote {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "a cycle runs every remote: leave out \"remote\" ({remote:?}), or leave out \"cycle\" to collect one remote"
            ),
        ));
    }
    let (metrics, tasks) = state.engine.cycle_with_tasks(b.wait).await?;
    let mut json = trigger_json(metrics);
    json["task_results"] = trigger_json(tasks)["results"].take();
    Ok(Json(json))
}

fn trigger_json(report: fleetpoll_actors::TriggerReport) -> serde_json::Value {
    let results: Vec<serde_json::Value> = report
        .results
        .into_iter()
        .map(|(id, r)| match r {
            Ok(outcome) => json!({ "remote": id, "ok": true, "result": outcome }),
            Err(err) => json!({ "remote": id, "ok": false, "error": err.to_string() }),
        })
        .collect();
    json!({ "results": results })
}

async fn refresh_tasks(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    let b: RefreshBody = body::json_body(&headers, raw, REFRESH_EXAMPLE).await?;
    let id = b.remote.clone().unwrap_or_default();
    let report = state
        .engine
        .refresh_tasks(target(b.remote), b.wait)
        .await
        .map_err(|e| other_shard(&state, &id, e))?;
    Ok(Json(trigger_json(report)))
}

async fn tree(State(state): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    let tree = state.engine.tree().await?;
    Ok(Json(serde_json::to_value(tree).unwrap_or_default()))
}

async fn reload(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    // No body, but the JSON content type all the same: a page cannot send it
    // cross-origin, so it cannot reload a token-less daemon.
    body::require_json(&headers)?;
    let (tx, rx) = oneshot::channel();
    state.reload.send(tx).await.map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is stopping".into(),
        )
    })?;
    match rx.await {
        Ok(Ok(report)) => Ok(Json(report)),
        Ok(Err(message)) => Err(ApiError(StatusCode::BAD_REQUEST, message)),
        Err(_) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon stopped before the reload finished".into(),
        )),
    }
}

/// The points set aside because their entity's file could not be written: the
/// quarantine file, the rows in it since start, and each entity's file with the reason.
fn quarantine_json(metrics: &crate::rrd::RrdStore) -> serde_json::Value {
    let entities: Vec<serde_json::Value> = metrics
        .quarantined()
        .into_iter()
        .map(|q| {
            json!({
                "file": q.path,
                "reason": q.reason,
                "rows": q.rows,
                "first_at": q.first_at,
                "last_at": q.last_at,
            })
        })
        .collect();
    json!({
        "file": metrics.quarantine_file(),
        "rows": metrics.quarantined_rows(),
        "entities": entities,
    })
}

async fn hooks(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(json!({ "hooks": state.engine.hooks() }))
}

/// `GET /api/v1/exporters`: per exporter its name, kind, transport, queued, sent,
/// dropped, rejected and errors, the last error and the last success (no address, URL
/// or header: those are secrets).
async fn exporters(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(json!({ "exporters": state.exporters.status(&state.engine) }))
}

async fn daemon(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let last = state.last_reload.lock().ok().and_then(|l| l.clone());
    // A failed store shows here until writing works again (and in the remote's status).
    let storage_error = state.engine.storage().await.ok().and_then(|s| s.last_error);
    let shard = state.cluster.shard();
    Json(json!({
        "running": state.engine.is_running(),
        // Whether changes need the bearer token (the web page asks for it first).
        "token_required": state.token.current().is_some(),
        "instance": shard.instance,
        "shard_index": shard.shard_index,
        "shard_count": shard.shard_count,
        "last_reload": last,
        "storage_error": storage_error,
        "rrd_files_set_aside": state.metrics.damaged_file_count(),
        "rrd_quarantine": quarantine_json(&state.metrics),
        "rules_file": state.rules.as_ref().and_then(|r| r.path()),
        "rules": state.rules.as_ref().map_or(0, |r| r.rule_count()),
        "rules_error": state.rules.as_ref().and_then(|r| r.error()),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

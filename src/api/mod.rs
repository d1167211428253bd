//! The HTTP API (JSON, default `127.0.0.1:8450`): remote status, collect-now, task
//! refresh and tracking, the supervision tree, reload, and fleetpoll's own metrics in
//! Prometheus text format. Errors are JSON with a message and the status code that fits;
//! mutating endpoints require the bearer token when one is configured.

mod live;
mod metrics;
mod rrd;
mod tasks;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fleetpoll_actors::{Clock, EngineError, EngineHandle, RemoteId, Target, TaskRef};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::config::Secret;
use crate::rrd::RrdStore;
use crate::tasks::TaskCache;

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
    /// The collection interval in seconds (kept current across reloads): an hour view
    /// older than this triggers a collection first.
    pub interval_secs: Arc<std::sync::atomic::AtomicU64>,
    /// Bearer token for mutating endpoints (a reload may change it).
    pub token: ApiToken,
    /// Where reload requests go (the daemon's main loop).
    pub reload: mpsc::Sender<ReloadRequest>,
    /// The outcome of the last reload attempt, for `GET /api/v1/daemon`.
    pub last_reload: Arc<std::sync::Mutex<Option<serde_json::Value>>>,
    /// The engine's wall clock: "now" of the history and top queries.
    pub clock: Arc<dyn Clock>,
}

/// A JSON error reply.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    /// A 400 naming the parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }

    /// A 404 saying what was not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, message.into())
    }

    /// A 500 for a failure of fleetpoll itself.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({ "error": self.1, "status": self.0.as_u16() })),
        )
            .into_response()
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
            EngineError::Incomplete(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router of the whole API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/remotes", get(remotes))
        .route("/api/v1/remotes/{id}", get(remote))
        .route("/api/v1/collect", post(collect))
        .route("/api/v1/tasks", get(tasks::tasks))
        .route("/api/v1/tasks/refresh", post(refresh_tasks))
        .route("/api/v1/tasks/track", post(track_task))
        .route("/api/v1/tasks/tracked", get(tracked_tasks))
        .route("/api/v1/tree", get(tree))
        .route("/api/v1/live", get(live::live))
        .route("/api/v1/rrd/{remote}/{*entity}", get(rrd::history))
        .route("/api/v1/top", get(rrd::top))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/daemon", get(daemon))
        .route("/metrics", get(metrics::prometheus))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see docs/api.md".into(),
            )
        })
        .with_state(state)
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
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
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

async fn remotes(State(state): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    let status = state.engine.status().await?;
    Ok(Json(json!({ "remotes": status })))
}

async fn remote(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let status = state.engine.remote_status(&RemoteId::new(&id)).await?;
    Ok(Json(serde_json::to_value(status).unwrap_or_default()))
}

/// Body of `POST /api/v1/collect` and `POST /api/v1/tasks/refresh`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectBody {
    #[serde(default)]
    remote: Option<String>,
    #[serde(default)]
    wait: bool,
}

fn target(remote: Option<String>) -> Target {
    remote.map_or(Target::All, |id| Target::Remote(RemoteId::new(id)))
}

fn body<T: serde::de::DeserializeOwned>(raw: &[u8], example: &str) -> ApiResult<T> {
    let raw = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        raw
    };
    serde_json::from_slice(raw)
        .map_err(|e| ApiError::bad_request(format!("bad JSON body ({e}); expected {example}")))
}

async fn collect(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    let b: CollectBody = body(&raw, r#"{"remote": "<id>" | null, "wait": true|false}"#)?;
    let report = state.engine.trigger(target(b.remote), b.wait).await?;
    Ok(Json(trigger_json(report)))
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
    raw: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    let b: CollectBody = body(&raw, r#"{"remote": "<id>" | null, "wait": true|false}"#)?;
    let report = state.engine.refresh_tasks(target(b.remote), b.wait).await?;
    Ok(Json(trigger_json(report)))
}

/// Body of `POST /api/v1/tasks/track`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackBody {
    upid: String,
}

async fn track_task(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    let b: TrackBody = body(&raw, r#"{"upid": "pve:<remote>!UPID:…"}"#)?;
    let task = TaskRef::parse(&b.upid).map_err(|e| ApiError::bad_request(format!("upid: {e}")))?;
    crate::remote::Upid::parse(&task.upid)
        .map_err(|e| ApiError::bad_request(format!("upid: {e}")))?;
    state.engine.track_task(task.clone()).await?;
    Ok(Json(
        json!({ "tracked": manager_ref(&task.remote, &task.upid) }),
    ))
}

/// The manager's name of a remote task: `pve:<remote>!<UPID>` or `pbs:<remote>!<UPID>`
/// (the kind read from the UPID's shape: PBS UPIDs carry a task id).
pub fn manager_ref(remote: &RemoteId, upid: &str) -> String {
    let pbs = crate::remote::Upid::parse(upid).is_ok_and(|u| u.is_pbs());
    let kind = if pbs { "pbs" } else { "pve" };
    format!("{kind}:{remote}!{upid}")
}

async fn tracked_tasks(State(state): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    let list: Vec<String> = state
        .engine
        .tracked_tasks()
        .await?
        .iter()
        .map(|t| manager_ref(&t.remote, &t.upid))
        .collect();
    Ok(Json(json!({ "tracked": list })))
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

async fn daemon(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let last = state.last_reload.lock().ok().and_then(|l| l.clone());
    // A failed store shows here until writing works again (and in the remote's status).
    let storage_error = state.engine.storage().await.ok().and_then(|s| s.last_error);
    Json(json!({
        "running": state.engine.is_running(),
        "last_reload": last,
        "storage_error": storage_error,
        "rrd_files_set_aside": state.metrics.damaged_file_count(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

//! Tasks the manager tracks: `POST /api/v1/tasks/track` (bounded by `[tasks]
//! max_tracked` and `max_tracked_per_remote`: 429 beyond them), `GET
//! /api/v1/tasks/tracked` and `DELETE /api/v1/tasks/tracked/{upid}` with the manager's
//! name of the task, percent-encoded. A tracked task its remote says does not exist is
//! dropped by the engine after a few task ticks.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use fleetpoll_actors::{RemoteId, TaskRef};
use serde::Deserialize;
use serde_json::json;

use super::{authorize, body, ApiError, ApiResult, ApiState};

/// Body of `POST /api/v1/tasks/track`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrackBody {
    pub(super) upid: String,
}

/// The manager's name of a task, parsed and its UPID checked (400 naming the problem).
pub(super) fn task_ref(text: &str) -> ApiResult<TaskRef> {
    let task = TaskRef::parse(text).map_err(|e| ApiError::bad_request(format!("upid: {e}")))?;
    crate::remote::Upid::parse(&task.upid)
        .map_err(|e| ApiError::bad_request(format!("upid: {e}")))?;
    Ok(task)
}

pub(super) async fn track(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    let b: TrackBody = body::json_body(&headers, raw, r#"{"upid": "pve:<remote>!UPID:…"}"#).await?;
    let task = task_ref(&b.upid)?;
    state.engine.track_task(task.clone()).await?;
    Ok(Json(
        json!({ "tracked": manager_ref(&task.remote, &task.upid) }),
    ))
}

pub(super) async fn untrack(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(upid): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    let task = task_ref(&upid)?;
    let name = manager_ref(&task.remote, &task.upid);
    if state.engine.untrack_task(task).await? {
        Ok(Json(json!({ "untracked": name })))
    } else {
        Err(ApiError::not_found(format!(
            "{name} is not tracked; GET /api/v1/tasks/tracked lists the tracked tasks"
        )))
    }
}

pub(super) async fn tracked(State(state): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    let list: Vec<String> = state
        .engine
        .tracked_tasks()
        .await?
        .iter()
        .map(|t| manager_ref(&t.remote, &t.upid))
        .collect();
    Ok(Json(json!({ "tracked": list })))
}

/// The manager's name of a remote task: `pve:<remote>!<UPID>` or `pbs:<remote>!<UPID>`
/// (the kind read from the UPID's shape: PBS UPIDs carry a task id).
pub fn manager_ref(remote: &RemoteId, upid: &str) -> String {
    let pbs = crate::remote::Upid::parse(upid).is_ok_and(|u| u.is_pbs());
    let kind = if pbs { "pbs" } else { "pve" };
    format!("{kind}:{remote}!{upid}")
}

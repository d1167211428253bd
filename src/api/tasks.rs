//! `GET /api/v1/tasks`: the task cache's filters as query parameters, newest first,
//! served from the cache's in-memory index; tasks dated in the future (a remote's clock
//! ahead) are marked `future` and listed last.

use axum::extract::{Query, State};
use axum::Json;
use fleetpoll_actors::{RemoteId, UnixTime};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, ApiState};
use crate::tasks::{StatusClass, TaskFilter, DEFAULT_LIMIT};

/// Query parameters of the task list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TasksQuery {
    remote: Option<String>,
    node: Option<String>,
    running: Option<bool>,
    since: Option<UnixTime>,
    until: Option<UnixTime>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    user: Option<String>,
    errors: Option<bool>,
    pub(super) status: Option<String>,
    start: Option<usize>,
    limit: Option<usize>,
}

const EXPECTED: &str = "remote, node, running=true|false, since, until (Unix seconds), type, \
                        user, errors=true|false, status=ok|warning|error|running, start, limit \
                        (default 50, 0 = all)";

/// The `status` parameter's class, if it names one.
pub(super) fn status_class(status: Option<&str>) -> ApiResult<Option<StatusClass>> {
    Ok(match status {
        None => None,
        Some("ok") => Some(StatusClass::Ok),
        Some("warning") => Some(StatusClass::Warning),
        Some("error") => Some(StatusClass::Error),
        Some("running") => Some(StatusClass::Running),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status: {other:?} is not one of ok, warning, error, running"
            )))
        }
    })
}

pub(super) async fn tasks(
    State(state): State<ApiState>,
    query: Result<Query<TasksQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("{e}; expected {EXPECTED}")))?;
    let status = status_class(q.status.as_deref())?;
    if let Some(remote) = &q.remote {
        state.engine.remote_status(&RemoteId::new(remote)).await?;
    }
    let filter = TaskFilter {
        remote: q.remote.map(RemoteId::new),
        node: q.node,
        running_only: q.running.unwrap_or(false),
        since: q.since,
        until: q.until,
        type_contains: q.task_type,
        user_contains: q.user,
        errors_only: q.errors.unwrap_or(false),
        status,
        start: q.start.unwrap_or(0),
        limit: q.limit.unwrap_or(DEFAULT_LIMIT),
        now: Some(state.clock.now_secs()),
    };
    let cache = state.tasks.clone();
    let page = tokio::task::spawn_blocking(move || cache.query(&filter))
        .await
        .map_err(|e| ApiError::internal(format!("the task query failed: {e}")))?;
    let tasks: Vec<serde_json::Value> = page
        .tasks
        .iter()
        .map(|t| {
            json!({
                "remote": t.remote,
                "upid": super::manager_ref(&t.remote, &t.task.upid),
                "node": t.task.node,
                "type": t.task.task_type,
                "id": t.task.task_id,
                "user": t.task.user,
                "starttime": t.task.start_time,
                "endtime": t.task.end_time,
                "status": t.task.status,
                "future": t.future,
            })
        })
        .collect();
    Ok(Json(json!({ "total": page.total, "tasks": tasks })))
}

//! `GET /api/v1/alerts` (the pending and firing alerts) and
//! `GET /api/v1/alerts/history?limit=` (the newest transitions, newest first).

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, ApiState};
use crate::rules::HISTORY_MAX;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    limit: Option<usize>,
}

const DEFAULT_HISTORY: usize = 100;

pub(super) async fn alerts(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let alerts = state.rules.as_ref().map(|r| r.alerts()).unwrap_or_default();
    let webhooks = state
        .rules
        .as_ref()
        .map(|r| r.webhooks())
        .unwrap_or_default();
    Json(json!({ "alerts": alerts, "webhooks": webhooks }))
}

pub(super) async fn history(
    State(state): State<ApiState>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected limit=1..{HISTORY_MAX} (default {DEFAULT_HISTORY})"
        ))
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY);
    if !(1..=HISTORY_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {HISTORY_MAX} (the history keeps that many), not {limit}"
        )));
    }
    let history = state
        .rules
        .as_ref()
        .map(|r| r.history(limit))
        .unwrap_or_default();
    Ok(Json(json!({ "history": history })))
}

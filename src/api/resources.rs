//! `GET /api/v1/resources?remote=`: the cached resource lists (every remote's, or one's),
//! each entry with exactly the fields of the reference manager's list; beside them each
//! remote's list's fill time and last error. Reads only the cache.

use axum::extract::{Query, State};
use axum::Json;
use fleetpoll_actors::{RemoteId, Resource};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{other_shard, ApiError, ApiResult, ApiState};
use crate::inventory::RemoteResources;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourcesQuery {
    /// One remote; none: every remote.
    remote: Option<String>,
}

/// One entry as the API writes it.
fn entry(remote: &RemoteId, r: &Resource) -> Value {
    json!({
        "remote": remote,
        "id": r.id,
        "type": r.resource_type,
        "node": r.node,
        "name": r.name,
        "status": r.status,
        "cpu": r.cpu,
        "maxcpu": r.maxcpu,
        "mem": r.mem,
        "maxmem": r.maxmem,
        "disk": r.disk,
        "maxdisk": r.maxdisk,
        "uptime": r.uptime,
    })
}

/// A list's fill time and error, without its entries.
fn list_state(e: &RemoteResources) -> Value {
    json!({
        "remote": e.remote,
        "filled_at": e.filled_at,
        "last_attempt": e.last_attempt,
        "last_error": e.last_error,
        "last_error_class": e.last_error_class,
        "count": e.resources.len(),
    })
}

pub(super) async fn resources(
    State(state): State<ApiState>,
    params: Result<Query<ResourcesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(p) = params
        .map_err(|e| ApiError::bad_request(format!("{e}; expected remote=<id> or no parameter")))?;
    let lists: Vec<RemoteResources> = match &p.remote {
        Some(id) => {
            let remote = RemoteId::new(id);
            // An unknown remote is a 404, as everywhere; a known one without a list
            // (a Prometheus target, the local host) has no entries.
            state
                .engine
                .remote_status(&remote)
                .await
                .map_err(|e| other_shard(&state, id, e))?;
            state
                .inventory
                .as_ref()
                .and_then(|i| i.get(&remote))
                .into_iter()
                .collect()
        }
        None => state
            .inventory
            .as_ref()
            .map(|i| i.cache().all())
            .unwrap_or_default(),
    };
    let resources: Vec<Value> = lists
        .iter()
        .flat_map(|e| e.resources.iter().map(|r| entry(&e.remote, r)))
        .collect();
    let states: Vec<Value> = lists.iter().map(list_state).collect();
    Ok(Json(json!({ "resources": resources, "remotes": states })))
}

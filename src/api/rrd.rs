//! `GET /api/v1/rrd/{remote}/{entity…}`: every metric of one entity on one time axis,
//! for a timeframe (`hour` … `decade`) or an explicit window, AVERAGE or MAX. An `hour`
//! request whose newest data is older than one collection interval first triggers a
//! collection of that remote and waits for it up to 5 s, as the reference manager does.
//! `GET /api/v1/top`: top guests by CPU and nodes by CPU and memory.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use fleetpoll_actors::{RemoteId, Target};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, ApiState};
use crate::rrd::query::{Query as RrdQuery, Timeframe, Window};
use crate::rrd::Cf;

/// How long an `hour` request waits for the collection it triggered.
const FRESHEN_WAIT: Duration = Duration::from_secs(5);

/// Query parameters of a history request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RrdParams {
    timeframe: Option<String>,
    cf: Option<String>,
    metrics: Option<String>,
    start: Option<i64>,
    end: Option<i64>,
    resolution: Option<u64>,
}

fn parse_cf(cf: Option<&str>) -> ApiResult<Cf> {
    match cf.unwrap_or("AVERAGE").to_ascii_uppercase().as_str() {
        "AVERAGE" => Ok(Cf::Average),
        "MAX" => Ok(Cf::Max),
        other => Err(ApiError::bad_request(format!(
            "cf: {other:?} is not AVERAGE or MAX"
        ))),
    }
}

pub(super) async fn history(
    State(state): State<ApiState>,
    Path((remote, entity)): Path<(String, String)>,
    params: Result<Query<RrdParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(p) = params.map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected timeframe=hour|day|week|month|year|decade or start, end and \
             resolution (seconds), cf=AVERAGE|MAX, metrics=a,b"
        ))
    })?;
    let remote_id = RemoteId::new(&remote);
    let status = state.engine.remote_status(&remote_id).await?;
    let cf = parse_cf(p.cf.as_deref())?;
    let window = match (&p.timeframe, p.start, p.end) {
        (Some(t), None, None) => Window::Timeframe(
            t.parse::<Timeframe>()
                .map_err(|e| ApiError::bad_request(format!("timeframe: {e}")))?,
        ),
        (None, Some(start), end) => {
            let end = end.unwrap_or_else(|| state.clock.now_secs());
            if end <= start {
                return Err(ApiError::bad_request("end must be after start"));
            }
            Window::Explicit {
                start,
                end,
                resolution: p.resolution.unwrap_or(60),
            }
        }
        (None, None, None) => Window::Timeframe(Timeframe::Hour),
        _ => {
            return Err(ApiError::bad_request(
                "give either timeframe or start (and end), not both",
            ))
        }
    };
    // An hour view of stale data: collect now and wait a little for fresh points.
    let interval = state.interval_secs.load(Ordering::Relaxed) as i64;
    if window == Window::Timeframe(Timeframe::Hour)
        && status
            .newest_datapoint
            .is_none_or(|t| state.clock.now_secs() - t > interval)
    {
        let trigger = state
            .engine
            .trigger(Target::Remote(remote_id.clone()), true);
        let _ = tokio::time::timeout(FRESHEN_WAIT, trigger).await;
    }
    let query = RrdQuery {
        entity: entity.clone(),
        metrics: p
            .metrics
            .map(|m| m.split(',').map(str::to_string).collect()),
        cf,
        window,
    };
    let store = state.metrics.clone();
    let clock = state.clock.clone();
    let result =
        tokio::task::spawn_blocking(move || store.query(&remote_id, &query, clock.now_secs()))
            .await
            .map_err(|e| ApiError::internal(format!("the history query failed: {e}")))?
            .map_err(|e| {
                if e.is_server_side() {
                    ApiError::internal(e.to_string())
                } else {
                    ApiError::bad_request(e.to_string())
                }
            })?;
    match result {
        Some(r) => Ok(Json(json!({ "remote": remote, "entity": entity, "cf": cf.to_string(), "data": r }))),
        None => Err(ApiError::not_found(format!(
            "no metrics are stored for entity {entity:?} of remote {remote:?}; \
             entities look like node/<node>, qemu/<vmid>, lxc/<vmid>, storage/<node>/<id>, host, datastore/<name>"
        ))),
    }
}

/// Query parameters of the top lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopParams {
    timeframe: Option<String>,
    n: Option<usize>,
}

/// One entry of a top list.
fn entry(remote: &RemoteId, entity: &str, value: f64) -> serde_json::Value {
    json!({ "remote": remote, "entity": entity, "value": value })
}

/// The mean of the known values of one metric of a query result.
fn mean_of(result: &crate::rrd::query::QueryResult, metric: &str) -> Option<f64> {
    let series = result.metrics.iter().find(|m| m.name == metric)?;
    let known: Vec<f64> = series.values.iter().flatten().copied().collect();
    (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
}

pub(super) async fn top(
    State(state): State<ApiState>,
    params: Result<Query<TopParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(p) = params.map_err(|e| {
        ApiError::bad_request(format!("{e}; expected timeframe=hour|day|…, n=<count>"))
    })?;
    let timeframe = p
        .timeframe
        .as_deref()
        .unwrap_or("day")
        .parse::<Timeframe>()
        .map_err(|e| ApiError::bad_request(format!("timeframe: {e}")))?;
    let n = p.n.unwrap_or(10).clamp(1, 1000);
    let remotes: Vec<RemoteId> = state
        .engine
        .status()
        .await?
        .into_iter()
        .map(|s| s.remote)
        .collect();
    let store = state.metrics.clone();
    let clock = state.clock.clone();
    let lists = tokio::task::spawn_blocking(move || {
        let now = clock.now_secs();
        let (mut guests, mut node_cpu, mut node_mem) = (Vec::new(), Vec::new(), Vec::new());
        for remote in &remotes {
            let Ok(entities) = store.entities(remote) else {
                continue;
            };
            for entity in entities {
                let guest = entity.starts_with("qemu/") || entity.starts_with("lxc/");
                let node = entity.starts_with("node/") || entity == "host";
                if !guest && !node {
                    continue;
                }
                let query = RrdQuery {
                    entity: entity.clone(),
                    metrics: Some(vec![
                        "cpu_current".into(),
                        "mem_used".into(),
                        "mem_total".into(),
                    ]),
                    cf: Cf::Average,
                    window: Window::Timeframe(timeframe),
                };
                let Ok(Some(result)) = store.query(remote, &query, now) else {
                    continue;
                };
                if let Some(cpu) = mean_of(&result, "cpu_current") {
                    if guest {
                        guests.push((cpu, entry(remote, &entity, cpu)));
                    } else {
                        node_cpu.push((cpu, entry(remote, &entity, cpu)));
                    }
                }
                if node {
                    if let (Some(used), Some(total)) =
                        (mean_of(&result, "mem_used"), mean_of(&result, "mem_total"))
                    {
                        if total > 0.0 {
                            let share = used / total;
                            node_mem.push((share, entry(remote, &entity, share)));
                        }
                    }
                }
            }
        }
        let top_n = |mut v: Vec<(f64, serde_json::Value)>| -> Vec<serde_json::Value> {
            v.sort_by(|a, b| b.0.total_cmp(&a.0));
            v.into_iter().take(n).map(|(_, e)| e).collect()
        };
        json!({
            "timeframe": timeframe.as_str(),
            "guests_by_cpu": top_n(guests),
            "nodes_by_cpu": top_n(node_cpu),
            "nodes_by_memory": top_n(node_mem),
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("the top query failed: {e}")))?;
    Ok(Json(lists))
}

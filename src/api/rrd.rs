//! `GET /api/v1/rrd/{remote}/{entity…}`: every metric of one entity on one time axis,
//! for a timeframe (`hour` … `decade`) or an explicit window, AVERAGE or MAX. A read
//! serves what is stored and never starts a collection (an unauthenticated read must
//! not drive polls or bypass a remote's backoff). An explicit window lies within
//! `0..=MAX_TIMESTAMP` and has at most `api.max_rows` rows at the step of the archive
//! that answers it; every time computation is checked, so a bad window is a 400.
//! `GET /api/v1/top`: top guests and nodes by CPU and by memory share; the hour from
//! the store's aggregate (no file read), longer timeframes from the files.

use axum::extract::{Path, Query, State};
use axum::Json;
use fleetpoll_actors::RemoteId;
use serde::Deserialize;
use serde_json::json;

use super::limits::MAX_TIMESTAMP;
use super::{ApiError, ApiResult, ApiState};
use crate::rrd::query::{Query as RrdQuery, Timeframe, Window};
use crate::rrd::{Cf, FetchRequest, RrdStore};

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

/// The query a history request's parameters ask for, of `entity` at `now`.
pub(super) fn rrd_query(p: RrdParams, entity: String, now: i64) -> ApiResult<RrdQuery> {
    let cf = parse_cf(p.cf.as_deref())?;
    let window = match (&p.timeframe, p.start, p.end) {
        (Some(t), None, None) => Window::Timeframe(
            t.parse::<Timeframe>()
                .map_err(|e| ApiError::bad_request(format!("timeframe: {e}")))?,
        ),
        (None, Some(start), end) => {
            let end = end.unwrap_or(now);
            let resolution = p.resolution.unwrap_or(60);
            explicit_window(start, end, resolution)?
        }
        (None, None, None) => Window::Timeframe(Timeframe::Hour),
        _ => {
            return Err(ApiError::bad_request(
                "give either timeframe or start (and end), not both",
            ))
        }
    };
    Ok(RrdQuery {
        entity,
        metrics: p
            .metrics
            .map(|m| m.split(',').map(str::to_string).collect()),
        cf,
        window,
    })
}

/// The timeframe of a top list (default: a day) and its length (default 10, at most
/// 1,000).
pub(super) fn top_params(p: &TopParams) -> ApiResult<(Timeframe, usize)> {
    let timeframe = p
        .timeframe
        .as_deref()
        .unwrap_or("day")
        .parse::<Timeframe>()
        .map_err(|e| ApiError::bad_request(format!("timeframe: {e}")))?;
    Ok((timeframe, p.n.unwrap_or(10).clamp(1, 1000)))
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
    let query = rrd_query(p, entity.clone(), state.clock.now_secs())?;
    let query_cf = query.cf;
    if matches!(query.window, Window::Timeframe(Timeframe::Hour)) {
        freshen_if_stale(&state, &remote_id, &entity, status.newest_datapoint).await;
    }
    let store = state.metrics.clone();
    let clock = state.clock.clone();
    let max_rows = state.max_rows;
    let result = tokio::task::spawn_blocking(move || {
        check_rows(&store, &remote_id, &query, max_rows)?;
        store
            .query(&remote_id, &query, clock.now_secs())
            .map_err(|e| {
                // Damage on the server's side is a 500 naming the file, not the caller's fault.
                if e.is_server_side() {
                    ApiError::internal(e.to_string())
                } else {
                    ApiError::bad_request(e.to_string())
                }
            })
    })
    .await
    .map_err(|e| ApiError::internal(format!("the history query failed: {e}")))??;
    match result {
        Some(r) => Ok(Json(json!({ "remote": remote, "entity": entity, "cf": query_cf.to_string(), "data": r }))),
        None => Err(ApiError::not_found(format!(
            "no metrics are stored for entity {entity:?} of remote {remote:?}; \
             entities look like node/<node>, qemu/<vmid>, lxc/<vmid>, storage/<node>/<id>, host, datastore/<name>"
        ))),
    }
}

/// The longest an hour view waits for the collection it asked for.
const FRESHEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An hour view of a remote whose newest point is older than one interval asks the
/// engine to freshen it and waits up to [`FRESHEN_WAIT`] — for an entity that exists
/// only. The engine's freshen never bypasses a backoff and runs at most once per
/// interval per remote, so readers cannot drive polls; it is not an operator's trigger.
async fn freshen_if_stale(
    state: &ApiState,
    remote: &RemoteId,
    entity: &str,
    newest: Option<fleetpoll_actors::UnixTime>,
) {
    let interval = state
        .interval_secs
        .load(std::sync::atomic::Ordering::Relaxed) as i64;
    let stale = newest.is_none_or(|t| state.clock.now_secs().saturating_sub(t) >= interval);
    if !stale {
        return;
    }
    let (store, id) = (state.metrics.clone(), remote.clone());
    let exists = tokio::task::spawn_blocking(move || store.entities(&id))
        .await
        .ok()
        .and_then(Result::ok)
        .is_some_and(|entities| entities.iter().any(|e| e == entity));
    if exists {
        let _ =
            tokio::time::timeout(FRESHEN_WAIT, state.engine.freshen(remote.clone(), true)).await;
    }
}

/// The explicit window `start..end` at `resolution`, or a 400 naming what is wrong.
fn explicit_window(start: i64, end: i64, resolution: u64) -> ApiResult<Window> {
    if !(0..=MAX_TIMESTAMP).contains(&start) || !(0..=MAX_TIMESTAMP).contains(&end) {
        return Err(ApiError::bad_request(format!(
            "start and end are Unix seconds between 0 and {MAX_TIMESTAMP} (the end of 9999)"
        )));
    }
    if end <= start {
        return Err(ApiError::bad_request("end must be after start"));
    }
    if resolution == 0 || resolution > MAX_TIMESTAMP as u64 {
        return Err(ApiError::bad_request(format!(
            "resolution is seconds per row, between 1 and {MAX_TIMESTAMP}"
        )));
    }
    Ok(Window::Explicit {
        start,
        end,
        resolution,
    })
}

/// How many rows `start..end` has at `step`, as a fetch lays them out (start rounded
/// down, end rounded up to the step); `None` if that cannot be computed.
fn rows(start: i64, end: i64, step: u64) -> Option<u64> {
    let step = i64::try_from(step).ok().filter(|s| *s > 0)?;
    let first = start.checked_sub(start.rem_euclid(step))?;
    let last = end.checked_add(step.checked_sub(end.rem_euclid(step))?)?;
    u64::try_from(last.checked_sub(first)? / step).ok()
}

/// Refuses an explicit window with more than `max_rows` rows. The archive that would
/// answer it is found by fetching the window's first instant alone (the choice depends
/// on the start and the resolution, not the end), so the answer is never built.
fn check_rows(
    store: &RrdStore,
    remote: &RemoteId,
    query: &RrdQuery,
    max_rows: u64,
) -> ApiResult<()> {
    let Window::Explicit {
        start,
        end,
        resolution,
    } = query.window
    else {
        return Ok(());
    };
    let probe = FetchRequest {
        cf: query.cf,
        start,
        end: start,
        resolution,
    };
    let Some(first) = store
        .fetch(remote, &query.entity, &probe)
        .map_err(|e| ApiError::bad_request(e.to_string()))?
    else {
        return Ok(()); // Nothing stored: the query answers 404.
    };
    match rows(start, end, first.step) {
        Some(n) if n <= max_rows => Ok(()),
        n => Err(ApiError::bad_request(format!(
            "the window has {} rows at this entity's {} s step; at most {max_rows} rows per \
             metric are served (api.max_rows): narrow start..end or ask a coarser resolution",
            n.map_or_else(|| "too many".to_string(), |n| n.to_string()),
            first.step
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

/// The lists of the aggregate as the API answers them.
fn top_json(timeframe: Timeframe, lists: &crate::rrd::top::TopLists) -> serde_json::Value {
    let list = |l: &[crate::rrd::top::TopEntry]| -> Vec<serde_json::Value> {
        l.iter()
            .map(|e| entry(&e.remote, &e.entity, e.value))
            .collect()
    };
    json!({
        "timeframe": timeframe.as_str(),
        "guests_by_cpu": list(&lists.guests_by_cpu),
        "guests_by_memory": list(&lists.guests_by_memory),
        "nodes_by_cpu": list(&lists.nodes_by_cpu),
        "nodes_by_memory": list(&lists.nodes_by_memory),
    })
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
    let (timeframe, n) = top_params(&p)?;
    let remotes: Vec<RemoteId> = state
        .engine
        .status()
        .await?
        .into_iter()
        .map(|s| s.remote)
        .collect();
    if timeframe == Timeframe::Hour {
        let lists = state.metrics.top(&remotes, state.clock.now_secs(), n);
        return Ok(Json(top_json(timeframe, &lists)));
    }
    let store = state.metrics.clone();
    let clock = state.clock.clone();
    let lists = tokio::task::spawn_blocking(move || {
        let now = clock.now_secs();
        let (mut guests, mut node_cpu, mut node_mem, mut guest_mem) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
                if let (Some(used), Some(total)) =
                    (mean_of(&result, "mem_used"), mean_of(&result, "mem_total"))
                {
                    if total > 0.0 {
                        let share = used / total;
                        let list = if node { &mut node_mem } else { &mut guest_mem };
                        list.push((share, entry(remote, &entity, share)));
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
            "guests_by_memory": top_n(guest_mem),
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("the top query failed: {e}")))?;
    Ok(Json(lists))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_with_checked_arithmetic() {
        assert_eq!(rows(0, 3600, 60), Some(61), "an aligned end gains a row");
        assert_eq!(rows(30, 3599, 60), Some(60));
        assert_eq!(rows(0, i64::MAX, 60), None, "no overflow, no panic");
        assert_eq!(rows(0, 10, 0), None);
    }

    #[test]
    fn explicit_windows_outside_the_calendar_are_refused() {
        for (start, end, resolution) in [
            (0, i64::MAX, 60),
            (-1, 10, 60),
            (10, 10, 60),
            (0, 10, 0),
            (0, 10, u64::MAX),
        ] {
            let err = explicit_window(start, end, resolution).unwrap_err();
            assert_eq!(err.0, axum::http::StatusCode::BAD_REQUEST, "{err:?}");
        }
        assert!(explicit_window(0, 3600, 60).is_ok());
    }
}

//! `GET /api/v1/live?remote=&entity=&since=`: Server-Sent Events of metric samples as
//! they are stored. With `since` (the newest timestamp a reader already has, e.g. from
//! its history query) the stream starts exactly after it: recent batches are replayed
//! from the engine's feed, then new ones follow, without a gap or a duplicate.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use fleetpoll_actors::StoredBatch;
use fleetpoll_actors::UnixTime;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, ApiResult, ApiState};

/// Query parameters of the live stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LiveQuery {
    remote: Option<String>,
    entity: Option<String>,
    since: Option<UnixTime>,
}

/// The events of one stored batch that pass the filter: one per entity.
fn events(batch: &StoredBatch, q: &LiveQuery, after: &mut Option<UnixTime>) -> Vec<Event> {
    if q.remote
        .as_deref()
        .is_some_and(|r| r != batch.remote.as_str())
    {
        return Vec::new();
    }
    let mut by_entity: std::collections::BTreeMap<&str, Vec<serde_json::Value>> =
        Default::default();
    let mut newest = *after;
    for p in &batch.batch.points {
        if after.is_some_and(|t| p.timestamp <= t) {
            continue;
        }
        let Some(series) = batch.batch.series.get(p.series as usize) else {
            continue;
        };
        if q.entity.as_deref().is_some_and(|e| e != &*series.entity) {
            continue;
        }
        newest = newest.max(Some(p.timestamp));
        by_entity.entry(&series.entity).or_default().push(json!({
            "metric": &*series.metric,
            "ts": p.timestamp,
            "value": p.value,
        }));
    }
    // Later batches of this remote are newer than what this one delivered.
    if q.remote.is_some() {
        *after = newest;
    }
    by_entity
        .into_iter()
        .map(|(entity, points)| {
            let data = json!({
                "remote": batch.remote,
                "entity": entity,
                "cursor": batch.cursor.0,
                "points": points,
            });
            Event::default()
                .event("samples")
                .id(batch.seq.to_string())
                .data(data.to_string())
        })
        .collect()
}

pub(super) async fn live(
    State(state): State<ApiState>,
    query: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected remote=<id>, entity=<entity id>, since=<unix seconds>"
        ))
    })?;
    if let Some(remote) = &q.remote {
        // A typo'd remote would otherwise be an empty stream forever.
        state
            .engine
            .remote_status(&fleetpoll_actors::RemoteId::new(remote))
            .await?;
    }
    let sub = state.engine.subscribe(q.since);
    let stream = async_stream(sub, q);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn async_stream(
    sub: fleetpoll_actors::Subscription,
    q: LiveQuery,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let q = Arc::new(q);
    let state = (
        sub,
        q.since,
        q,
        std::collections::VecDeque::<Event>::new(),
        true,
    );
    futures::stream::unfold(
        state,
        |(mut sub, mut after, q, mut pending, mut replaying)| async move {
            loop {
                if let Some(ev) = pending.pop_front() {
                    return Some((Ok(ev), (sub, after, q, pending, replaying)));
                }
                if replaying {
                    replaying = false;
                    let replay = std::mem::take(&mut sub.replay);
                    for b in &replay {
                        pending.extend(events(b, &q, &mut after));
                    }
                    continue;
                }
                match sub.receiver.recv().await {
                    Ok(b) => pending.extend(events(&b, &q, &mut after)),
                    Err(RecvError::Lagged(n)) => {
                        let ev = Event::default()
                            .event("lagged")
                            .data(json!({ "skipped_batches": n }).to_string());
                        pending.push_back(ev);
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    )
}

//! `GET /api/v1/live?remote=&entity=&since=`: Server-Sent Events of metric samples as
//! they are stored. With `since` (the newest timestamp a reader already has, e.g. from
//! its history query) the stream starts exactly after it: recent batches are replayed
//! from the engine's feed, then new ones follow, without a gap or a duplicate.
//!
//! What one reader costs is bounded: the replay is the feed's shared batches (one
//! pointer each), serialized one batch at a time as the socket takes them; live batches
//! come through the feed's bounded broadcast, and a reader that falls behind it gets a
//! `lagged` event naming the batches it missed instead of a growing buffer. At most
//! `api.max_streams` streams are open; beyond that the answer is 503 with `Retry-After`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fleetpoll_actors::{StoredBatch, Subscription, UnixTime};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::OwnedSemaphorePermit;

use super::limits::RETRY_AFTER_SECS;
use super::{ApiError, ApiState};

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
) -> Response {
    match open(state, query).await {
        Ok(response) => response,
        Err(refused) => refused,
    }
}

async fn open(
    state: ApiState,
    query: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Response> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected remote=<id>, entity=<entity id>, since=<unix seconds>"
        ))
        .into_response()
    })?;
    if let Some(remote) = &q.remote {
        // A typo'd remote would otherwise be an empty stream forever.
        state
            .engine
            .remote_status(&fleetpoll_actors::RemoteId::new(remote))
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
    }
    let permit = state
        .live_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::busy(format!(
                "{} live streams are open, the most fleetpoll serves at once (api.max_streams); \
             retry in {RETRY_AFTER_SECS} s or close a stream",
                state.max_streams
            ))
        })?;
    let sub = state.engine.subscribe(q.since);
    let stream = follow(sub, q, permit);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Where one reader's stream stands.
struct Follow {
    replay: std::vec::IntoIter<Arc<StoredBatch>>,
    receiver: tokio::sync::broadcast::Receiver<Arc<StoredBatch>>,
    after: Option<UnixTime>,
    query: LiveQuery,
    /// The events of the batch being sent (one batch's worth at most).
    pending: std::collections::VecDeque<Event>,
    /// Held while the stream is open.
    _permit: OwnedSemaphorePermit,
}

/// The events of a subscription: the replayed batches, then the live ones, each batch
/// serialized only when the previous one has been sent.
fn follow(
    sub: Subscription,
    query: LiveQuery,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = Follow {
        replay: sub.replay.into_iter(),
        receiver: sub.receiver,
        after: query.since,
        query,
        pending: Default::default(),
        _permit: permit,
    };
    futures::stream::unfold(state, |mut f| async move {
        loop {
            if let Some(ev) = f.pending.pop_front() {
                return Some((Ok(ev), f));
            }
            if let Some(batch) = f.replay.next() {
                let evs = events(&batch, &f.query, &mut f.after);
                f.pending.extend(evs);
                continue;
            }
            match f.receiver.recv().await {
                Ok(b) => {
                    let evs = events(&b, &f.query, &mut f.after);
                    f.pending.extend(evs);
                }
                Err(RecvError::Lagged(n)) => {
                    let ev = Event::default()
                        .event("lagged")
                        .data(json!({ "skipped_batches": n }).to_string());
                    f.pending.push_back(ev);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetpoll_actors::{Cursor, MetricBatch, MetricKind, MetricPoint, RemoteId, SeriesKey};
    use futures::StreamExt;
    use tokio::sync::Semaphore;

    fn batch(seq: u64, ts: i64) -> Arc<StoredBatch> {
        Arc::new(StoredBatch {
            seq,
            remote: RemoteId::new("r"),
            batch: Arc::new(MetricBatch {
                series: vec![SeriesKey {
                    entity: "node/a".into(),
                    metric: "cpu".into(),
                    kind: MetricKind::Gauge,
                }],
                points: vec![MetricPoint {
                    series: 0,
                    timestamp: ts,
                    value: 1.0,
                }],
                dropped_future: 0,
            }),
            cursor: Cursor(Some(ts)),
            stored_at: tokio::time::Instant::now(),
        })
    }

    #[tokio::test]
    async fn the_replay_is_serialized_one_batch_at_a_time_from_the_shared_batches() {
        let shared: Vec<Arc<StoredBatch>> = (0..100).map(|i| batch(i, 1000 + i as i64)).collect();
        let (_sender, receiver) = tokio::sync::broadcast::channel(16);
        let sub = Subscription {
            replay: shared.clone(),
            receiver,
        };
        let query = LiveQuery {
            remote: None,
            entity: None,
            since: None,
        };
        let permits = Arc::new(Semaphore::new(1));
        let permit = permits.clone().try_acquire_owned().unwrap();
        let mut stream = Box::pin(follow(sub, query, permit));
        assert!(stream.next().await.is_some());
        // The stream holds the batches it has not sent (shared, not copied): every
        // batch after the first is still referenced by it.
        assert!(
            shared[1..].iter().all(|b| Arc::strong_count(b) == 2),
            "the replay was copied or serialized ahead"
        );
        assert_eq!(
            permits.available_permits(),
            0,
            "the stream holds its permit"
        );
        drop(stream);
        assert_eq!(
            permits.available_permits(),
            1,
            "a closed stream frees its permit"
        );
    }
}

//! The live feed: every metric batch the Storage actor has stored durably, in store
//! order, to any number of subscribers. A short replay ring lets a reader that just read
//! history up to some timestamp continue from exactly there: the ring snapshot and the
//! subscription are taken under one lock, so nothing falls between them and nothing is
//! delivered twice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::model::{Cursor, MetricBatch, RemoteId, UnixTime};

/// One stored batch as the feed delivers it.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    /// Position in the feed (increases by one per batch).
    pub seq: u64,
    /// Whose batch.
    pub remote: RemoteId,
    /// The points, as stored.
    pub batch: Arc<MetricBatch>,
    /// The remote's cursor after the store.
    pub cursor: Cursor,
    /// When the store acknowledged it (monotonic clock).
    pub stored_at: tokio::time::Instant,
}

/// The feed of one engine.
#[derive(Debug)]
pub(crate) struct LiveFeed {
    inner: Mutex<Ring>,
    sender: broadcast::Sender<Arc<StoredBatch>>,
}

#[derive(Debug)]
struct Ring {
    next_seq: u64,
    recent: VecDeque<Arc<StoredBatch>>,
    capacity: usize,
    max_points: usize,
    points: usize,
}

/// A subscription: the replayed batches first, then `receiver` for what follows.
#[derive(Debug)]
pub struct Subscription {
    /// Stored batches newer than the requested point that were already in the ring.
    pub replay: Vec<Arc<StoredBatch>>,
    /// Batches stored after the subscription.
    pub receiver: broadcast::Receiver<Arc<StoredBatch>>,
}

impl LiveFeed {
    /// A feed keeping at most the last `capacity` batches and `max_points` points for
    /// replay (the newest batch is always kept). Live subscribers that fall more than
    /// `capacity` batches behind are told they lagged.
    pub(crate) fn new(capacity: usize, max_points: usize) -> Arc<LiveFeed> {
        let (sender, _) = broadcast::channel(capacity.max(16));
        Arc::new(LiveFeed {
            inner: Mutex::new(Ring {
                next_seq: 0,
                recent: VecDeque::new(),
                capacity: capacity.max(1),
                max_points,
                points: 0,
            }),
            sender,
        })
    }

    /// Publishes a stored batch (called by the Storage actor after the store acked it).
    pub(crate) fn publish(&self, remote: RemoteId, batch: Arc<MetricBatch>, cursor: Cursor) {
        let mut ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let item = Arc::new(StoredBatch {
            seq: ring.next_seq,
            remote,
            batch,
            cursor,
            stored_at: tokio::time::Instant::now(),
        });
        ring.next_seq += 1;
        ring.points += item.batch.len();
        ring.recent.push_back(item.clone());
        while ring.recent.len() > 1
            && (ring.recent.len() > ring.capacity || ring.points > ring.max_points)
        {
            if let Some(old) = ring.recent.pop_front() {
                ring.points -= old.batch.len();
            }
        }
        // No subscriber is not an error.
        let _ = self.sender.send(item);
    }

    /// Subscribes; the replay holds the ring's batches with a point newer than `since`
    /// (all of them with `None`).
    pub(crate) fn subscribe(&self, since: Option<UnixTime>) -> Subscription {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.sender.subscribe();
        let replay = ring
            .recent
            .iter()
            .filter(|b| since.is_none_or(|t| b.batch.points.iter().any(|p| p.timestamp > t)))
            .cloned()
            .collect();
        Subscription { replay, receiver }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricKind, MetricPoint, SeriesKey};

    fn batch(ts: i64) -> Arc<MetricBatch> {
        Arc::new(MetricBatch {
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
        })
    }

    #[tokio::test]
    async fn a_subscriber_gets_replay_then_live_without_gap_or_duplicate() {
        let feed = LiveFeed::new(3, 1000);
        for ts in [10, 20, 30, 40] {
            feed.publish(RemoteId::new("r"), batch(ts), Cursor(Some(ts)));
        }
        let mut sub = feed.subscribe(Some(25));
        let replayed: Vec<u64> = sub.replay.iter().map(|b| b.seq).collect();
        assert_eq!(
            replayed,
            vec![2, 3],
            "only batches newer than 25, ring of 3"
        );
        feed.publish(RemoteId::new("r"), batch(50), Cursor(Some(50)));
        let live = sub.receiver.recv().await.unwrap();
        assert_eq!(live.seq, 4);
        assert!(sub.receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_replay_ring_is_bounded_by_points_too() {
        let feed = LiveFeed::new(100, 2);
        for ts in [10, 20, 30, 40] {
            feed.publish(RemoteId::new("r"), batch(ts), Cursor(Some(ts)));
        }
        let sub = feed.subscribe(None);
        let replayed: Vec<u64> = sub.replay.iter().map(|b| b.seq).collect();
        assert_eq!(replayed, vec![2, 3], "two one-point batches fit");
    }
}

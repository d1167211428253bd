//! [`LocalSource`]: the local host as a remote (id `local`), behind a cache with a
//! time to live. The cache's fill time is set when the reading is taken — after the
//! read, from tokio's clock — so a reading is served for at most the TTL after it was
//! taken (Nomad once stamped its cache at creation and served stale values forever).
//! `GET /api/v1/local` and collections within the TTL are answered from the cache.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetpoll_actors::{
    Clock, Cursor, ErrorClass, MetricBatch, MetricKind, MetricPoint, RemoteSource, SeriesKey,
    SourceError, TaskBatch, TaskQuery, TaskState, UnixTime,
};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::host::{read_host, CpuTicks, HostReading, COUNTERS};

/// The reserved remote id of the local host.
pub const LOCAL_ID: &str = "local";

/// What reads the host: /proc in production, a fake in tests.
pub type HostReader = dyn Fn(Option<CpuTicks>) -> Result<HostReading, String> + Send + Sync;

/// A reading and when it was taken.
#[derive(Clone, Debug)]
pub struct CachedReading {
    /// The values.
    pub reading: Arc<HostReading>,
    /// Wall time of the reading (Unix seconds).
    pub at: UnixTime,
    filled: Instant,
}

/// The local host source.
pub struct LocalSource {
    reader: Box<HostReader>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Mutex<Option<CachedReading>>,
    reads: AtomicU64,
}

impl fmt::Debug for LocalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSource")
            .field("ttl", &self.ttl)
            .field("reads", &self.reads.load(Ordering::Relaxed))
            .finish()
    }
}

impl LocalSource {
    /// The host read from /proc, readings kept for `ttl`.
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration) -> LocalSource {
        LocalSource::with_reader(Box::new(read_host), clock, ttl)
    }

    /// As [`LocalSource::new`] with another reader (tests).
    pub fn with_reader(reader: Box<HostReader>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        LocalSource {
            reader,
            clock,
            ttl,
            cache: Mutex::new(None),
            reads: AtomicU64::new(0),
        }
    }

    /// How often the host was actually read.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The cached reading while it is younger than the TTL, else a fresh one.
    pub fn current(&self) -> Result<CachedReading, SourceError> {
        let mut cache = self.cache.lock();
        if let Some(c) = cache.as_ref() {
            if c.filled.elapsed() < self.ttl {
                return Ok(c.clone());
            }
        }
        let previous = cache.as_ref().map(|c| c.reading.cpu);
        let reading = (self.reader)(previous)
            .map_err(|e| SourceError::new(ErrorClass::Other, format!("remote {LOCAL_ID}: {e}")))?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        // Stamped after the read: the TTL counts from when the values were taken.
        let fresh = CachedReading {
            reading: Arc::new(reading),
            at: self.clock.now_secs(),
            filled: Instant::now(),
        };
        *cache = Some(fresh.clone());
        Ok(fresh)
    }
}

/// A reading as a batch: entity `host`, and `net/<device>`, `disk/<device>`.
pub fn to_batch(reading: &HostReading, at: UnixTime) -> MetricBatch {
    let mut batch = MetricBatch::default();
    let mut push = |entity: &str, metric: &str, value: f64| {
        let kind = if COUNTERS.contains(&metric) {
            MetricKind::Derive
        } else {
            MetricKind::Gauge
        };
        batch.points.push(MetricPoint {
            series: batch.series.len() as u32,
            timestamp: at,
            value,
        });
        batch.series.push(SeriesKey {
            entity: entity.into(),
            metric: metric.into(),
            kind,
        });
    };
    for (metric, value) in &reading.host {
        push("host", metric, *value);
    }
    for (dev, (rx, tx)) in &reading.net {
        let entity = format!("net/{dev}");
        push(&entity, "net_in", *rx as f64);
        push(&entity, "net_out", *tx as f64);
    }
    for (dev, (rd, wr)) in &reading.disks {
        let entity = format!("disk/{dev}");
        push(&entity, "disk_read", *rd as f64);
        push(&entity, "disk_write", *wr as f64);
    }
    batch
}

#[async_trait]
impl RemoteSource for LocalSource {
    async fn fetch_metrics(&self, _since: Cursor) -> Result<MetricBatch, SourceError> {
        let c = self.current()?;
        Ok(to_batch(&c.reading, c.at))
    }

    async fn list_tasks(&self, _query: &TaskQuery) -> Result<TaskBatch, SourceError> {
        Ok(TaskBatch::default())
    }

    async fn task_status(&self, upid: &str) -> Result<TaskState, SourceError> {
        Err(SourceError::new(
            ErrorClass::NotFound,
            format!("remote {LOCAL_ID}: the local host source has no tasks ({upid})"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetpoll_actors::TokioClock;

    fn fake() -> Box<HostReader> {
        Box::new(|_| {
            let mut r = HostReading::default();
            r.host.insert("mem_total", 1024.0);
            r.host.insert("net_in", 5.0);
            r.net.insert("eth0".into(), (5, 7));
            r.disks.insert("sda".into(), (512, 1024));
            Ok(r)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_within_the_ttl_is_served_from_the_cache_and_one_after_it_reads_again() {
        let clock = Arc::new(TokioClock::starting_at(Duration::from_secs(1_700_000_000)));
        let source = LocalSource::with_reader(fake(), clock, Duration::from_secs(5));
        source.current().unwrap();
        assert_eq!(source.reads(), 1);
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        source.fetch_metrics(Cursor::START).await.unwrap();
        assert_eq!(source.reads(), 1, "within the TTL: no read");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let batch = source.fetch_metrics(Cursor::START).await.unwrap();
        assert_eq!(source.reads(), 2, "after the TTL: read again");
        assert_eq!(batch.newest(), Some(1_700_000_005));
    }

    #[test]
    fn readings_become_host_net_and_disk_entities_with_counters_as_derive() {
        let reading = fake()(None).unwrap();
        let batch = to_batch(&reading, 100);
        let of = |entity: &str, metric: &str| {
            batch
                .series
                .iter()
                .find(|k| &*k.entity == entity && &*k.metric == metric)
                .map(|k| k.kind)
        };
        assert_eq!(of("host", "mem_total"), Some(MetricKind::Gauge));
        assert_eq!(of("host", "net_in"), Some(MetricKind::Derive));
        assert_eq!(of("net/eth0", "net_out"), Some(MetricKind::Derive));
        assert_eq!(of("disk/sda", "disk_write"), Some(MetricKind::Derive));
        assert_eq!(batch.len(), 2 + 2 + 2);
    }
}

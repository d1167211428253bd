//! The exporter hook: it encodes each stored batch into its kind's format, seals
//! chunks of at most `batch_max_points` (or what is buffered every
//! `flush_interval_ms`), and sends them in order. A failed send is retried after a
//! capped, jittered backoff while new chunks queue behind it, never waiting inside the
//! hook: the queue holds at most `queue_max_points`, and the oldest chunks are dropped
//! (and counted) beyond. A rejected chunk (HTTP 4xx but 429) is dropped and reported.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetpoll_actors::{Hook, HookBatch, HookError, UnixTime};
use rand::Rng;
use tokio::time::Instant;

use super::encode::{Chunk, Encoder};
use super::spec::ExporterSpec;
use super::status::ExporterStats;
use super::transport::{SendError, Transport};

/// The first retry comes after about this long.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Retries come at least this often.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// One exporter, as a hook.
#[derive(Debug)]
pub struct Exporter {
    spec: Arc<ExporterSpec>,
    encoder: Encoder,
    transport: Transport,
    chunks: VecDeque<Chunk>,
    queued_points: usize,
    stats: Arc<ExporterStats>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Exporter {
    /// An exporter reporting into `stats`.
    pub fn new(spec: Arc<ExporterSpec>, stats: Arc<ExporterStats>) -> Self {
        Self {
            encoder: Encoder::new(&spec),
            transport: Transport::new(spec.target.clone(), spec.timeout),
            spec,
            chunks: VecDeque::new(),
            queued_points: 0,
            stats,
            failures: 0,
            retry_at: None,
        }
    }

    fn enqueue(&mut self, chunk: Chunk) {
        self.queued_points += chunk.points;
        self.chunks.push_back(chunk);
        // The newest chunk always stays; older ones go when over the bound.
        while self.queued_points > self.spec.queue_max_points && self.chunks.len() > 1 {
            if let Some(old) = self.chunks.pop_front() {
                self.queued_points -= old.points;
                self.stats
                    .dropped
                    .fetch_add(old.points as u64, Ordering::Relaxed);
            }
        }
        self.publish_queued();
    }

    fn publish_queued(&self) {
        let n = self.queued_points + self.encoder.pending();
        self.stats.queued.store(n as u64, Ordering::Relaxed);
    }

    fn seal_pending(&mut self) {
        if let Some(c) = self.encoder.seal() {
            self.enqueue(c);
        }
    }

    /// Sends queued chunks in order until the queue is empty or a send fails.
    async fn drain(&mut self) {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        while let Some(chunk) = self.chunks.front() {
            match self.transport.send(&chunk.payload).await {
                Ok(()) => {
                    let chunk = self.chunks.pop_front().expect("the front chunk");
                    self.queued_points -= chunk.points;
                    self.stats
                        .sent
                        .fetch_add(chunk.points as u64, Ordering::Relaxed);
                    self.stats
                        .last_success
                        .store(fleetpoll_actors::system_now_secs(), Ordering::Relaxed);
                    let lag = chunk.stored_at.elapsed().as_millis() as u64;
                    self.stats.record_lag(lag, chunk.points);
                    self.failures = 0;
                    self.retry_at = None;
                }
                Err(SendError::Rejected(msg)) => {
                    let chunk = self.chunks.pop_front().expect("the front chunk");
                    self.queued_points -= chunk.points;
                    self.stats
                        .rejected
                        .fetch_add(chunk.points as u64, Ordering::Relaxed);
                    self.fail(format!("rejected, not retried: {msg}"));
                }
                Err(SendError::Retry(msg)) => {
                    self.failures = self.failures.saturating_add(1);
                    let delay = backoff(self.failures);
                    self.retry_at = Some(Instant::now() + delay);
                    self.fail(format!("{msg}; retrying in {} ms", delay.as_millis()));
                    break;
                }
            }
        }
        self.publish_queued();
    }

    fn fail(&self, message: String) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(exporter = %self.spec.name, error = %message, "export failed");
        *self.stats.last_error.lock() = Some(message);
    }
}

/// Full jitter below a ceiling that doubles per consecutive failure, capped.
fn backoff(failures: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

#[async_trait]
impl Hook for Exporter {
    async fn on_batch(&mut self, batch: &HookBatch) -> Result<(), HookError> {
        let mut sealed = Vec::new();
        let spec = self.spec.clone();
        self.encoder.push(&spec, batch, &mut sealed);
        let full = !sealed.is_empty();
        for c in sealed {
            self.enqueue(c);
        }
        if full {
            self.drain().await;
        }
        self.publish_queued();
        Ok(())
    }

    fn tick_every(&self) -> Option<Duration> {
        // Ticks a few times per flush interval so a flush is at most a little late.
        Some((self.spec.flush_interval / 4).max(Duration::from_millis(10)))
    }

    async fn on_tick(&mut self, _now: UnixTime) -> Result<(), HookError> {
        let due = self
            .encoder
            .oldest()
            .is_some_and(|t| t.elapsed() >= self.spec.flush_interval);
        if due && self.encoder.pending() > 0 {
            self.seal_pending();
        }
        if !self.chunks.is_empty() {
            self.drain().await;
        }
        Ok(())
    }

    async fn on_stop(&mut self) {
        // One last try for what is buffered; a receiver that is down loses it.
        self.seal_pending();
        self.retry_at = None;
        self.drain().await;
        self.stats.queued.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for f in 1..40 {
            let d = backoff(f);
            assert!(d <= BACKOFF_CAP, "{d:?}");
            assert!(d >= BACKOFF_BASE / 2);
        }
        assert!(backoff(30) >= BACKOFF_CAP / 2);
    }
}

//! The simulator's clock: the clock it was started with, held a number of seconds
//! behind until it is told to catch up. A fleet whose clock lags real time lets a
//! benchmark backfill, then move every remote a whole collection interval on at once
//! (`--clock-behind-secs` and SIGHUP), and no point it serves is ever in the future of
//! the collector's clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::Clock;

/// A clock `behind` the one it wraps until [`LaggingClock::catch_up`].
#[derive(Debug)]
pub(crate) struct LaggingClock {
    inner: Arc<dyn Clock>,
    behind_ms: AtomicU64,
}

impl LaggingClock {
    pub(crate) fn new(inner: Arc<dyn Clock>, behind: Duration) -> LaggingClock {
        LaggingClock {
            inner,
            behind_ms: AtomicU64::new(u64::try_from(behind.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// From now on the time of the wrapped clock: every remote jumps forward by the lag.
    pub(crate) fn catch_up(&self) {
        self.behind_ms.store(0, Ordering::Relaxed);
    }

    /// How far behind the wrapped clock it is.
    pub(crate) fn behind(&self) -> Duration {
        Duration::from_millis(self.behind_ms.load(Ordering::Relaxed))
    }
}

impl Clock for LaggingClock {
    fn now(&self) -> Duration {
        self.inner.now().saturating_sub(self.behind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetpoll_actors::TokioClock;

    #[tokio::test(start_paused = true)]
    async fn a_lagging_clock_runs_behind_until_it_catches_up_then_keeps_real_time() {
        let wall = 1_700_000_000;
        let real = Arc::new(TokioClock::starting_at(Duration::from_secs(wall)));
        let clock = LaggingClock::new(real, Duration::from_secs(600));
        assert_eq!(clock.now_secs(), wall as i64 - 600);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            clock.now_secs(),
            wall as i64 - 570,
            "it runs at the real rate"
        );
        clock.catch_up();
        assert_eq!(clock.behind(), Duration::ZERO);
        assert_eq!(clock.now_secs(), wall as i64 + 30);
    }
}

//! A fleet of fake remotes around one engine, for the engine's paused-time tests.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::testing::{FakeSource, MemoryMetricStore, MemoryTaskStore, Probe};
use fleetpoll_actors::{
    Clock, Engine, EngineBuilder, EngineConfig, EngineHandle, RemoteConfig, RemoteKind,
    SeededRandomness, TokioClock,
};

/// Wall time at which every test starts: 300 s past a 600 s boundary.
pub const T0: u64 = 1_700_000_100;

pub struct Fleet {
    pub probe: Arc<Probe>,
    pub clock: Arc<TokioClock>,
    pub metrics: Arc<MemoryMetricStore>,
    pub tasks: Arc<MemoryTaskStore>,
    pub sources: HashMap<String, Arc<FakeSource>>,
    pub config: EngineConfig,
}

impl Fleet {
    /// `n` PBS-like remotes named r0…, with a config whose jitter is zero.
    pub fn new(n: usize) -> Self {
        let probe = Probe::new();
        let clock = Arc::new(TokioClock::starting_at(Duration::from_secs(T0)));
        let mut fleet = Fleet {
            probe,
            clock,
            metrics: MemoryMetricStore::new(),
            tasks: MemoryTaskStore::new(),
            sources: HashMap::new(),
            config: EngineConfig::default(),
        };
        fleet.config.collection.start_offset_max = Duration::ZERO;
        fleet.config.collection.connection_delay_max = Duration::ZERO;
        for i in 0..n {
            fleet.add_remote(&format!("r{i}"), 1);
        }
        fleet
    }

    pub fn add_remote(&mut self, id: &str, connections: u32) -> Arc<FakeSource> {
        let source = Arc::new(
            FakeSource::new(id, self.probe.clone(), self.clock.clone() as Arc<dyn Clock>)
                .with_connections(connections),
        );
        self.sources.insert(id.to_string(), source.clone());
        let kind = if connections > 1 {
            RemoteKind::Pve
        } else {
            RemoteKind::Pbs
        };
        let mut rc = RemoteConfig::new(id, kind, source.clone());
        rc.connection_cap = connections.max(1);
        self.config.remotes.push(rc);
        source
    }

    pub fn source(&self, id: &str) -> Arc<FakeSource> {
        self.sources[id].clone()
    }

    /// Marks every remote as collected just now, so start-up collects nothing.
    pub fn seed_fresh(&self) {
        for id in self.sources.keys() {
            self.metrics.seed_cursor(id, T0 as i64);
        }
    }

    pub async fn start(&self) -> EngineHandle {
        self.start_with(self.config.clone()).await
    }

    pub async fn start_with(&self, config: EngineConfig) -> EngineHandle {
        self.start_full(config, self.clock.clone()).await
    }

    pub async fn start_with_clock(&self, clock: Arc<dyn Clock>) -> EngineHandle {
        self.start_full(self.config.clone(), clock).await
    }

    pub async fn start_full(&self, config: EngineConfig, clock: Arc<dyn Clock>) -> EngineHandle {
        self.builder_full(config, clock)
            .start()
            .await
            .expect("engine starts")
    }

    /// The builder `start` uses, for a test that adds to it (hooks).
    pub fn builder(&self) -> EngineBuilder {
        self.builder_full(self.config.clone(), self.clock.clone())
    }

    fn builder_full(&self, config: EngineConfig, clock: Arc<dyn Clock>) -> EngineBuilder {
        Engine::builder(config)
            .metric_store(self.metrics.clone())
            .task_store(self.tasks.clone())
            .clock(clock)
            .randomness(Arc::new(SeededRandomness::new(7)))
    }

    /// Seconds since the epoch on the engine's clock.
    pub fn now(&self) -> f64 {
        self.clock.now().as_secs_f64()
    }
}

pub use fleetpoll_actors::testing::wait_until;

/// A wall clock that can jump ahead of tokio's clock (a suspended machine).
#[derive(Debug)]
pub struct JumpClock {
    inner: Arc<TokioClock>,
    extra_ms: std::sync::atomic::AtomicU64,
}

impl JumpClock {
    pub fn new(inner: Arc<TokioClock>) -> Self {
        Self {
            inner,
            extra_ms: Default::default(),
        }
    }

    pub fn jump(&self, by: Duration) {
        self.extra_ms
            .fetch_add(by.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for JumpClock {
    fn now(&self) -> Duration {
        self.inner.now()
            + Duration::from_millis(self.extra_ms.load(std::sync::atomic::Ordering::SeqCst))
    }
}

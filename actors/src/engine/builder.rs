//! [`Engine::builder`]: the library's front door. The builder takes the config, the
//! stores and (for tests) the clock and randomness, validates the config and starts the
//! supervision tree, returning its [`EngineHandle`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell};
use tokio::sync::watch;

use super::handle::{EngineError, EngineHandle, Inner};
use crate::clock::{Clock, Randomness, ThreadRandomness, TokioClock};
use crate::config::EngineConfig;
use crate::env::Env;
use crate::hooks::{Hook, HookBus, HookOptions};
use crate::poller::PollStats;
use crate::storage::{LiveFeed, MetricStore, Stores, TaskStore};
use crate::supervisor::{PollerDirectory, Refs, Supervisor, SupervisorArgs};

/// Builds and starts an engine.
#[derive(Debug)]
pub struct EngineBuilder {
    config: EngineConfig,
    metrics: Option<Arc<dyn MetricStore>>,
    tasks: Option<Arc<dyn TaskStore>>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Randomness>,
    parent: Option<ActorCell>,
    hooks: Arc<HookBus>,
    hook_error: Option<String>,
    #[cfg(feature = "fault-injection")]
    panics: Option<Arc<crate::fault::PanicRates>>,
}

/// Stored batches kept for replay to new live subscribers, and the points they may hold
/// (about 24 bytes each): enough for a reader to catch up from its history query.
const LIVE_REPLAY_BATCHES: usize = 4096;
const LIVE_REPLAY_POINTS: usize = 250_000;

/// Entry point of the library.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// A builder for an engine running `config`.
    pub fn builder(config: EngineConfig) -> EngineBuilder {
        EngineBuilder {
            config,
            metrics: None,
            tasks: None,
            clock: Arc::new(TokioClock::system()),
            rng: Arc::new(ThreadRandomness),
            parent: None,
            hooks: Arc::default(),
            hook_error: None,
            #[cfg(feature = "fault-injection")]
            panics: None,
        }
    }
}

impl EngineBuilder {
    /// Panics injected at random into pollers, hooks and exporters (feature
    /// `fault-injection` only; see [`PanicRates`](crate::PanicRates)).
    #[cfg(feature = "fault-injection")]
    pub fn panic_rates(mut self, rates: crate::fault::PanicRates) -> Self {
        self.panics = Some(Arc::new(rates));
        self
    }

    /// The metric store (required).
    pub fn metric_store(mut self, store: Arc<dyn MetricStore>) -> Self {
        self.metrics = Some(store);
        self
    }

    /// The task store (required).
    pub fn task_store(mut self, store: Arc<dyn TaskStore>) -> Self {
        self.tasks = Some(store);
        self
    }

    /// The wall clock (default: the system time advanced by tokio's clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The randomness for offsets, delays and jitter (default: thread-local RNG).
    pub fn randomness(mut self, rng: Arc<dyn Randomness>) -> Self {
        self.rng = rng;
        self
    }

    /// An actor of the embedding application that supervises the engine: it receives
    /// the engine supervisor's failure when a core actor exceeds its restart intensity.
    pub fn supervised_by(mut self, parent: ActorCell) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Registers a hook under a unique `name`, with the default queue bound.
    pub fn hook(self, name: &str, hook: impl Hook) -> Self {
        self.hook_with(name, Box::new(hook), HookOptions::default())
    }

    /// Registers a hook under a unique `name` with its own queue bound.
    pub fn hook_with(mut self, name: &str, hook: Box<dyn Hook>, options: HookOptions) -> Self {
        if let Err(d) = self.hooks.register(name, hook, options) {
            self.hook_error
                .get_or_insert(format!("a hook named {:?} was registered twice", d.0));
        }
        self
    }

    /// Validates the config and starts the supervision tree.
    pub async fn start(self) -> Result<EngineHandle, EngineError> {
        self.config.validate()?;
        if let Some(text) = self.hook_error {
            return Err(EngineError::Hook(text));
        }
        let stores = Stores {
            metrics: self
                .metrics
                .ok_or(EngineError::Incomplete("no metric store was given"))?,
            tasks: self
                .tasks
                .ok_or(EngineError::Incomplete("no task store was given"))?,
            backlog: Default::default(),
        };
        let (refs_tx, refs_rx) = watch::channel(Refs::default());
        let live = LiveFeed::new(LIVE_REPLAY_BATCHES, LIVE_REPLAY_POINTS);
        let stats = Arc::new(PollStats::default());
        let pollers = Arc::new(PollerDirectory::default());
        let args = SupervisorArgs {
            config: self.config.clone(),
            stores,
            env: Env {
                clock: self.clock,
                rng: self.rng,
                stats: stats.clone(),
                #[cfg(feature = "fault-injection")]
                panics: self.panics,
            },
            refs: refs_tx,
            live: live.clone(),
            hooks: self.hooks.clone(),
            pollers: pollers.clone(),
        };
        let spawned = match self.parent {
            Some(parent) => Actor::spawn_linked(None, Supervisor, args, parent).await,
            None => Actor::spawn(None, Supervisor, args).await,
        };
        let (supervisor, join) = spawned
            .map_err(|e| EngineError::NotRunning(format!("the engine failed to start: {e}")))?;
        Ok(EngineHandle {
            inner: Arc::new(Inner {
                supervisor,
                refs: refs_rx,
                live,
                hooks: self.hooks,
                pollers,
                stats,
                accepting: AtomicBool::new(true),
                join: std::sync::Mutex::new(Some(join)),
                ask_timeout: Duration::from_secs(30),
            }),
        })
    }
}

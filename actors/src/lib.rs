//! fleetpoll-actors: the supervised collection engine of fleetpoll.
//!
//! A tree of ractor actors polls every remote concurrently under a shared rate limiter,
//! with aligned timers, random start offsets, a per-connection delay, per-remote
//! backoff, manual triggers, background task polling and OTP-style restarts. The crate
//! has no network or disk code: remotes are reached through [`RemoteSource`] and the
//! stores through [`MetricStore`] and [`TaskStore`], so every timing rule can be tested
//! with fakes under a paused tokio clock.
//!
//! # Embedding
//!
//! Implement (or take from the `fleetpoll` crate) a [`RemoteSource`] per remote and the
//! two stores, describe the remotes in an [`EngineConfig`], and start the tree:
//!
//! ```no_run
//! # async fn run(
//! #     config: fleetpoll_actors::EngineConfig,
//! #     metrics: std::sync::Arc<dyn fleetpoll_actors::MetricStore>,
//! #     tasks: std::sync::Arc<dyn fleetpoll_actors::TaskStore>,
//! # ) -> Result<(), fleetpoll_actors::EngineError> {
//! use fleetpoll_actors::{Engine, Target};
//!
//! let engine = Engine::builder(config)
//!     .metric_store(metrics)
//!     .task_store(tasks)
//!     .start()
//!     .await?;
//! engine.trigger(Target::All, true).await?; // "collect now", waited for
//! for remote in engine.status().await? {
//!     println!("{} {:?}", remote.remote, remote.state);
//! }
//! engine.shutdown(std::time::Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
//!
//! The [`EngineHandle`] is the whole surface: triggers, task tracking, status, the
//! supervision tree, the live feed of stored batches ([`EngineHandle::subscribe`]),
//! reload as a diff, and bounded shutdown.
//!
//! # The tree
//!
//! ```text
//! Engine (handle)
//! └── Supervisor            rest_for_one, intensity, escalation     supervisor/top.rs
//!     ├── RateLimiter        global + per-remote caps, leases, lanes limiter/
//!     ├── Storage            single writer, two lanes, live feed     storage/writer.rs
//!     ├── Housekeeping       commit / journal apply / rotation       timers/housekeeping.rs
//!     ├── RemoteSupervisor   one_for_one over pollers, reload diff   supervisor/remote_supervisor.rs
//!     │   └── Poller × N     delay → lease → fetch → store, backoff  poller/
//!     ├── Scheduler          aligned ticks, offsets, task cadences   timers/scheduler.rs
//!     └── HookSupervisor     one_for_one over hook runners, feed     hooks/supervisor.rs
//!         └── HookRunner × N one hook, bounded queue, ticks          hooks/runner.rs
//! ```
//!
//! Each child gets the references of the siblings started before it in its start
//! arguments; rest_for_one keeps them valid across restarts.
//!
//! # Layout
//!
//! - `engine/`: [`Engine::builder`] and the [`EngineHandle`].
//! - `supervisor/`: the top supervisor, the remote supervisor and the OTP restart
//!   bookkeeping they share.
//! - `limiter/`: the RateLimiter and its leases.
//! - `poller/`: one remote's collection — actor, job pipeline with the per-connection
//!   delay, fetch task, outcome, backoff, status, counters.
//! - `storage/`: the Storage actor, the store seam and the live feed.
//! - `hooks/`: the [`Hook`] seam — stored batches with counter rates and status
//!   changes, handed to each hook from its own bounded queue by its own actor.
//! - `timers/`: the Scheduler and the Housekeeping cadences.
//! - `config`, `model`, `source`, `clock`: the config, the vocabulary, the remote seam,
//!   the time and randomness seam.
//! - `fault` (feature `fault-injection`): panics at random in pollers, hooks and
//!   exporters, for the panic-storm tests.
//! - `testing` (feature `test-util`): in-memory stores and an instrumented fake remote.

mod clock;
mod config;
mod engine;
mod env;
#[cfg(feature = "fault-injection")]
mod fault;
mod hooks;
mod limiter;
mod model;
mod poller;
mod source;
mod storage;
mod supervisor;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod timers;

pub use clock::{
    system_now, system_now_secs, Clock, Randomness, SeededRandomness, ThreadRandomness, TokioClock,
};
pub use config::{
    is_valid_remote_id, CollectionSettings, ConfigError, EngineConfig, LimitSettings, RemoteConfig,
    RemoteIdCheck, StorageSettings, SupervisionSettings, TaskSettings,
    EXPOSITION_MAX_INTERVAL_SECS, MAX_REMOTE_ID_LEN,
};
pub use engine::{Engine, EngineBuilder, EngineError, EngineHandle, TriggerReport};
#[cfg(feature = "fault-injection")]
pub use fault::{PanicRateError, PanicRates, PanicSite};
pub use hooks::{Hook, HookBatch, HookError, HookOptions, HookStatus, Sample, StatusChange};
pub use limiter::LimiterSnapshot;
pub use model::{
    Cursor, MetricBatch, MetricKind, MetricPoint, RemoteId, RemoteKind, Resource, SeriesKey,
    TaskBatch, TaskQuery, TaskRecord, TaskRef, TaskState, UnixTime,
};
pub use poller::{
    CollectError, CollectOutcome, CollectResult, PollState, PollStats, PollStatsSnapshot,
    RemoteStatus, Skipped, Target, DURATION_BUCKETS_SECS,
};
pub use source::{ErrorClass, RemoteSource, SourceError};
pub use storage::{
    MetricStore, MetricWrite, StorageStats, StoreError, StoredBatch, Subscription, TaskStore,
    TaskWrite,
};
pub use supervisor::{ReloadReport, ShutdownReport, TreeNode, TriggerResults};
pub use timers::SchedulerStats;

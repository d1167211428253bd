//! fleetpoll-actors: the supervised collection engine of fleetpoll.
//!
//! A tree of ractor actors polls every remote concurrently under a shared rate limiter,
//! with aligned timers, random offsets, per-connection jitter, per-remote backoff,
//! manual triggers, background task polling and OTP-style restarts. The crate has no
//! network or disk code: remotes and stores are reached through the traits in
//! [`source`] and [`store`], so every timing rule can be tested with fakes under a
//! paused tokio clock.
//!
//! ```text
//! Engine (handle)
//! └── Supervisor            rest_for_one, intensity, escalation        supervisor.rs
//!     ├── RateLimiter        global + per-remote caps, leases, lanes    limiter.rs
//!     ├── Storage            single writer, spawn_blocking, groups      storage.rs
//!     ├── RemoteSupervisor   one_for_one over pollers, reload diff      remotes.rs
//!     │   └── Poller × N     delay → lease → fetch → store, backoff     poller.rs
//!     ├── Scheduler          aligned ticks, offsets, task cadences      scheduler.rs
//!     └── Rotation           commit / journal / rotation cadences       rotation.rs
//! ```
//!
//! # Layout
//!
//! - [`engine`]: [`Engine::builder`] and the [`EngineHandle`] (the library's front door).
//! - [`supervisor`], [`remotes`], [`supervision`]: the tree and the OTP restart bookkeeping.
//! - [`limiter`]: the RateLimiter and its [`Lease`](limiter::Lease).
//! - [`poller`], [`poll`], [`backoff`], [`status`], [`stats`]: one remote's collection and
//!   what it reports.
//! - [`scheduler`], [`rotation`]: everything driven by time.
//! - [`storage`], [`live`]: the single writer in front of the store traits, and the feed
//!   of what it stored.
//! - [`model`], [`source`], [`store`], [`clock`], [`config`], [`mod@env`]: vocabulary and seams.
//! - [`testing`]: in-memory stores and an instrumented fake remote for tests and benchmarks.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod engine;
pub mod env;
pub mod limiter;
pub mod live;
pub mod model;
pub mod poll;
pub mod poller;
pub mod remotes;
pub mod rotation;
pub mod scheduler;
pub mod source;
pub mod stats;
pub mod status;
pub mod storage;
pub mod store;
pub mod supervision;
pub mod supervisor;
pub mod testing;

pub use clock::{
    system_now, system_now_secs, Clock, Randomness, SeededRandomness, ThreadRandomness, TokioClock,
};
pub use config::{ConfigError, EngineConfig, RemoteConfig};
pub use engine::{Engine, EngineBuilder, EngineError, EngineHandle, TriggerReport};
pub use model::{
    Cursor, MetricBatch, MetricKind, MetricPoint, RemoteId, RemoteKind, SeriesKey, TaskBatch,
    TaskQuery, TaskRecord, TaskRef, TaskState, UnixTime,
};
pub use poll::{CollectError, CollectOutcome, Skipped, Target};
pub use remotes::ReloadReport;
pub use source::{ErrorClass, RemoteSource, SourceError};
pub use status::{PollState, RemoteStatus};
pub use store::{MetricStore, MetricWrite, StoreError, TaskStore, TaskWrite};
pub use supervisor::ShutdownReport;

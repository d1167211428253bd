//! fleetpoll-actors: the supervised collection engine of fleetpoll.
//!
//! A tree of ractor actors polls every remote concurrently under a shared rate limiter,
//! with aligned timers, random offsets, per-connection jitter, per-remote backoff,
//! manual triggers, background task polling and OTP-style restarts. The crate has no
//! network or disk code: remotes and stores are reached through the traits in
//! [`source`] and [`store`], so every timing rule can be tested with fakes under a
//! paused tokio clock.
//!
//! # Layout
//!
//! - [`model`]: the vocabulary (remote ids, metric batches, tasks, task references).
//! - [`source`]: the [`RemoteSource`] seam and the classified [`SourceError`].
//! - [`store`]: the [`MetricStore`] / [`TaskStore`] seams.
//! - [`clock`]: the wall-clock and randomness seam.
//! - [`config`]: the engine's settings and their validation.

pub mod clock;
pub mod config;
pub mod model;
pub mod source;
pub mod store;

pub use clock::{Clock, Randomness, SeededRandomness, ThreadRandomness, TokioClock};
pub use config::{ConfigError, EngineConfig, RemoteConfig};
pub use model::{
    Cursor, MetricBatch, MetricKind, MetricPoint, RemoteId, RemoteKind, SeriesKey, TaskBatch,
    TaskQuery, TaskRecord, TaskRef, TaskState, UnixTime,
};
pub use source::{ErrorClass, RemoteSource, SourceError};
pub use store::{MetricStore, MetricWrite, StoreError, TaskStore, TaskWrite};

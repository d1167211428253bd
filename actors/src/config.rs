//! The engine's own configuration: which remotes, and every interval, cap and delay the
//! actors use. The `fleetpoll` crate maps its TOML file onto these types; defaults are
//! the reference manager's numbers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{RemoteId, RemoteKind};
use crate::source::RemoteSource;

/// One remote: its identity, its connection budget and the source that talks to it.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The remote's configured name.
    pub id: RemoteId,
    /// What kind of remote it is.
    pub kind: RemoteKind,
    /// The most connections this remote may hold at once (PVE up to 5, PBS 1).
    pub connection_cap: u32,
    /// A disabled remote keeps its poller idle and shows `disabled`.
    pub enabled: bool,
    /// A digest of everything else the remote's config says (addresses, credentials,
    /// TLS pins). A reload restarts the poller exactly when this or the fields above change.
    pub revision: u64,
    /// The client that talks to the remote.
    pub source: Arc<dyn RemoteSource>,
}

impl RemoteConfig {
    /// A remote with the kind's default connection cap, enabled, revision 0.
    pub fn new(id: impl Into<RemoteId>, kind: RemoteKind, source: Arc<dyn RemoteSource>) -> Self {
        Self {
            id: id.into(),
            kind,
            connection_cap: kind.default_connection_cap(),
            enabled: true,
            revision: 0,
            source,
        }
    }

    /// Whether a reload must restart this remote's poller to apply `other`.
    pub fn differs_from(&self, other: &RemoteConfig) -> bool {
        self.kind != other.kind
            || self.connection_cap != other.connection_cap
            || self.enabled != other.enabled
            || self.revision != other.revision
    }
}

/// When and how metrics are collected.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSettings {
    /// Collection interval; ticks are aligned to wall-clock multiples of it.
    pub interval: Duration,
    /// Each cycle starts this long after its aligned tick, drawn from `[min, max]`.
    pub start_offset_min: Duration,
    /// See `start_offset_min`.
    pub start_offset_max: Duration,
    /// Each poll waits a delay drawn from `[min, max]` before taking its lease.
    pub connection_delay_min: Duration,
    /// See `connection_delay_min`.
    pub connection_delay_max: Duration,
    /// A remote collected successfully within this window is skipped by a cycle.
    pub skip_recent: Duration,
    /// First retry delay ceiling after a failure (full jitter below it).
    pub backoff_base: Duration,
    /// The largest backoff delay.
    pub backoff_cap: Duration,
}

impl Default for CollectionSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            start_offset_min: Duration::ZERO,
            start_offset_max: Duration::from_secs(10),
            connection_delay_min: Duration::ZERO,
            connection_delay_max: Duration::from_secs(2),
            skip_recent: Duration::from_secs(10),
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(180),
        }
    }
}

/// Connection caps shared by every poll (metrics and tasks).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// The most connections all remotes together may hold.
    pub global_connections: u32,
    /// A lease not returned within this time is reclaimed (its holder is presumed stuck).
    pub lease_deadline: Duration,
    /// How long the head of the queue may be passed by smaller requests before the
    /// limiter holds capacity back for it.
    pub head_wait_limit: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            global_connections: 20,
            lease_deadline: Duration::from_secs(120),
            head_wait_limit: Duration::from_secs(5),
        }
    }
}

/// Background task-list polling.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSettings {
    /// The task scheduler's tick; tracked tasks are polled every tick.
    pub tick: Duration,
    /// How often remotes with running foreign tasks are asked about them.
    pub running_interval: Duration,
    /// How often every remote's task list is fetched.
    pub full_interval: Duration,
    /// How far back the first fetch of a node reaches.
    pub backfill: Duration,
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(10),
            running_interval: Duration::from_secs(30),
            full_interval: Duration::from_secs(600),
            backfill: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Restart policy of the supervisors.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisionSettings {
    /// A child restarted more than this many times within `period` is given up on.
    pub max_restarts: u32,
    /// See `max_restarts`.
    pub period: Duration,
    /// Delay before the first restart; doubles with each restart within the period.
    pub restart_delay_base: Duration,
    /// The largest restart delay.
    pub restart_delay_cap: Duration,
    /// How long a child may take to stop gracefully before it is killed.
    pub stop_timeout: Duration,
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            period: Duration::from_secs(30),
            restart_delay_base: Duration::from_millis(100),
            restart_delay_cap: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Cadences of the storage housekeeping (the Rotation actor).
#[derive(Debug, Clone, PartialEq)]
pub struct HousekeepingSettings {
    /// How often the metric journal is applied to the RRD files.
    pub metric_commit_interval: Duration,
    /// How often the task journal is folded into the active file.
    pub task_journal_interval: Duration,
    /// How often the task archive checks whether a UTC day has passed.
    pub rotation_check_interval: Duration,
}

impl Default for HousekeepingSettings {
    fn default() -> Self {
        Self {
            metric_commit_interval: Duration::from_secs(1800),
            task_journal_interval: Duration::from_secs(3600),
            rotation_check_interval: Duration::from_secs(3600),
        }
    }
}

/// Everything the engine needs to run.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// The remotes, in the order their pollers start.
    pub remotes: Vec<RemoteConfig>,
    /// Metric collection timing.
    pub collection: CollectionSettings,
    /// Connection caps.
    pub limits: LimitSettings,
    /// Task polling cadences.
    pub tasks: TaskSettings,
    /// Restart policy.
    pub supervision: SupervisionSettings,
    /// Storage housekeeping cadences.
    pub housekeeping: HousekeepingSettings,
}

/// A config the engine refuses, naming the key and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid engine config at `{key}`: {message}")]
pub struct ConfigError {
    /// The dotted key of the offending setting.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl EngineConfig {
    /// Checks the config as a whole; the engine starts or reloads only a valid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.collection;
        if c.interval.is_zero() {
            return Err(err(
                "collection.interval",
                "must be greater than zero seconds",
            ));
        }
        if c.start_offset_min > c.start_offset_max {
            return Err(err(
                "collection.start_offset_min",
                "must not exceed collection.start_offset_max",
            ));
        }
        if c.start_offset_max >= c.interval {
            return Err(err(
                "collection.start_offset_max",
                "must be shorter than the collection interval",
            ));
        }
        if c.connection_delay_min > c.connection_delay_max {
            return Err(err(
                "collection.connection_delay_min",
                "must not exceed collection.connection_delay_max",
            ));
        }
        if c.backoff_base.is_zero() || c.backoff_base > c.backoff_cap {
            return Err(err(
                "collection.backoff_base",
                "must be greater than zero and not exceed collection.backoff_cap",
            ));
        }
        if self.limits.global_connections == 0 {
            return Err(err(
                "limits.global_connections",
                "must be at least 1 connection",
            ));
        }
        if self.limits.lease_deadline.is_zero() {
            return Err(err("limits.lease_deadline", "must be greater than zero"));
        }
        let t = &self.tasks;
        if t.tick.is_zero() {
            return Err(err("tasks.tick", "must be greater than zero seconds"));
        }
        if t.running_interval < t.tick || t.full_interval < t.tick {
            return Err(err(
                "tasks.running_interval",
                "task intervals must not be shorter than tasks.tick",
            ));
        }
        let s = &self.supervision;
        if s.period.is_zero() {
            return Err(err("supervision.period", "must be greater than zero"));
        }
        if s.restart_delay_base > s.restart_delay_cap {
            return Err(err(
                "supervision.restart_delay_base",
                "must not exceed supervision.restart_delay_cap",
            ));
        }
        let h = &self.housekeeping;
        for (key, value) in [
            (
                "housekeeping.metric_commit_interval",
                h.metric_commit_interval,
            ),
            (
                "housekeeping.task_journal_interval",
                h.task_journal_interval,
            ),
            (
                "housekeeping.rotation_check_interval",
                h.rotation_check_interval,
            ),
        ] {
            if value.is_zero() {
                return Err(err(key, "must be greater than zero"));
            }
        }
        let mut seen = HashSet::new();
        for (i, r) in self.remotes.iter().enumerate() {
            if r.id.as_str().is_empty() {
                return Err(err(format!("remotes[{i}].id"), "must not be empty"));
            }
            if !seen.insert(r.id.clone()) {
                return Err(err(
                    format!("remotes[{i}].id"),
                    format!("remote id {:?} is used twice; ids must be unique", r.id),
                ));
            }
            if r.connection_cap == 0 {
                return Err(err(
                    format!("remotes[{i}].connection_cap"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

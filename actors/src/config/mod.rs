//! The engine's configuration: which remotes, and the file's sections the actors read
//! (`sections`, one serde type per section with one default per key). The `fleetpoll`
//! crate's config file embeds those sections as they are; validation here names the
//! file's own keys (`collection.interval_secs`, `remotes[2].id`).

mod sections;

use std::collections::HashSet;
use std::sync::Arc;

use crate::model::{RemoteId, RemoteKind};
use crate::source::RemoteSource;

pub use sections::{
    CollectionSettings, LimitSettings, StorageSettings, SupervisionSettings, TaskSettings,
};

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
    /// Storage paths and housekeeping cadences.
    pub storage: StorageSettings,
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
                "collection.interval_secs",
                "must be greater than zero seconds",
            ));
        }
        if c.start_offset_min > c.start_offset_max {
            return Err(err(
                "collection.start_offset_min_secs",
                "must not exceed collection.start_offset_max_secs",
            ));
        }
        if c.start_offset_max >= c.interval {
            return Err(err(
                "collection.start_offset_max_secs",
                "must be shorter than the collection interval",
            ));
        }
        if c.connection_delay_min > c.connection_delay_max {
            return Err(err(
                "collection.connection_delay_min_ms",
                "must not exceed collection.connection_delay_max_ms",
            ));
        }
        if c.backoff_base.is_zero() || c.backoff_base > c.backoff_cap {
            return Err(err(
                "collection.backoff_base_secs",
                "must be greater than zero and not exceed collection.backoff_cap_secs",
            ));
        }
        if self.limits.global_connections == 0 {
            return Err(err(
                "limits.global_connections",
                "must be at least 1 connection",
            ));
        }
        if self.limits.manual_reserve >= self.limits.global_connections {
            return Err(err(
                "limits.manual_reserve",
                "must be smaller than limits.global_connections, or scheduled polls never run",
            ));
        }
        if self.limits.lease_deadline.is_zero() {
            return Err(err(
                "limits.lease_deadline_secs",
                "must be greater than zero",
            ));
        }
        let t = &self.tasks;
        if t.tick.is_zero() {
            return Err(err("tasks.tick_secs", "must be greater than zero seconds"));
        }
        if t.running_interval < t.tick || t.full_interval < t.tick {
            return Err(err(
                "tasks.running_interval_secs",
                "task intervals must not be shorter than tasks.tick_secs",
            ));
        }
        let s = &self.supervision;
        if s.period.is_zero() {
            return Err(err("supervision.period_secs", "must be greater than zero"));
        }
        if s.restart_delay_base > s.restart_delay_cap {
            return Err(err(
                "supervision.restart_delay_base",
                "must not exceed supervision.restart_delay_cap",
            ));
        }
        let l = &self.limits;
        if l.request_timeout.is_zero() {
            return Err(err(
                "limits.request_timeout_secs",
                "must be at least 1 second",
            ));
        }
        if l.connect_timeout.is_zero() {
            return Err(err(
                "limits.connect_timeout_secs",
                "must be at least 1 second",
            ));
        }
        if l.max_body_mib == 0 {
            return Err(err("limits.max_body_mib", "must be at least 1 MiB"));
        }
        if self.storage.metric_commit_interval.is_zero() {
            return Err(err(
                "storage.metric_commit_interval_secs",
                "must be greater than zero",
            ));
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

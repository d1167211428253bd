//! The engine's configuration: which remotes, and the file's sections the actors read
//! (`sections`, one serde type per section with one default per key). The `fleetpoll`
//! crate's config file embeds those sections as they are; validation here names the
//! file's own keys (`collection.interval_secs`, `remotes[2].id`).

mod sections;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

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
    /// Whether anything uses the remote's metrics (a store, a rule, an exporter, a
    /// hook); when nothing does, they are not polled (tasks still are) and the remote
    /// shows `unused`.
    pub metrics_used: bool,
    /// A digest of everything else the remote's config says (addresses, credentials,
    /// TLS pins). A reload restarts the poller exactly when this or the fields above change.
    pub revision: u64,
    /// The remote's own metric interval; `None` follows `[collection] interval_secs`.
    /// The scheduler keeps one aligned timer per distinct interval.
    pub interval: Option<Duration>,
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
            metrics_used: true,
            revision: 0,
            interval: None,
            source,
        }
    }

    /// Whether a reload must restart this remote's poller to apply `other`.
    pub fn differs_from(&self, other: &RemoteConfig) -> bool {
        self.kind != other.kind
            || self.connection_cap != other.connection_cap
            || self.enabled != other.enabled
            || self.metrics_used != other.metrics_used
            || self.revision != other.revision
            || self.interval != other.interval
    }

    /// The interval this remote is collected at under `collection`.
    pub fn metric_interval(&self, collection: &CollectionSettings) -> Duration {
        self.interval.unwrap_or(collection.interval)
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

/// The longest remote id (ids name files and URL path segments).
pub const MAX_REMOTE_ID_LEN: usize = 64;

/// Whether `id` is 1 to [`MAX_REMOTE_ID_LEN`] characters of `[A-Za-z0-9._-]`, not `.` or
/// `..` (ids become file and directory names).
pub fn is_valid_remote_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REMOTE_ID_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The one check of remote ids, shared by [`EngineConfig::validate`] and the config
/// file's loader: each id must be valid ([`is_valid_remote_id`]) and unlike every id
/// checked before it. Errors name the key `remotes[<index>].id`.
#[derive(Debug, Default)]
pub struct RemoteIdCheck {
    seen: HashSet<String>,
}

impl RemoteIdCheck {
    /// Checks the id of `remotes[index]`, remembering it for the uniqueness of the next.
    pub fn check(&mut self, index: usize, id: &str) -> Result<(), ConfigError> {
        let key = format!("remotes[{index}].id");
        if !is_valid_remote_id(id) {
            let shown: String = id.chars().take(80).collect();
            return Err(err(
                key,
                format!(
                    "{shown:?} must be 1 to {MAX_REMOTE_ID_LEN} letters, digits, '-', '_' or '.'"
                ),
            ));
        }
        if !self.seen.insert(id.to_string()) {
            return Err(err(
                key,
                format!("remote id {id:?} is used twice; ids must be unique"),
            ));
        }
        Ok(())
    }
}

/// `value` must lie in `[lo, hi]` (in `unit`s), or the key is refused with its range.
fn within(key: &str, value: u64, lo: u64, hi: u64, unit: &str) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(err(
            key,
            format!("must be at least {lo} and at most {hi}{unit}, not {value}"),
        ))
    }
}

fn secs_within(key: &str, value: Duration, lo: u64, hi: u64) -> Result<(), ConfigError> {
    within(key, value.as_secs(), lo, hi, " seconds")
}

fn ms_within(key: &str, value: Duration, lo: u64, hi: u64) -> Result<(), ConfigError> {
    within(key, value.as_millis() as u64, lo, hi, " milliseconds")
}

/// One day, in seconds: the longest interval, timeout and backoff a key may set.
const DAY: u64 = 86_400;

impl EngineConfig {
    /// Checks the config as a whole; the engine starts or reloads only a valid one. Every
    /// duration and count has a range (listed in `docs/operations.md`, "Limits"), so no
    /// arithmetic on a config value can overflow; errors name the file's key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.collection;
        secs_within("collection.interval_secs", c.interval, 1, DAY)?;
        let interval = c.interval.as_secs();
        secs_within(
            "collection.start_offset_min_secs",
            c.start_offset_min,
            0,
            DAY,
        )?;
        secs_within(
            "collection.start_offset_max_secs",
            c.start_offset_max,
            0,
            DAY,
        )?;
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
        ms_within(
            "collection.connection_delay_min_ms",
            c.connection_delay_min,
            0,
            interval * 1000,
        )?;
        ms_within(
            "collection.connection_delay_max_ms",
            c.connection_delay_max,
            0,
            interval * 1000,
        )?;
        if c.connection_delay_min > c.connection_delay_max {
            return Err(err(
                "collection.connection_delay_min_ms",
                "must not exceed collection.connection_delay_max_ms",
            ));
        }
        secs_within("collection.skip_recent_secs", c.skip_recent, 0, interval)?;
        secs_within("collection.backoff_cap_secs", c.backoff_cap, 1, DAY)?;
        secs_within(
            "collection.backoff_base_secs",
            c.backoff_base,
            1,
            c.backoff_cap.as_secs(),
        )?;

        let l = &self.limits;
        within(
            "limits.global_connections",
            l.global_connections.into(),
            1,
            10_000,
            " connections",
        )?;
        if l.manual_reserve >= l.global_connections {
            return Err(err(
                "limits.manual_reserve",
                "must be smaller than limits.global_connections, or scheduled polls never run",
            ));
        }
        within(
            "limits.manual_burst",
            l.manual_burst.into(),
            0,
            1_000,
            " connections",
        )?;
        secs_within("limits.lease_deadline_secs", l.lease_deadline, 1, DAY)?;
        secs_within("limits.connect_timeout_secs", l.connect_timeout, 1, 600)?;
        secs_within("limits.request_timeout_secs", l.request_timeout, 1, 3600)?;
        within("limits.max_body_mib", l.max_body_mib, 1, 4096, " MiB")?;

        let t = &self.tasks;
        secs_within("tasks.tick_secs", t.tick, 1, DAY)?;
        let tick = t.tick.as_secs();
        secs_within(
            "tasks.running_interval_secs",
            t.running_interval,
            tick,
            7 * DAY,
        )?;
        secs_within("tasks.full_interval_secs", t.full_interval, tick, 7 * DAY)?;
        within("tasks.backfill_days", t.backfill_days, 0, 3650, " days")?;
        within(
            "tasks.max_tracked",
            t.max_tracked.into(),
            1,
            100_000,
            " tasks",
        )?;
        within(
            "tasks.max_tracked_per_remote",
            t.max_tracked_per_remote.into(),
            1,
            t.max_tracked.into(),
            " tasks",
        )?;

        let s = &self.supervision;
        within(
            "supervision.max_restarts",
            s.max_restarts.into(),
            0,
            10_000,
            "",
        )?;
        secs_within("supervision.period_secs", s.period, 1, DAY)?;
        secs_within("supervision.shutdown_grace_secs", s.shutdown_grace, 0, 3600)?;
        if s.restart_delay_base > s.restart_delay_cap {
            return Err(err(
                "supervision.restart_delay_base",
                "must not exceed supervision.restart_delay_cap",
            ));
        }
        secs_within(
            "storage.metric_commit_interval_secs",
            self.storage.metric_commit_interval,
            1,
            DAY,
        )?;
        secs_within(
            "storage.task_journal_interval_secs",
            self.storage.task_journal_interval,
            1,
            DAY,
        )?;

        let mut ids = RemoteIdCheck::default();
        for (i, r) in self.remotes.iter().enumerate() {
            ids.check(i, r.id.as_str())?;
            within(
                &format!("remotes[{i}].connection_cap"),
                r.connection_cap.into(),
                1,
                64,
                " connections",
            )?;
            if let Some(own) = r.interval {
                secs_within(&format!("remotes[{i}].interval_secs"), own, 1, DAY)?;
            }
            let interval = r.metric_interval(c);
            if r.kind == RemoteKind::Prometheus && interval.as_secs() > EXPOSITION_MAX_INTERVAL_SECS
            {
                return Err(err(
                    format!("remotes[{i}].interval_secs"),
                    format!(
                        "{} s is longer than the metric store's heartbeat of \
                         {EXPOSITION_MAX_INTERVAL_SECS} s: an exposition endpoint keeps no \
                         history, so every interval would be stored as unknown; use at most \
                         {EXPOSITION_MAX_INTERVAL_SECS}",
                        interval.as_secs()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The distinct metric intervals: the collection interval and every remote's own.
    /// The scheduler keeps one aligned timer per entry.
    pub fn metric_intervals(&self) -> std::collections::BTreeSet<Duration> {
        std::iter::once(self.collection.interval)
            .chain(self.remotes.iter().filter_map(|r| r.interval))
            .collect()
    }
}

/// The longest interval of a remote without history (a Prometheus exposition endpoint):
/// the metric store's heartbeat, past which an interval is stored as unknown.
pub const EXPOSITION_MAX_INTERVAL_SECS: u64 = 120;

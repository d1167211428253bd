//! The sections of the configuration file that the engine reads, one serde type each:
//! `[collection]`, `[limits]`, `[tasks]`, `[supervision]` and `[storage]`. Each key has
//! its unit in its name and exactly one default, written here (the reference manager's
//! numbers); a field's doc comment is the user documentation of its key
//! (`docs/configuration.md` repeats them, and a test holds the two together). Tuning
//! values that are not keys of the file are named constants, skipped by serde.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::{serde_as, DurationMilliSeconds, DurationSeconds};

/// How long a large request at the head of the limiter's queue may be passed by smaller
/// ones before capacity is held back for it.
pub(crate) const HEAD_WAIT_LIMIT: Duration = Duration::from_secs(5);
/// Delay before a crashed actor's first restart; doubles with each restart in the period.
pub(crate) const RESTART_DELAY_BASE: Duration = Duration::from_millis(100);
/// The largest restart delay.
pub(crate) const RESTART_DELAY_CAP: Duration = Duration::from_secs(5);
/// How long a child may take to stop gracefully before it is killed.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the task journal is folded into the active file.
pub(crate) const TASK_JOURNAL_INTERVAL: Duration = Duration::from_secs(3600);
/// How often the task archive checks whether a UTC day has passed (on the hour, so the
/// daily rotation happens within an hour after midnight).
pub(crate) const ROTATION_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `[collection]`: when and how metrics are collected.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectionSettings {
    /// Metric collection interval; cycles start on wall-clock multiples of it (missed
    /// ticks are skipped).
    #[serde(rename = "interval_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub interval: Duration,
    /// Each cycle starts a random delay after its aligned tick, drawn from [min, max].
    #[serde(rename = "start_offset_min_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub start_offset_min: Duration,
    /// See `start_offset_min_secs`; must be shorter than the interval.
    #[serde(rename = "start_offset_max_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub start_offset_max: Duration,
    /// Each poll of a cycle waits a random delay drawn from [min, max] before it takes
    /// its connection (the per-connection delay).
    #[serde(rename = "connection_delay_min_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub connection_delay_min: Duration,
    /// See `connection_delay_min_ms`.
    #[serde(rename = "connection_delay_max_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub connection_delay_max: Duration,
    /// A remote collected successfully this recently is skipped by a cycle.
    #[serde(rename = "skip_recent_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub skip_recent: Duration,
    /// After a failure the retry comes within this; the ceiling doubles per consecutive
    /// failure (full jitter).
    #[serde(rename = "backoff_base_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub backoff_base: Duration,
    /// The largest retry delay; credential or TLS failures go straight to it.
    #[serde(rename = "backoff_cap_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub backoff_cap: Duration,
}

impl CollectionSettings {
    /// The settings a remote with its own `interval` is collected under: the start
    /// offsets scaled down by `interval / interval_secs` when it is shorter (so they stay
    /// below it), and the skip window at most half of it. The same as `self` when the
    /// interval is the collection interval.
    pub fn for_interval(&self, interval: Duration) -> CollectionSettings {
        if interval == self.interval {
            return self.clone();
        }
        let scale = |d: Duration| {
            if interval < self.interval {
                d.mul_f64(interval.as_secs_f64() / self.interval.as_secs_f64())
            } else {
                d
            }
        };
        CollectionSettings {
            interval,
            start_offset_min: scale(self.start_offset_min),
            start_offset_max: scale(self.start_offset_max),
            skip_recent: self.skip_recent.min(interval / 2),
            ..self.clone()
        }
    }
}

impl Default for CollectionSettings {
    fn default() -> Self {
        Self {
            interval: secs(600),
            start_offset_min: Duration::ZERO,
            start_offset_max: secs(10),
            connection_delay_min: Duration::ZERO,
            connection_delay_max: Duration::from_millis(2000),
            skip_recent: secs(10),
            backoff_base: secs(10),
            backoff_cap: secs(180),
        }
    }
}

/// `[limits]`: connection caps and request limits.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// The most connections all remotes together hold.
    pub global_connections: u32,
    /// Connections only manual triggers ("collect now") may use; scheduled cycles run on
    /// the rest.
    pub manual_reserve: u32,
    /// Connections manual triggers may open beyond `global_connections`, so that
    /// "collect now" never waits for a scheduled poll to finish. Scheduled polls are
    /// bounded by `global_connections`; all together never exceed
    /// `global_connections + manual_burst`.
    pub manual_burst: u32,
    /// A connection lease not returned within this is reclaimed.
    #[serde(rename = "lease_deadline_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub lease_deadline: Duration,
    /// How long to wait for a TCP connection to a node before trying the next one.
    #[serde(rename = "connect_timeout_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub connect_timeout: Duration,
    /// How long one request may take, from connecting to the last byte.
    #[serde(rename = "request_timeout_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub request_timeout: Duration,
    /// Replies larger than this many MiB are refused while they stream in.
    pub max_body_mib: u64,
    /// Not a file key: `HEAD_WAIT_LIMIT` (tests shorten it).
    #[serde(skip)]
    pub head_wait_limit: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            global_connections: 20,
            manual_reserve: 0,
            manual_burst: 2,
            lease_deadline: secs(120),
            connect_timeout: secs(10),
            request_timeout: secs(60),
            max_body_mib: 64,
            head_wait_limit: HEAD_WAIT_LIMIT,
        }
    }
}

/// `[tasks]`: background task-list polling.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSettings {
    /// The task tick; tasks the manager tracks are polled every tick.
    #[serde(rename = "tick_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub tick: Duration,
    /// Remotes with running foreign tasks are asked about them this often.
    #[serde(rename = "running_interval_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub running_interval: Duration,
    /// Every remote's task list is fetched this often.
    #[serde(rename = "full_interval_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub full_interval: Duration,
    /// How many days back the first fetch of a node reaches.
    pub backfill_days: u64,
    /// The most tasks the manager may track at once (more are refused).
    pub max_tracked: u32,
    /// The most tracked tasks of one remote.
    pub max_tracked_per_remote: u32,
}

impl TaskSettings {
    /// How far back the first fetch of a node reaches.
    pub fn backfill(&self) -> Duration {
        secs(self.backfill_days.saturating_mul(86_400))
    }
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            tick: secs(10),
            running_interval: secs(30),
            full_interval: secs(600),
            backfill_days: 7,
            max_tracked: 1000,
            max_tracked_per_remote: 100,
        }
    }
}

/// `[supervision]`: the restart policy of the supervision tree.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionSettings {
    /// An actor restarted more often than this within `period_secs` is given up (a
    /// poller: its remote shows `failed`; a core actor: the engine stops).
    pub max_restarts: u32,
    /// The window of `max_restarts`.
    #[serde(rename = "period_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub period: Duration,
    /// How long in-flight polls may finish on shutdown (SIGTERM).
    #[serde(rename = "shutdown_grace_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub shutdown_grace: Duration,
    /// Not a file key: `RESTART_DELAY_BASE`.
    #[serde(skip)]
    pub restart_delay_base: Duration,
    /// Not a file key: `RESTART_DELAY_CAP`.
    #[serde(skip)]
    pub restart_delay_cap: Duration,
    /// Not a file key: `STOP_TIMEOUT`.
    #[serde(skip)]
    pub stop_timeout: Duration,
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            period: secs(30),
            shutdown_grace: secs(10),
            restart_delay_base: RESTART_DELAY_BASE,
            restart_delay_cap: RESTART_DELAY_CAP,
            stop_timeout: STOP_TIMEOUT,
        }
    }
}

/// `[storage]`: where data lives and how often it is committed. The engine itself uses
/// only the cadences (the Housekeeping actor); the stores are given to it built.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Metric files (RRD) and their journal.
    pub state_dir: PathBuf,
    /// The task cache.
    pub cache_dir: PathBuf,
    /// Keep metrics in the local RRD files; `false`: stored batches go to the hooks
    /// (rules, exporters) only, and the history endpoints have no data.
    pub rrd: bool,
    /// How often the metric journal is applied to the files.
    #[serde(rename = "metric_commit_interval_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub metric_commit_interval: Duration,
    /// How often the task journal is folded into the active archive file
    /// (`TASK_JOURNAL_INTERVAL` by default).
    #[serde(rename = "task_journal_interval_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub task_journal_interval: Duration,
    /// Not a file key: `ROTATION_CHECK_INTERVAL`.
    #[serde(skip)]
    pub rotation_check_interval: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/fleetpoll"),
            cache_dir: PathBuf::from("/var/cache/fleetpoll"),
            rrd: true,
            metric_commit_interval: secs(1800),
            task_journal_interval: TASK_JOURNAL_INTERVAL,
            rotation_check_interval: ROTATION_CHECK_INTERVAL,
        }
    }
}

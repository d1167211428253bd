//! The configuration file's schema: serde structs with units in key names, named
//! defaults (the reference manager's numbers) and unknown keys rejected. Every field's
//! doc comment is the user documentation of its key (see `docs/configuration.md`).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// When and how metrics are collected.
    #[serde(default)]
    pub collection: CollectionConfig,
    /// Connection caps and request limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Background task polling.
    #[serde(default)]
    pub tasks: TasksConfig,
    /// Restart policy of the supervision tree.
    #[serde(default)]
    pub supervision: SupervisionConfig,
    /// Where data lives and how often it is committed.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The remotes to watch.
    #[serde(default)]
    pub remotes: Vec<RemoteEntry>,
}

fn d_interval() -> u64 {
    600
}
fn d_offset_max() -> u64 {
    10
}
fn d_delay_max() -> u64 {
    2000
}
fn d_skip_recent() -> u64 {
    10
}
fn d_backoff_base() -> u64 {
    10
}
fn d_backoff_cap() -> u64 {
    180
}

/// `[collection]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Metric collection interval; cycles start on wall-clock multiples of it.
    #[serde(default = "d_interval")]
    pub interval_secs: u64,
    /// Smallest random delay of a cycle's start after its aligned tick.
    #[serde(default)]
    pub start_offset_min_secs: u64,
    /// Largest random delay of a cycle's start (must be below the interval).
    #[serde(default = "d_offset_max")]
    pub start_offset_max_secs: u64,
    /// Smallest random delay of each poll before it takes its connection.
    #[serde(default)]
    pub connection_delay_min_ms: u64,
    /// Largest random delay of each poll before it takes its connection.
    #[serde(default = "d_delay_max")]
    pub connection_delay_max_ms: u64,
    /// A remote collected within this many seconds is skipped by a cycle.
    #[serde(default = "d_skip_recent")]
    pub skip_recent_secs: u64,
    /// Retry delay ceiling after the first failure; doubles per failure (full jitter).
    #[serde(default = "d_backoff_base")]
    pub backoff_base_secs: u64,
    /// The largest retry delay.
    #[serde(default = "d_backoff_cap")]
    pub backoff_cap_secs: u64,
}

impl Default for CollectionConfig {
    fn default() -> Self {
        Self {
            interval_secs: d_interval(),
            start_offset_min_secs: 0,
            start_offset_max_secs: d_offset_max(),
            connection_delay_min_ms: 0,
            connection_delay_max_ms: d_delay_max(),
            skip_recent_secs: d_skip_recent(),
            backoff_base_secs: d_backoff_base(),
            backoff_cap_secs: d_backoff_cap(),
        }
    }
}

fn d_global() -> u32 {
    20
}
fn d_lease_deadline() -> u64 {
    120
}
fn d_connect_timeout() -> u64 {
    10
}
fn d_request_timeout() -> u64 {
    60
}
fn d_max_body() -> u64 {
    64
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The most connections all remotes together may hold.
    #[serde(default = "d_global")]
    pub global_connections: u32,
    /// Connections only manual triggers may use ("collect now" never waits for a cycle).
    #[serde(default)]
    pub manual_reserve: u32,
    /// A connection lease not returned within this time is reclaimed.
    #[serde(default = "d_lease_deadline")]
    pub lease_deadline_secs: u64,
    /// How long to wait for a TCP connection to a node before trying the next one.
    #[serde(default = "d_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// How long one request may take, from connecting to the last byte.
    #[serde(default = "d_request_timeout")]
    pub request_timeout_secs: u64,
    /// Replies larger than this are refused while they stream in.
    #[serde(default = "d_max_body")]
    pub max_body_mib: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            global_connections: d_global(),
            manual_reserve: 0,
            lease_deadline_secs: d_lease_deadline(),
            connect_timeout_secs: d_connect_timeout(),
            request_timeout_secs: d_request_timeout(),
            max_body_mib: d_max_body(),
        }
    }
}

fn d_tick() -> u64 {
    10
}
fn d_running() -> u64 {
    30
}
fn d_full() -> u64 {
    600
}
fn d_backfill() -> u64 {
    7
}

/// `[tasks]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TasksConfig {
    /// The task tick; tracked tasks are polled every tick.
    #[serde(default = "d_tick")]
    pub tick_secs: u64,
    /// How often remotes with running foreign tasks are asked about them.
    #[serde(default = "d_running")]
    pub running_interval_secs: u64,
    /// How often every remote's task list is fetched.
    #[serde(default = "d_full")]
    pub full_interval_secs: u64,
    /// How far back the first fetch of a node reaches.
    #[serde(default = "d_backfill")]
    pub backfill_days: u64,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            tick_secs: d_tick(),
            running_interval_secs: d_running(),
            full_interval_secs: d_full(),
            backfill_days: d_backfill(),
        }
    }
}

fn d_max_restarts() -> u32 {
    5
}
fn d_period() -> u64 {
    30
}
fn d_grace() -> u64 {
    10
}

/// `[supervision]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    /// An actor restarted more than this often within `period_secs` is given up on.
    #[serde(default = "d_max_restarts")]
    pub max_restarts: u32,
    /// The window of `max_restarts`.
    #[serde(default = "d_period")]
    pub period_secs: u64,
    /// How long in-flight polls may finish on shutdown.
    #[serde(default = "d_grace")]
    pub shutdown_grace_secs: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            max_restarts: d_max_restarts(),
            period_secs: d_period(),
            shutdown_grace_secs: d_grace(),
        }
    }
}

fn d_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/fleetpoll")
}
fn d_cache_dir() -> PathBuf {
    PathBuf::from("/var/cache/fleetpoll")
}
fn d_commit() -> u64 {
    1800
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Metric files (RRD) and their journal.
    #[serde(default = "d_state_dir")]
    pub state_dir: PathBuf,
    /// The task cache.
    #[serde(default = "d_cache_dir")]
    pub cache_dir: PathBuf,
    /// How often the metric journal is applied to the RRD files.
    #[serde(default = "d_commit")]
    pub metric_commit_interval_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            state_dir: d_state_dir(),
            cache_dir: d_cache_dir(),
            metric_commit_interval_secs: d_commit(),
        }
    }
}

fn d_listen() -> String {
    "127.0.0.1:8450".into()
}

/// `[api]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the HTTP API listens on.
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Bearer token required by mutating endpoints, inline (prefer `token_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// File holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: d_listen(),
            token: None,
            token_file: None,
            token_env: None,
        }
    }
}

fn d_filter() -> String {
    "info".into()
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `RUST_LOG`-style filter (the environment variable wins when set).
    #[serde(default = "d_filter")]
    pub filter: String,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: d_filter(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn d_true() -> bool {
    true
}

/// One `[[remotes]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteEntry {
    /// The remote's name (letters, digits, `-`, `_`, `.`); unique.
    pub id: String,
    /// `pve` or `pbs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The remote's nodes, tried in order.
    pub nodes: Vec<NodeEntry>,
    /// API token id: `user@realm!tokenid`.
    pub auth_id: String,
    /// The token secret, inline (prefer `token_file` or `token_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// File holding the token secret (should be mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The most connections this remote may hold (default PVE 5, PBS 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_cap: Option<u32>,
    /// A disabled remote is not polled; its data stays.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Put before `/api2/json` in every path (for remotes behind a reverse proxy).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
}

/// One node of a remote.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// `host[:port]` (default port PVE 8006, PBS 8007).
    pub address: String,
    /// SHA-256 fingerprint of the node's certificate (`AA:BB:…`), required unless the
    /// certificate validates against the system's trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A secret string: never printed, never serialized in the clear by `Debug`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

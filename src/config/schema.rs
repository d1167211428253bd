//! The configuration file's schema: the engine's sections as the actors crate defines
//! them, and the daemon's own (`[cluster]`, `[api]`, `[log]`, `[rules]`, `[[remotes]]`,
//! `[[exporters]]`): serde structs with
//! units in key names, one default per key and unknown keys rejected. Every field's doc
//! comment is the user documentation of its key (see `docs/configuration.md`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use fleetpoll_actors::{
    CollectionSettings, LimitSettings, StorageSettings, SupervisionSettings, TaskSettings,
};
use serde::{Deserialize, Serialize};
use serde_with::{serde_as, DurationSeconds};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// When and how metrics are collected.
    #[serde(default)]
    pub collection: CollectionSettings,
    /// Connection caps and request limits.
    #[serde(default)]
    pub limits: LimitSettings,
    /// Background task polling.
    #[serde(default)]
    pub tasks: TaskSettings,
    /// Restart policy of the supervision tree.
    #[serde(default)]
    pub supervision: SupervisionSettings,
    /// Where data lives and how often it is committed.
    #[serde(default)]
    pub storage: StorageSettings,
    /// This instance's share of the remotes, when several instances split them.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Local evaluation: the rules file.
    #[serde(default)]
    pub rules: RulesConfig,
    /// The built-in source of the local host.
    #[serde(default)]
    pub local: LocalConfig,
    /// The remotes' resource lists (names, status, use).
    #[serde(default)]
    pub inventory: InventoryConfig,
    /// The remotes to watch.
    #[serde(default)]
    pub remotes: Vec<RemoteEntry>,
    /// Where stored samples are also sent (Graphite, InfluxDB, statsd, remote write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exporters: Vec<ExporterEntry>,
}

/// `[rules]`: local evaluation (see `docs/rules.md`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// The rules file, relative to the config file's directory; none: no rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// `[local]`: the host fleetpoll runs on, as the remote `local` (see `docs/sources.md`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Collect the local host (`fleetpoll demo` turns it on).
    pub enabled: bool,
    /// Its metric interval, at most 120 (the metric store's heartbeat).
    pub interval_secs: u64,
    /// A reading is served to collections and `GET /api/v1/local` for this long.
    pub cache_ttl_secs: u64,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_secs: 10,
            cache_ttl_secs: 5,
        }
    }
}

/// `[inventory]`: the resource lists of the PVE and PBS remotes (see `docs/api.md`,
/// `GET /api/v1/resources`).
#[serde_as]
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// How often every remote's resource list is fetched again (a manual collect also
    /// fetches it); 10 to 86400 seconds.
    #[serde(rename = "resources_interval_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub resources_interval: Duration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            resources_interval: Duration::from_secs(d_resources_interval_secs()),
        }
    }
}

/// The reference manager fetches its resource lists about every 15 minutes.
fn d_resources_interval_secs() -> u64 {
    900
}

/// The shortest and longest `resources_interval_secs`.
pub const RESOURCES_INTERVAL_RANGE_SECS: (u64, u64) = (10, 86_400);

/// `[cluster]`: which share of the remotes this instance polls. Only a restart applies
/// a change.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This instance's name, in the API and in exported series (unset: the host name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The shard this instance polls, below `shard_count` (`--shard-index` and
    /// `FLEETPOLL_SHARD_INDEX` win over it).
    pub shard_index: u32,
    /// How many instances share the remotes (1: this one polls them all).
    pub shard_count: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instance: None,
            shard_index: 0,
            shard_count: 1,
        }
    }
}

/// `[api]`
#[serde_as]
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Bearer token required by mutating endpoints, inline (prefer `token_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// File holding the bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The most rows per metric of one history answer (a longer window is a 400).
    pub max_rows: u64,
    /// The most live streams (`/api/v1/live`) open at once (more are a 503).
    pub max_streams: u32,
    /// The most API connections open at once (more wait; fewer when descriptors are short).
    pub max_connections: u32,
    /// A request's head must arrive within this after connecting or the previous answer.
    #[serde(rename = "header_timeout_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub header_timeout: Duration,
    /// A connection moving no byte this long while no request is in hand is closed.
    #[serde(rename = "idle_timeout_secs")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub idle_timeout: Duration,
}

impl ApiConfig {
    /// The bounds, which (like `listen`) only a restart applies.
    pub fn restart_only(&self) -> (u64, u32, u32, Duration, Duration) {
        (
            self.max_rows,
            self.max_streams,
            self.max_connections,
            self.header_timeout,
            self.idle_timeout,
        )
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8450".into(),
            token: None,
            token_file: None,
            token_env: None,
            max_rows: 20_000,
            max_streams: 64,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
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
    /// `pve`, `pbs` or `prometheus`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The remote's nodes, tried in order (pve, pbs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeEntry>,
    /// API token id: `user@realm!tokenid` (pve, pbs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_id: String,
    /// The exposition target's URL, `http://host:port/metrics` or `https://…` (prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// SHA-256 fingerprint of an https target's certificate (`AA:BB:…`), required unless
    /// it validates against the system's trust store (prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The remote's own metric interval (prometheus default 30, at most 120; others
    /// default to `[collection] interval_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
    /// A scrape must be complete within this (prometheus; default the lesser of 10 s
    /// and the interval; at most the interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timeout_secs: Option<u64>,
    /// A scrape with more series fails (prometheus; default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_limit: Option<u32>,
    /// The token secret, inline (prefer `token_file` or `token_env`); for prometheus the
    /// optional bearer token.
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

impl RemoteEntry {
    /// An enabled remote with nothing but its id and type set.
    pub fn new(id: &str, kind: &str) -> RemoteEntry {
        RemoteEntry {
            id: id.to_string(),
            kind: kind.to_string(),
            nodes: Vec::new(),
            auth_id: String::new(),
            url: None,
            fingerprint: None,
            interval_secs: None,
            scrape_timeout_secs: None,
            series_limit: None,
            token: None,
            token_file: None,
            token_env: None,
            connection_cap: None,
            enabled: true,
            path_prefix: String::new(),
        }
    }

    /// A `type = "prometheus"` remote scraping `url`.
    pub fn prometheus(id: &str, url: &str) -> RemoteEntry {
        RemoteEntry {
            url: Some(url.to_string()),
            ..RemoteEntry::new(id, "prometheus")
        }
    }
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

fn d_prefix() -> String {
    "fleetpoll".into()
}
fn d_batch_max_points() -> usize {
    10_000
}
fn d_flush_interval_ms() -> u64 {
    1_000
}
fn d_queue_max_points() -> usize {
    500_000
}
fn d_timeout_secs() -> u64 {
    10
}

/// One `[[exporters]]` entry: where every stored sample (of the selected remotes and
/// metrics) is also sent. See `docs/export.md` for the names each kind writes.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExporterEntry {
    /// The exporter's name (letters, digits, `-`, `_`, `.`); unique.
    pub name: String,
    /// `graphite`, `influxdb`, `statsd` or `prometheus-remote-write`.
    pub kind: String,
    /// `host:port` of a Graphite, statsd or InfluxDB-over-UDP receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `tcp` or `udp` where the protocol has both (Graphite: default `tcp`; InfluxDB: `udp`
    /// with `address`, else HTTP with `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The full write URL of an HTTP kind (a secret: it may carry credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// File holding a bearer token (InfluxDB v2: `Authorization: Token …`; remote write:
    /// `Authorization: Bearer …`); mode 0600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding that token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// User of HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the basic-authentication password; mode 0600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Extra HTTP headers (e.g. Mimir's `X-Scope-OrgID`); values are secrets.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, Secret>,
    /// PEM file of the CA certificates an HTTPS receiver is checked against (default: the
    /// system's trust store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint (`AA:BB:…`) of an HTTPS receiver's certificate, accepted when
    /// the chain does not validate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// First component of every exported name.
    #[serde(default = "d_prefix")]
    pub prefix: String,
    /// Globs of the remote ids exported (empty: every remote).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<String>,
    /// Globs of the metric names exported (empty: every metric).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    /// Counters and derives are sent raw instead of as per-second rates.
    #[serde(default)]
    pub raw_counters: bool,
    /// A send carries at most this many points.
    #[serde(default = "d_batch_max_points")]
    pub batch_max_points: usize,
    /// Buffered points are sent at least this often.
    #[serde(default = "d_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// The most points waiting for the receiver; beyond it the oldest are dropped and
    /// counted.
    #[serde(default = "d_queue_max_points")]
    pub queue_max_points: usize,
    /// One send (connect, write, reply) must finish within this.
    #[serde(default = "d_timeout_secs")]
    pub timeout_secs: u64,
}

impl fmt::Debug for ExporterEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL and the header values are secrets; their names are not.
        f.debug_struct("ExporterEntry")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("transport", &self.transport)
            .field("url", &self.url)
            .field("token_file", &self.token_file)
            .field("token_env", &self.token_env)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("ca_file", &self.ca_file)
            .field("fingerprint", &self.fingerprint)
            .field("prefix", &self.prefix)
            .field("remotes", &self.remotes)
            .field("metrics", &self.metrics)
            .field("raw_counters", &self.raw_counters)
            .field("batch_max_points", &self.batch_max_points)
            .field("flush_interval_ms", &self.flush_interval_ms)
            .field("queue_max_points", &self.queue_max_points)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
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

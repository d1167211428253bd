//! The configuration file: loading (TOML, unknown keys rejected), validation that names
//! the file, the key and what is expected, and building the engine's config with one
//! client per remote (only for the remotes this instance's shard owns). A config that
//! fails anywhere here is rejected whole. Command-line overrides (`overrides`) are
//! written into the parsed file before it is checked.

mod exporters;
mod overrides;
mod schema;
mod sources;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::{Clock, EngineConfig, RemoteConfig, RemoteIdCheck, RemoteKind};

use crate::cluster::{self, OtherShardRemote, Shard};
use crate::remote::{
    ApiToken, ClientOptions, ClientPools, Fingerprint, NodeAddress, RemoteEndpoint,
};

pub use overrides::Overrides;
pub use schema::{
    ApiConfig, ClusterConfig, Config, ExporterEntry, InventoryConfig, LocalConfig, LogConfig,
    LogFormat, NodeEntry, RemoteEntry, RulesConfig, Secret, RESOURCES_INTERVAL_RANGE_SECS,
};
use sources::{check_local, exposition_remote};
pub use sources::{EXPOSITION_DEFAULT_INTERVAL_SECS, EXPOSITION_DEFAULT_TIMEOUT_SECS};

/// A config file that cannot be used: which file, which key, what is wrong and expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: `{key}`: {message}", file = file.display())]
pub struct ConfigFileError {
    /// The config file.
    pub file: PathBuf,
    /// The dotted key (`remotes[2].token_file`), or `(file)` for the file as a whole.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Everything `run` needs, resolved from a valid file (secrets read, clients built).
#[derive(Debug)]
pub struct Resolved {
    /// The parsed file.
    pub config: Config,
    /// The engine's config, one client per remote this instance polls.
    pub engine: EngineConfig,
    /// This instance's shard.
    pub shard: Shard,
    /// The configured remotes that other shards poll, sorted by id.
    pub other_shards: Vec<OtherShardRemote>,
    /// Where the API listens.
    pub api_listen: SocketAddr,
    /// The API's bearer token, if any.
    pub api_token: Option<Secret>,
    /// The rules file, compiled (empty when `[rules] file` is not set).
    pub rules: crate::rules::RuleSet,
    /// The exporters, in config order.
    pub exporters: Vec<crate::export::ExporterSpec>,
    /// The local host source, when `[local] enabled` (also among the engine's remotes).
    pub local: Option<Arc<crate::local::LocalSource>>,
    /// How many idle connections this config's clients keep together: twice the
    /// connections that may be open at once.
    pub idle_connections: usize,
}

/// Reads and parses `path`; syntax errors and unknown keys name the key.
pub fn load(path: &Path) -> Result<Config, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
        file: path.to_path_buf(),
        key: "(file)".into(),
        message: format!("cannot read the config file: {e}"),
    })?;
    parse(path, &text)
}

/// Parses config text read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigFileError> {
    toml::from_str::<Config>(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, key) = key_at(text, offset);
        ConfigFileError {
            file: path.to_path_buf(),
            key,
            message: format!("{} (line {line})", e.message().trim()),
        }
    })
}

/// The dotted key at a byte offset of a TOML text, from the nearest table header and
/// the key on that line; `[[remotes]]` headers are counted into an index.
pub(crate) fn key_at(text: &str, offset: usize) -> (usize, String) {
    let line_no = text[..offset.min(text.len())].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    // The table headers up to and including the error's own line (an unknown table is
    // reported as itself, not as a key of the table before it).
    let line_end = text[offset.min(text.len())..]
        .find('\n')
        .map_or(text.len(), |n| offset + n);
    let before = &text[..line_end];
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for l in before.lines() {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = counts.entry(name.trim().to_string()).or_default();
            table = format!("{}[{}]", name.trim(), *n);
            *n += 1;
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.trim().to_string();
        }
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.starts_with('['))
        .unwrap_or_default();
    let full = match (table.is_empty(), key.is_empty()) {
        (true, true) => "(file)".to_string(),
        (true, false) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    };
    (line_no, full)
}

fn err(file: &Path, key: impl Into<String>, message: impl Into<String>) -> ConfigFileError {
    ConfigFileError {
        file: file.to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

/// Reads a secret from exactly one of inline / file / environment. A secret must be
/// non-empty visible ASCII (it travels in an HTTP header); a file must not be readable
/// by every user (group-readable is fine, as systemd set-ups use it).
fn read_secret(
    file: &Path,
    key: &str,
    inline: &Option<Secret>,
    path: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<Option<Secret>, ConfigFileError> {
    let given = [inline.is_some(), path.is_some(), env.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if given > 1 {
        return Err(err(
            file,
            key.to_string(),
            format!("set only one of `{key}`, `{key}_file` and `{key}_env`"),
        ));
    }
    let (source_key, where_, value) = if let Some(s) = inline {
        (key.to_string(), "the inline value".to_string(), s.0.clone())
    } else if let Some(p) = path {
        let key = format!("{key}_file");
        let text = std::fs::read_to_string(p)
            .map_err(|e| err(file, &key, format!("cannot read {}: {e}", p.display())))?;
        refuse_world_readable(file, &key, p)?;
        (key, p.display().to_string(), text)
    } else if let Some(var) = env {
        let key = format!("{key}_env");
        let value = std::env::var(var)
            .map_err(|_| err(file, &key, format!("environment variable {var} is not set")))?;
        (key, format!("environment variable {var}"), value)
    } else {
        return Ok(None);
    };
    let secret = value.trim();
    if secret.is_empty() {
        return Err(err(
            file,
            source_key,
            format!("{where_} is empty; it must hold the secret"),
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            file,
            source_key,
            format!(
                "{where_} holds a space or a control or non-ASCII character; \
                 a secret is visible ASCII only"
            ),
        ));
    }
    Ok(Some(Secret(secret.to_string())))
}

/// Refuses a secret file that every user of the machine can read.
fn refuse_world_readable(file: &Path, key: &str, path: &Path) -> Result<(), ConfigFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| err(file, key, format!("cannot stat {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        return Err(err(
            file,
            key,
            format!(
                "{} is readable by every user (mode {:03o}); run chmod 600 (or 640 for a \
                 group) on it",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

/// The `[api]` bounds must lie in their ranges (`docs/operations.md`, "Limits").
fn check_api_bounds(file: &Path, api: &ApiConfig) -> Result<(), ConfigFileError> {
    let checks: [(&str, u64, u64, u64, &str); 5] = [
        ("api.max_rows", api.max_rows, 1, 1_000_000, " rows"),
        (
            "api.max_streams",
            api.max_streams.into(),
            1,
            10_000,
            " streams",
        ),
        (
            "api.max_connections",
            api.max_connections.into(),
            1,
            65_536,
            " connections",
        ),
        (
            "api.header_timeout_secs",
            api.header_timeout.as_secs(),
            1,
            600,
            " seconds",
        ),
        (
            "api.idle_timeout_secs",
            api.idle_timeout.as_secs(),
            1,
            3600,
            " seconds",
        ),
    ];
    for (key, value, lo, hi, unit) in checks {
        if !(lo..=hi).contains(&value) {
            return Err(err(
                file,
                key,
                format!("must be at least {lo} and at most {hi}{unit}, not {value}"),
            ));
        }
    }
    Ok(())
}

/// `[inventory] resources_interval_secs` must lie in its range.
fn check_inventory(file: &Path, inventory: &InventoryConfig) -> Result<(), ConfigFileError> {
    let (lo, hi) = RESOURCES_INTERVAL_RANGE_SECS;
    let secs = inventory.resources_interval.as_secs();
    if !(lo..=hi).contains(&secs) {
        return Err(err(
            file,
            "inventory.resources_interval_secs",
            format!("must be at least {lo} and at most {hi} seconds, not {secs}"),
        ));
    }
    Ok(())
}

/// The most shards of one deployment (far beyond any fleet a shard could not poll alone).
pub const MAX_SHARDS: u32 = 4096;

/// Checks `[cluster]` and resolves it (the instance name defaults to the host name).
fn check_cluster(file: &Path, c: &ClusterConfig) -> Result<Shard, ConfigFileError> {
    if !(1..=MAX_SHARDS).contains(&c.shard_count) {
        return Err(err(
            file,
            "cluster.shard_count",
            format!(
                "must be at least 1 and at most {MAX_SHARDS}, not {}",
                c.shard_count
            ),
        ));
    }
    if c.shard_index >= c.shard_count {
        return Err(err(
            file,
            "cluster.shard_index",
            format!(
                "{} must be below cluster.shard_count ({}): shards count from 0; the index \
                 comes from --shard-index, else FLEETPOLL_SHARD_INDEX, else the file",
                c.shard_index, c.shard_count
            ),
        ));
    }
    let instance = match &c.instance {
        Some(name) => {
            if name.is_empty() || name.len() > 253 || !name.bytes().all(|b| b.is_ascii_graphic()) {
                let shown: String = name.chars().take(80).collect();
                return Err(err(
                    file,
                    "cluster.instance",
                    format!("{shown:?} must be 1 to 253 visible ASCII characters, like fp-a"),
                ));
            }
            name.clone()
        }
        None => cluster::host_name(),
    };
    Ok(Shard {
        instance,
        shard_index: c.shard_index,
        shard_count: c.shard_count,
    })
}

/// A path from the config file: a relative one is taken relative to the file's directory.
pub(crate) fn beside(file: &Path, path: &Path) -> PathBuf {
    if path.is_relative() {
        file.parent().unwrap_or(Path::new("")).join(path)
    } else {
        path.to_path_buf()
    }
}

/// Resolves every path of the file against its directory and checks the storage paths.
fn resolve_paths(file: &Path, config: &mut Config) -> Result<(), ConfigFileError> {
    let storage = &mut config.storage;
    for (key, dir) in [
        ("storage.state_dir", &mut storage.state_dir),
        ("storage.cache_dir", &mut storage.cache_dir),
    ] {
        if dir.as_os_str().is_empty() {
            return Err(err(file, key, "must name a directory, not be empty"));
        }
        *dir = beside(file, dir);
    }
    if storage.state_dir == storage.cache_dir {
        return Err(err(
            file,
            "storage.cache_dir",
            "must differ from storage.state_dir (the two stores lock and own their directories)",
        ));
    }
    if let Some(p) = &mut config.api.token_file {
        *p = beside(file, p);
    }
    if let Some(p) = &mut config.rules.file {
        if p.as_os_str().is_empty() {
            return Err(err(
                file,
                "rules.file",
                "must name the rules file, not be empty",
            ));
        }
        *p = beside(file, p);
    }
    for r in &mut config.remotes {
        if let Some(p) = &mut r.token_file {
            *p = beside(file, p);
        }
    }
    exporters::resolve_paths(file, &mut config.exporters);
    Ok(())
}

fn parse_node(
    file: &Path,
    key: &str,
    node: &NodeEntry,
    default_port: u16,
) -> Result<NodeAddress, ConfigFileError> {
    let address = node.address.trim();
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        // [v6]:port
        let (host, tail) = rest.split_once(']').ok_or_else(|| {
            err(
                file,
                format!("{key}.address"),
                "an IPv6 address must be written [addr]:port",
            )
        })?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse::<u16>().ok(),
            None if tail.is_empty() => Some(default_port),
            None => None,
        };
        (host.to_string(), port)
    } else {
        match address.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().ok()),
            None => (address.to_string(), Some(default_port)),
        }
    };
    let port = port.filter(|p| *p != 0).ok_or_else(|| {
        err(
            file,
            format!("{key}.address"),
            format!("{address:?} is not host[:port] with a port in 1..=65535"),
        )
    })?;
    if host.is_empty() {
        return Err(err(file, format!("{key}.address"), "the host is empty"));
    }
    let fingerprint = match &node.fingerprint {
        None => None,
        Some(text) => Some(text.parse::<Fingerprint>().map_err(|e| {
            err(
                file,
                format!("{key}.fingerprint"),
                format!("{e}; expected 32 hex pairs like AA:BB:…"),
            )
        })?),
    };
    Ok(NodeAddress::new(host, port, fingerprint))
}

/// Checks a parsed config and builds the engine's config and clients from it. Secrets
/// are read here, so a missing token file is reported before anything starts.
pub fn resolve(
    file: &Path,
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<Resolved, ConfigFileError> {
    let pools = ClientPools::default();
    let resolved = resolve_with_pools(file, config, clock, &pools)?;
    pools.idle.set_max(resolved.idle_connections);
    Ok(resolved)
}

/// As [`resolve`], the remotes' clients sharing `pools` (a daemon keeps one across
/// reloads). The caller sets `pools.idle` to [`Resolved::idle_connections`] once it
/// runs this config (a rejected reload leaves the running bound).
pub fn resolve_with_pools(
    file: &Path,
    mut config: Config,
    clock: Arc<dyn Clock>,
    pools: &ClientPools,
) -> Result<Resolved, ConfigFileError> {
    resolve_paths(file, &mut config)?;
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.filter) {
        return Err(err(
            file,
            "log.filter",
            format!(
                "{:?} is not a log filter ({e}); write it like \"info\" or \"info,fleetpoll=debug\"",
                config.log.filter
            ),
        ));
    }
    let c = &config;
    let mut engine = EngineConfig {
        remotes: Vec::new(),
        collection: c.collection.clone(),
        limits: c.limits.clone(),
        tasks: c.tasks.clone(),
        supervision: c.supervision.clone(),
        storage: c.storage.clone(),
    };
    // The sections are checked first, so a bad value is reported before any secret is read.
    engine.validate().map_err(|e| err(file, e.key, e.message))?;
    check_api_bounds(file, &c.api)?;
    check_inventory(file, &c.inventory)?;
    let shard = check_cluster(file, &c.cluster)?;
    let mut other_shards = Vec::new();
    let api_listen: SocketAddr = c.api.listen.parse().map_err(|_| {
        err(
            file,
            "api.listen",
            format!("{:?} is not an address like 127.0.0.1:8450", c.api.listen),
        )
    })?;
    let api_token = read_secret(
        file,
        "api.token",
        &c.api.token,
        &c.api.token_file,
        &c.api.token_env,
    )?;
    if !api_listen.ip().is_loopback() && api_token.is_none() {
        return Err(err(
            file,
            "api.listen",
            format!(
                "{api_listen} is reachable from other hosts, but no API token is set; \
                 set api.token_file (or listen on 127.0.0.1)"
            ),
        ));
    }

    let roots = pools.roots();
    // Every remote shares one bound on idle connections: twice the connections that
    // may be open at once keeps the recently used ones without growing with the fleet.
    let idle_max = 2 * c.limits.global_connections as usize;
    let idle = pools.idle.clone();
    let tls_sessions = pools.tls_sessions.clone();
    let mut ids = RemoteIdCheck::default();
    // Every remote is checked, whichever shard polls it: one file is valid or invalid
    // for every instance alike.
    for (i, r) in c.remotes.iter().enumerate() {
        let key = format!("remotes[{i}]");
        ids.check(i, &r.id)
            .map_err(|e| err(file, e.key, e.message))?;
        if r.id == crate::local::LOCAL_ID {
            return Err(err(
                file,
                format!("{key}.id"),
                "\"local\" is reserved for the local host source ([local] enabled = true)",
            ));
        }
        if !r.path_prefix.is_empty()
            && (!r.path_prefix.starts_with('/')
                || r.path_prefix
                    .split('/')
                    .any(|seg| seg == ".." || seg == ".")
                || !r.path_prefix.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(err(
                file,
                format!("{key}.path_prefix"),
                format!(
                    "{:?} must start with '/' and hold no '.' or '..' segment or space",
                    r.path_prefix
                ),
            ));
        }
        let kind = match r.kind.as_str() {
            "pve" => RemoteKind::Pve,
            "pbs" => RemoteKind::Pbs,
            "prometheus" => RemoteKind::Prometheus,
            other => {
                return Err(err(
                    file,
                    format!("{key}.type"),
                    format!(
                        "{other:?} is not a remote type; expected \"pve\", \"pbs\" or \
                         \"prometheus\""
                    ),
                ))
            }
        };
        if kind == RemoteKind::Prometheus {
            let options = ClientOptions {
                connect_timeout: c.limits.connect_timeout,
                request_timeout: c.limits.request_timeout,
                max_body_bytes: c.limits.max_body_mib << 20,
                path_prefix: String::new(),
                roots: Some(roots.clone()),
                clock: clock.clone(),
                idle: idle.clone(),
                tls_sessions: tls_sessions.clone(),
            };
            let rc = exposition_remote(file, &key, r, c, options)?;
            if shard.owns(&r.id) {
                engine.remotes.push(rc);
            } else {
                other_shards.push(OtherShardRemote {
                    remote: r.id.clone(),
                    kind,
                    shard: cluster::owner(&r.id, shard.shard_count),
                });
            }
            continue;
        }
        for (field, set) in [
            ("url", r.url.is_some()),
            ("fingerprint", r.fingerprint.is_some()),
            ("scrape_timeout_secs", r.scrape_timeout_secs.is_some()),
            ("series_limit", r.series_limit.is_some()),
        ] {
            if set {
                return Err(err(
                    file,
                    format!("{key}.{field}"),
                    format!(
                        "is a key of prometheus remotes; a {kind} remote lists `nodes` \
                         (with a fingerprint each)"
                    ),
                ));
            }
        }
        if r.nodes.is_empty() {
            return Err(err(file, format!("{key}.nodes"), "list at least one node"));
        }
        let default_port = if kind == RemoteKind::Pbs { 8007 } else { 8006 };
        let nodes = r
            .nodes
            .iter()
            .enumerate()
            .map(|(j, n)| parse_node(file, &format!("{key}.nodes[{j}]"), n, default_port))
            .collect::<Result<Vec<_>, _>>()?;
        let user_ok = r.auth_id.contains('@') && r.auth_id.contains('!');
        if !user_ok {
            return Err(err(
                file,
                format!("{key}.auth_id"),
                format!(
                    "{:?} is not an API token id like user@realm!tokenid",
                    r.auth_id
                ),
            ));
        }
        let secret = read_secret(
            file,
            &format!("{key}.token"),
            &r.token,
            &r.token_file,
            &r.token_env,
        )?
        .ok_or_else(|| {
            err(
                file,
                format!("{key}.token_file"),
                "the remote needs its API token secret: set token_file, token_env or token",
            )
        })?;
        let cap = r.connection_cap.unwrap_or(kind.default_connection_cap());
        if cap == 0 {
            return Err(err(
                file,
                format!("{key}.connection_cap"),
                "must be at least 1",
            ));
        }
        let mut hasher = DefaultHasher::new();
        format!("{r:?}").hash(&mut hasher);
        secret.0.hash(&mut hasher);
        c.limits.connect_timeout.hash(&mut hasher);
        c.limits.request_timeout.hash(&mut hasher);
        c.limits.max_body_mib.hash(&mut hasher);
        let endpoint = RemoteEndpoint {
            remote: r.id.as_str().into(),
            nodes,
            token: ApiToken::new(r.auth_id.clone(), secret.0.clone()),
            options: ClientOptions {
                connect_timeout: c.limits.connect_timeout,
                request_timeout: c.limits.request_timeout,
                max_body_bytes: c.limits.max_body_mib << 20,
                path_prefix: r.path_prefix.clone(),
                roots: Some(roots.clone()),
                clock: clock.clone(),
                idle: idle.clone(),
                tls_sessions: tls_sessions.clone(),
            },
        };
        let source = endpoint
            .into_source(kind)
            .map_err(|e| err(file, format!("{key}.nodes"), e.to_string()))?;
        if !shard.owns(&r.id) {
            other_shards.push(OtherShardRemote {
                remote: r.id.clone(),
                kind,
                shard: cluster::owner(&r.id, shard.shard_count),
            });
            continue;
        }
        let mut rc = RemoteConfig::new(r.id.as_str(), kind, source);
        rc.connection_cap = cap;
        rc.enabled = r.enabled;
        rc.revision = hasher.finish();
        rc.interval = r.interval_secs.map(Duration::from_secs);
        engine.remotes.push(rc);
    }
    let local = check_local(file, &c.local, &clock)?;
    if let Some(source) = &local {
        let mut rc = RemoteConfig::new(crate::local::LOCAL_ID, RemoteKind::Local, source.clone());
        rc.interval = Some(Duration::from_secs(c.local.interval_secs));
        let mut hasher = DefaultHasher::new();
        c.local.hash(&mut hasher);
        rc.revision = hasher.finish();
        engine.remotes.push(rc);
    }
    engine.validate().map_err(|e| err(file, e.key, e.message))?;
    let rules = match &config.rules.file {
        Some(rules) => crate::rules::RuleSet::load(rules)?,
        None => crate::rules::RuleSet::default(),
    };
    other_shards.sort_by(|a, b| a.remote.cmp(&b.remote));
    // Remote write's `instance` label: `[cluster] instance`, by default the host name.
    let exporters = exporters::resolve(file, &c.exporters, &shard.instance)?;
    // Nothing fetched that nobody uses: without the local RRD, a remote no metric rule
    // covers and no exporter selects is not polled for metrics.
    for remote in &mut engine.remotes {
        let id = remote.id.as_str();
        remote.metrics_used = config.storage.rrd
            || rules.uses_metrics_of(id)
            || exporters.iter().any(|e| e.selects_remote(id));
    }
    Ok(Resolved {
        config,
        engine,
        shard,
        other_shards,
        api_listen,
        api_token,
        rules,
        exporters,
        local,
        idle_connections: idle_max,
    })
}

/// Resolves `[[exporters]]` entries read from `file` on their own (paths taken beside
/// the file), with `instance` as remote write's `instance` label: for embedders and
/// benchmarks, and for `[cluster] instance`.
pub fn resolve_exporters(
    file: &Path,
    entries: &[ExporterEntry],
    instance: &str,
) -> Result<Vec<crate::export::ExporterSpec>, ConfigFileError> {
    let mut entries = entries.to_vec();
    exporters::resolve_paths(file, &mut entries);
    exporters::resolve(file, &entries, instance)
}

/// Loads, validates and resolves a config file in one step.
pub fn load_and_resolve(path: &Path, clock: Arc<dyn Clock>) -> Result<Resolved, ConfigFileError> {
    load_and_resolve_with(path, &Overrides::default(), clock)
}

/// As [`load_and_resolve`], with command-line values winning over the file's.
pub fn load_and_resolve_with(
    path: &Path,
    overrides: &Overrides,
    clock: Arc<dyn Clock>,
) -> Result<Resolved, ConfigFileError> {
    load_and_resolve_reusing(path, overrides, clock, &ClientPools::default())
}

/// As [`load_and_resolve_with`], the clients sharing `pools` (see [`resolve_with_pools`]).
pub fn load_and_resolve_reusing(
    path: &Path,
    overrides: &Overrides,
    clock: Arc<dyn Clock>,
    pools: &ClientPools,
) -> Result<Resolved, ConfigFileError> {
    let mut config = load(path)?;
    overrides.apply(&mut config);
    resolve_with_pools(path, config, clock, pools)
}

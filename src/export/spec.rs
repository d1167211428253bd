//! An exporter as the config resolved it: its kind, where it sends, what it selects and
//! how it batches. Secrets (the URL, header values, tokens, passwords) live only here
//! and never reach `Debug`, a log line, an error or the API.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use globset::GlobSet;
use http::{HeaderName, HeaderValue, Uri};

/// Which protocol an exporter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportKind {
    /// Graphite plaintext (`path value seconds`), over TCP or UDP.
    Graphite,
    /// InfluxDB line protocol, over HTTP (`precision=s`) or UDP (nanoseconds).
    Influxdb,
    /// statsd gauges over UDP (the newest sample of each series per batch).
    Statsd,
    /// Prometheus remote write 1.0 (protobuf, snappy) over HTTP.
    RemoteWrite,
}

impl ExportKind {
    /// The name the config and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Graphite => "graphite",
            ExportKind::Influxdb => "influxdb",
            ExportKind::Statsd => "statsd",
            ExportKind::RemoteWrite => "prometheus-remote-write",
        }
    }

    /// The kind a config names, if any.
    pub fn parse(text: &str) -> Option<ExportKind> {
        [
            ExportKind::Graphite,
            ExportKind::Influxdb,
            ExportKind::Statsd,
            ExportKind::RemoteWrite,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Where an exporter's payloads go.
#[derive(Clone)]
pub enum Target {
    /// A TCP stream to `host:port`.
    Tcp(String),
    /// UDP datagrams to `host:port`.
    Udp(String),
    /// HTTP(S) POSTs.
    Http(Arc<HttpTarget>),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "Tcp({a})"),
            Target::Udp(a) => write!(f, "Udp({a})"),
            Target::Http(_) => f.write_str("Http(<redacted>)"),
        }
    }
}

impl Target {
    /// `tcp`, `udp`, `http` or `https` (for the API; no address or URL).
    pub fn transport(&self) -> &'static str {
        match self {
            Target::Tcp(_) => "tcp",
            Target::Udp(_) => "udp",
            Target::Http(h) if h.tls.is_some() => "https",
            Target::Http(_) => "http",
        }
    }
}

/// An HTTP(S) receiver: the write URL and headers (secrets), TLS trust.
pub struct HttpTarget {
    /// The full write URL (with `precision=s` for InfluxDB).
    pub uri: Uri,
    /// `host:port` to connect to.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Headers of every request (authorization, the kind's content headers, the
    /// configured extra ones).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// TLS client setup for `https` (`None`: plain HTTP).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpTarget(<redacted>)")
    }
}

/// One exporter, resolved.
#[derive(Clone)]
pub struct ExporterSpec {
    /// Unique name (the hook is registered as `export:<name>`).
    pub name: String,
    /// Protocol.
    pub kind: ExportKind,
    /// Where it sends.
    pub target: Target,
    /// First component of every name.
    pub prefix: String,
    /// Remote ids exported (`None`: all).
    pub remotes: Option<GlobSet>,
    /// Metric names exported (`None`: all).
    pub metrics: Option<GlobSet>,
    /// Counters and derives raw instead of as rates.
    pub raw_counters: bool,
    /// Points per send, at most.
    pub batch_max_points: usize,
    /// Buffered points are sent at least this often.
    pub flush_interval: Duration,
    /// Points waiting for the receiver, at most (the oldest are dropped beyond).
    pub queue_max_points: usize,
    /// One send's deadline.
    pub timeout: Duration,
    /// The `instance` label of remote write.
    pub instance: String,
    /// Changes when anything of the exporter changes (config, secrets, CA file): a
    /// reload replaces exactly the exporters whose revision differs.
    pub revision: u64,
}

impl ExporterSpec {
    /// Whether its `remotes` globs select `remote` (no globs: every remote).
    pub fn selects_remote(&self, remote: &str) -> bool {
        self.remotes.as_ref().is_none_or(|g| g.is_match(remote))
    }
}

impl fmt::Debug for ExporterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("raw_counters", &self.raw_counters)
            .field("batch_max_points", &self.batch_max_points)
            .field("flush_interval", &self.flush_interval)
            .field("queue_max_points", &self.queue_max_points)
            .field("timeout", &self.timeout)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

//! `[[exporters]]`: each entry checked and resolved into an [`ExporterSpec`] — kind and
//! transport, the receiver's address or URL, secrets read (token and password files
//! must not be world-readable), TLS trust, globs compiled. Every error names the key;
//! none repeats the URL or a header value.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use globset::{Glob, GlobSet, GlobSetBuilder};
use http::{HeaderName, HeaderValue, Uri};

use super::schema::ExporterEntry;
use super::{beside, err, read_secret, ConfigFileError};
use crate::export::{ExportKind, ExporterSpec, HttpTarget, Target};
use crate::remote::tls::{client_config, system_roots, TlsSessions};
use crate::remote::Fingerprint;

/// Makes every path of the entries relative to the config file's directory.
pub(super) fn resolve_paths(file: &Path, entries: &mut [ExporterEntry]) {
    for e in entries {
        for p in [&mut e.token_file, &mut e.password_file, &mut e.ca_file]
            .into_iter()
            .flatten()
        {
            *p = beside(file, p);
        }
    }
}

/// Resolves every entry; `instance` becomes remote write's `instance` label.
pub(super) fn resolve(
    file: &Path,
    entries: &[ExporterEntry],
    instance: &str,
) -> Result<Vec<ExporterSpec>, ConfigFileError> {
    let mut names = HashSet::new();
    let sessions = TlsSessions::new(16);
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let key = format!("exporters[{i}]");
        if e.name.is_empty()
            || e.name.len() > 64
            || !e
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(err(
                file,
                format!("{key}.name"),
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        if !names.insert(e.name.clone()) {
            return Err(err(
                file,
                format!("{key}.name"),
                format!(
                    "exporter name {:?} is used twice; names must be unique",
                    e.name
                ),
            ));
        }
        out.push(resolve_one(file, &key, e, instance, &sessions)?);
    }
    Ok(out)
}

fn resolve_one(
    file: &Path,
    key: &str,
    e: &ExporterEntry,
    instance: &str,
    sessions: &TlsSessions,
) -> Result<ExporterSpec, ConfigFileError> {
    let k = |sub: &str| format!("{key}.{sub}");
    let kind = ExportKind::parse(&e.kind).ok_or_else(|| {
        err(
            file,
            k("kind"),
            format!(
                "{:?} is not an exporter kind; expected \"graphite\", \"influxdb\", \"statsd\" \
                 or \"prometheus-remote-write\"",
                e.kind
            ),
        )
    })?;
    check_prefix(file, &k("prefix"), kind, &e.prefix)?;
    for (sub, value, lo, hi) in [
        ("batch_max_points", e.batch_max_points as u64, 1, 1_000_000),
        ("flush_interval_ms", e.flush_interval_ms, 10, 600_000),
        (
            "queue_max_points",
            e.queue_max_points as u64,
            1,
            100_000_000,
        ),
        ("timeout_secs", e.timeout_secs, 1, 600),
    ] {
        if !(lo..=hi).contains(&value) {
            return Err(err(
                file,
                k(sub),
                format!("must be at least {lo} and at most {hi}, not {value}"),
            ));
        }
    }
    let transport = e.transport.as_deref();
    if let Some(t) = transport {
        if t != "tcp" && t != "udp" {
            return Err(err(
                file,
                k("transport"),
                format!("{t:?} is not a transport; expected \"tcp\" or \"udp\""),
            ));
        }
    }
    let http_kind = match kind {
        ExportKind::Graphite | ExportKind::Statsd => false,
        ExportKind::RemoteWrite => true,
        ExportKind::Influxdb => transport != Some("udp"),
    };
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(e)
        .unwrap_or_default()
        .hash(&mut hasher);
    instance.hash(&mut hasher);
    let target = if http_kind {
        for (sub, set) in [
            ("address", e.address.is_some()),
            ("transport", transport == Some("tcp")),
        ] {
            if set {
                return Err(err(
                    file,
                    k(sub),
                    format!("`{}` over HTTP takes `url`, not `{sub}`", kind.as_str()),
                ));
            }
        }
        Target::Http(Arc::new(http_target(
            file,
            key,
            e,
            kind,
            sessions,
            &mut hasher,
        )?))
    } else {
        if e.url.is_some() {
            return Err(err(
                file,
                k("url"),
                format!(
                    "`{}` over TCP or UDP takes `address` (host:port), not `url`",
                    kind.as_str()
                ),
            ));
        }
        for (sub, set) in [
            ("token_file", e.token_file.is_some()),
            ("token_env", e.token_env.is_some()),
            ("username", e.username.is_some()),
            ("password_file", e.password_file.is_some()),
            ("headers", !e.headers.is_empty()),
            ("ca_file", e.ca_file.is_some()),
            ("fingerprint", e.fingerprint.is_some()),
        ] {
            if set {
                return Err(err(file, k(sub), "only HTTP exporters take this key"));
            }
        }
        if kind == ExportKind::Statsd && transport == Some("tcp") {
            return Err(err(file, k("transport"), "statsd is sent over UDP only"));
        }
        let address = e.address.as_deref().ok_or_else(|| {
            err(
                file,
                k("address"),
                "set the receiver's address as host:port",
            )
        })?;
        match address.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0) => {}
            _ => {
                return Err(err(
                    file,
                    k("address"),
                    format!("{address:?} is not host:port with a port in 1..=65535"),
                ))
            }
        }
        let udp = transport == Some("udp") || kind != ExportKind::Graphite;
        if udp {
            Target::Udp(address.to_string())
        } else {
            Target::Tcp(address.to_string())
        }
    };
    Ok(ExporterSpec {
        name: e.name.clone(),
        kind,
        target,
        prefix: e.prefix.clone(),
        remotes: globs(file, &k("remotes"), &e.remotes)?,
        metrics: globs(file, &k("metrics"), &e.metrics)?,
        raw_counters: e.raw_counters,
        batch_max_points: e.batch_max_points,
        flush_interval: Duration::from_millis(e.flush_interval_ms),
        queue_max_points: e.queue_max_points,
        timeout: Duration::from_secs(e.timeout_secs),
        instance: instance.to_string(),
        revision: hasher.finish(),
    })
}

/// Graphite and statsd paths take `[A-Za-z0-9_.-]`; line-protocol measurements and
/// Prometheus names `[A-Za-z_][A-Za-z0-9_]*`.
fn check_prefix(
    file: &Path,
    key: &str,
    kind: ExportKind,
    prefix: &str,
) -> Result<(), ConfigFileError> {
    let dotted = matches!(kind, ExportKind::Graphite | ExportKind::Statsd);
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dotted && b"-.".contains(&b)))
        && (dotted || !prefix.as_bytes()[0].is_ascii_digit());
    if ok {
        Ok(())
    } else if dotted {
        Err(err(
            file,
            key,
            format!("{prefix:?} must be 1 to 64 letters, digits, '_', '-' or '.'"),
        ))
    } else {
        Err(err(
            file,
            key,
            format!("{prefix:?} must be 1 to 64 letters, digits or '_', not starting with a digit"),
        ))
    }
}

fn globs(file: &Path, key: &str, patterns: &[String]) -> Result<Option<GlobSet>, ConfigFileError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        let g = Glob::new(p).map_err(|e| {
            err(
                file,
                format!("{key}[{i}]"),
                format!("{p:?} is not a glob: {e}"),
            )
        })?;
        b.add(g);
    }
    b.build()
        .map(Some)
        .map_err(|e| err(file, key, format!("the globs do not compile: {e}")))
}

fn http_target(
    file: &Path,
    key: &str,
    e: &ExporterEntry,
    kind: ExportKind,
    sessions: &TlsSessions,
    hasher: &mut DefaultHasher,
) -> Result<HttpTarget, ConfigFileError> {
    let k = |sub: &str| format!("{key}.{sub}");
    let url = e
        .url
        .as_ref()
        .ok_or_else(|| err(file, k("url"), "set the receiver's full write URL"))?;
    url.0.hash(hasher);
    // The URL is a secret: errors say what is wrong, never what it is.
    let mut uri: Uri = url.0.parse().map_err(|_| {
        err(
            file,
            k("url"),
            "is not a URL like http://host:port/path (the value is not shown: it is a secret)",
        )
    })?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(err(file, k("url"), "must start with http:// or https://")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err(file, k("url"), "has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    if kind == ExportKind::Influxdb {
        // Timestamps go in seconds: the URL gets `precision=s` unless it says so already.
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let query = uri.query().unwrap_or("");
        if query
            .split('&')
            .any(|kv| kv.starts_with("precision=") && kv != "precision=s")
        {
            return Err(err(
                file,
                k("url"),
                "sets a precision other than `precision=s`; leave it out (timestamps are sent in seconds)",
            ));
        }
        if !query.split('&').any(|kv| kv == "precision=s") {
            let sep = if uri.query().is_some() { "&" } else { "?" };
            let full = format!(
                "{}://{}{pq}{sep}precision=s",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |a| a.as_str())
            );
            uri = full
                .parse()
                .map_err(|_| err(file, k("url"), "is not a URL like http://host:port/path"))?;
        }
    }
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    match kind {
        ExportKind::RemoteWrite => {
            for (n, v) in [
                ("content-encoding", "snappy"),
                ("content-type", "application/x-protobuf"),
                ("x-prometheus-remote-write-version", "0.1.0"),
            ] {
                headers.push((HeaderName::from_static(n), HeaderValue::from_static(v)));
            }
        }
        _ => headers.push((
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )),
    }
    headers.push((
        HeaderName::from_static("user-agent"),
        HeaderValue::from_static(concat!("fleetpoll/", env!("CARGO_PKG_VERSION"))),
    ));
    let token = read_secret(file, &k("token"), &None, &e.token_file, &e.token_env)?;
    let password = read_secret(file, &k("password"), &None, &e.password_file, &None)?;
    if token.is_some() && (e.username.is_some() || password.is_some()) {
        return Err(err(
            file,
            k("username"),
            "set either a token or username/password_file, not both",
        ));
    }
    if let Some(t) = &token {
        t.0.hash(hasher);
        let scheme = if kind == ExportKind::Influxdb {
            "Token"
        } else {
            "Bearer"
        };
        let mut v = HeaderValue::from_str(&format!("{scheme} {}", t.0))
            .map_err(|_| err(file, k("token_file"), "the token is not a header value"))?;
        v.set_sensitive(true);
        headers.push((http::header::AUTHORIZATION, v));
    }
    match (&e.username, &password) {
        (Some(user), Some(pass)) => {
            pass.0.hash(hasher);
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pass.0));
            let mut v = HeaderValue::from_str(&format!("Basic {basic}"))
                .map_err(|_| err(file, k("username"), "is not usable in a header"))?;
            v.set_sensitive(true);
            headers.push((http::header::AUTHORIZATION, v));
        }
        (Some(_), None) => {
            return Err(err(
                file,
                k("password_file"),
                "`username` needs `password_file`",
            ))
        }
        (None, Some(_)) => {
            return Err(err(file, k("username"), "`password_file` needs `username`"))
        }
        (None, None) => {}
    }
    for (name, value) in &e.headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            err(
                file,
                format!("{key}.headers.{name}"),
                "is not an HTTP header name",
            )
        })?;
        let mut v = HeaderValue::from_str(&value.0).map_err(|_| {
            err(
                file,
                format!("{key}.headers.{name}"),
                "the value is not a header value (visible ASCII and spaces)",
            )
        })?;
        v.set_sensitive(true);
        value.0.hash(hasher);
        headers.push((n, v));
    }
    let tls = if https {
        let roots = match &e.ca_file {
            None => system_roots(),
            Some(p) => {
                let pem = std::fs::read(p).map_err(|er| {
                    err(
                        file,
                        k("ca_file"),
                        format!("cannot read {}: {er}", p.display()),
                    )
                })?;
                pem.hash(hasher);
                let mut roots = rustls::RootCertStore::empty();
                let mut n = 0;
                for cert in rustls_pemfile_certs(&pem) {
                    let cert = cert.map_err(|er| {
                        err(
                            file,
                            k("ca_file"),
                            format!("{} holds a bad certificate: {er}", p.display()),
                        )
                    })?;
                    roots
                        .add(cert)
                        .map_err(|er| err(file, k("ca_file"), format!("{}: {er}", p.display())))?;
                    n += 1;
                }
                if n == 0 {
                    return Err(err(
                        file,
                        k("ca_file"),
                        format!("{} holds no PEM certificate", p.display()),
                    ));
                }
                Arc::new(roots)
            }
        };
        let pinned = match &e.fingerprint {
            None => None,
            Some(text) => Some(text.parse::<Fingerprint>().map_err(|er| {
                err(
                    file,
                    k("fingerprint"),
                    format!("{er}; expected 32 hex pairs like AA:BB:…"),
                )
            })?),
        };
        let scope = format!("exporter\0{:?}\0{:?}", e.url, pinned);
        let config = client_config(roots, pinned, sessions, &scope)
            .map_err(|er| err(file, k("url"), format!("TLS setup failed: {er}")))?;
        Some(Arc::new(config))
    } else {
        for (sub, set) in [
            ("ca_file", e.ca_file.is_some()),
            ("fingerprint", e.fingerprint.is_some()),
        ] {
            if set {
                return Err(err(file, k(sub), "only an https:// URL takes this key"));
            }
        }
        None
    };
    Ok(HttpTarget {
        uri,
        host,
        port,
        headers,
        tls,
    })
}

/// The certificates of a PEM text.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> impl Iterator<Item = Result<rustls::pki_types::CertificateDer<'static>, String>> + '_ {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).map(|r| r.map_err(|e| e.to_string()))
}

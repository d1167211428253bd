//! The sources beside Proxmox remotes: `[local]` (the host fleetpoll runs on) and
//! `type = "prometheus"` remotes (exposition endpoints), checked and built.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::{Clock, RemoteConfig, RemoteKind};

use super::{err, read_secret, Config, ConfigFileError, LocalConfig, RemoteEntry};
use crate::remote::{ClientOptions, Fingerprint};

/// Checks `[local]` and builds its source when it is enabled.
pub(super) fn check_local(
    file: &Path,
    l: &LocalConfig,
    clock: &Arc<dyn Clock>,
) -> Result<Option<Arc<crate::local::LocalSource>>, ConfigFileError> {
    let max = fleetpoll_actors::EXPOSITION_MAX_INTERVAL_SECS;
    if !(1..=max).contains(&l.interval_secs) {
        return Err(err(
            file,
            "local.interval_secs",
            format!(
                "must be at least 1 and at most {max} seconds (the metric store's heartbeat), \
                 not {}",
                l.interval_secs
            ),
        ));
    }
    if l.cache_ttl_secs > l.interval_secs {
        return Err(err(
            file,
            "local.cache_ttl_secs",
            format!(
                "must be at most local.interval_secs ({}), not {}: a collection would be \
                 answered with the previous one's values",
                l.interval_secs, l.cache_ttl_secs
            ),
        ));
    }
    Ok(l.enabled.then(|| {
        Arc::new(crate::local::LocalSource::new(
            clock.clone(),
            Duration::from_secs(l.cache_ttl_secs),
        ))
    }))
}

/// The default interval of a prometheus remote: exposition endpoints keep no history.
pub const EXPOSITION_DEFAULT_INTERVAL_SECS: u64 = 30;
/// The default scrape timeout (Prometheus' own), unless the interval is shorter.
pub const EXPOSITION_DEFAULT_TIMEOUT_SECS: u64 = 10;

/// A `type = "prometheus"` remote: URL, pin, optional bearer token, interval, timeout
/// and series limit checked, and its client built.
pub(super) fn exposition_remote(
    file: &Path,
    key: &str,
    r: &RemoteEntry,
    c: &Config,
    mut options: ClientOptions,
) -> Result<RemoteConfig, ConfigFileError> {
    for (field, set) in [
        ("nodes", !r.nodes.is_empty()),
        ("auth_id", !r.auth_id.is_empty()),
        ("path_prefix", !r.path_prefix.is_empty()),
    ] {
        if set {
            return Err(err(
                file,
                format!("{key}.{field}"),
                "is not a key of prometheus remotes; they name their target by `url`",
            ));
        }
    }
    let url = r.url.as_deref().ok_or_else(|| {
        err(
            file,
            format!("{key}.url"),
            "a prometheus remote needs its target's url, like http://host:9100/metrics",
        )
    })?;
    let parsed = crate::prom::client::ScrapeUrl::parse(url)
        .map_err(|e| err(file, format!("{key}.url"), e))?;
    let fingerprint = match &r.fingerprint {
        None => None,
        Some(_) if !parsed.tls => {
            return Err(err(
                file,
                format!("{key}.fingerprint"),
                "pins an https certificate; the url is http",
            ))
        }
        Some(text) => Some(text.parse::<Fingerprint>().map_err(|e| {
            err(
                file,
                format!("{key}.fingerprint"),
                format!("{e}; expected 32 hex pairs like AA:BB:…"),
            )
        })?),
    };
    let bearer = read_secret(
        file,
        &format!("{key}.token"),
        &r.token,
        &r.token_file,
        &r.token_env,
    )?;
    let interval = r.interval_secs.unwrap_or(EXPOSITION_DEFAULT_INTERVAL_SECS);
    let max = fleetpoll_actors::EXPOSITION_MAX_INTERVAL_SECS;
    if !(1..=max).contains(&interval) {
        return Err(err(
            file,
            format!("{key}.interval_secs"),
            format!(
                "must be at least 1 and at most {max} seconds, not {interval}: an exposition \
                 target keeps no history, and an interval longer than the metric store's \
                 {max} s heartbeat would store nothing but unknowns"
            ),
        ));
    }
    let timeout = r
        .scrape_timeout_secs
        .unwrap_or(EXPOSITION_DEFAULT_TIMEOUT_SECS.min(interval));
    if !(1..=interval).contains(&timeout) {
        return Err(err(
            file,
            format!("{key}.scrape_timeout_secs"),
            format!(
                "must be at least 1 and at most the interval ({interval} s), not {timeout}: \
                 a scrape still running at the next tick would overlap it"
            ),
        ));
    }
    let series_limit = r
        .series_limit
        .map_or(crate::prom::DEFAULT_SERIES_LIMIT, |n| n as usize);
    if !(1..=1_000_000).contains(&series_limit) {
        return Err(err(
            file,
            format!("{key}.series_limit"),
            format!("must be at least 1 and at most 1000000, not {series_limit}"),
        ));
    }
    let cap = r.connection_cap.unwrap_or(1);
    if cap == 0 {
        return Err(err(
            file,
            format!("{key}.connection_cap"),
            "must be at least 1",
        ));
    }
    options.request_timeout = Duration::from_secs(timeout);
    options.connect_timeout = options.connect_timeout.min(options.request_timeout);
    let mut hasher = DefaultHasher::new();
    format!("{r:?}").hash(&mut hasher);
    if let Some(b) = &bearer {
        b.0.hash(&mut hasher);
    }
    c.limits.connect_timeout.hash(&mut hasher);
    c.limits.max_body_mib.hash(&mut hasher);
    let target = crate::prom::PromTarget {
        url: url.to_string(),
        fingerprint,
        bearer: bearer.map(|b| b.0),
        series_limit,
    };
    let client = crate::prom::PromClient::new(r.id.as_str().into(), target, options)
        .map_err(|e| err(file, format!("{key}.url"), e.to_string()))?;
    let mut rc = RemoteConfig::new(r.id.as_str(), RemoteKind::Prometheus, Arc::new(client));
    rc.connection_cap = cap;
    rc.enabled = r.enabled;
    rc.revision = hasher.finish();
    rc.interval = Some(Duration::from_secs(interval));
    Ok(rc)
}

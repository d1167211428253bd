//! How a stored sample is named in each receiver (`docs/export.md` is the user's copy
//! of these rules), and which samples an exporter selects.

use std::fmt::Write;

use fleetpoll_actors::{HookBatch, MetricKind, Sample};

use super::spec::ExporterSpec;

/// Appends `text` with every character outside `[A-Za-z0-9_-]` written as `_` (one
/// Graphite or statsd path component).
pub(crate) fn push_component(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
}

/// `<prefix>.<remote>.<entity with / as .>.<metric>`, each component cleaned.
pub(crate) fn graphite_path(prefix: &str, remote: &str, entity: &str, metric: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + remote.len() + entity.len() + 24);
    out.push_str(prefix);
    out.push('.');
    push_component(&mut out, remote);
    for part in entity.split('/') {
        out.push('.');
        push_component(&mut out, part);
    }
    out.push('.');
    push_component(&mut out, metric);
    out
}

/// `<prefix>_<metric>` with every character outside `[A-Za-z0-9_:]` written as `_`.
pub(crate) fn prometheus_name(prefix: &str, metric: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + metric.len() + 1);
    out.push_str(prefix);
    out.push('_');
    out.extend(metric.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The `kind` label: the entity's first path segment (`node`, `qemu`, `storage`, …).
pub(crate) fn entity_kind(entity: &str) -> &str {
    entity.split('/').next().unwrap_or(entity)
}

/// Appends a line-protocol tag key, tag value or field key: commas, spaces and `=`
/// escaped with `\`.
pub(crate) fn push_influx_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, ',' | ' ' | '=' | '\\') {
            out.push('\\');
        }
        if c == '\n' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
}

/// Appends a float as receivers parse it (Rust's shortest round-trip form, never an
/// exponent).
pub(crate) fn push_value(out: &mut String, value: f64) {
    let _ = write!(out, "{value}");
}

/// Which of a batch's series an exporter sends, one flag per series (globs are matched
/// once per series, not per point); `None` when the remote is not selected at all.
pub(crate) fn selected_series(spec: &ExporterSpec, batch: &HookBatch) -> Option<Vec<bool>> {
    if !spec.selects_remote(batch.remote.as_str()) {
        return None;
    }
    Some(
        batch
            .batch
            .series
            .iter()
            .map(|s| spec.metrics.as_ref().is_none_or(|m| m.is_match(&*s.metric)))
            .collect(),
    )
}

/// The value an exporter sends for a sample: a gauge's value; a counter's or derive's
/// per-second rate (none for a series' first point or after a reset), or its raw value
/// with `raw_counters`. Values that are not finite are not sent.
pub(crate) fn exported_value(sample: &Sample<'_>, raw_counters: bool) -> Option<f64> {
    let v = match sample.kind {
        MetricKind::Gauge => Some(sample.value),
        MetricKind::Counter | MetricKind::Derive if raw_counters => Some(sample.value),
        MetricKind::Counter | MetricKind::Derive => sample.rate,
    };
    v.filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphite_paths_clean_each_component_and_split_the_entity() {
        assert_eq!(
            graphite_path("fleetpoll", "pve.a", "storage/pve1/local zfs", "used%"),
            "fleetpoll.pve_a.storage.pve1.local_zfs.used_"
        );
    }

    #[test]
    fn prometheus_names_keep_only_legal_characters() {
        assert_eq!(prometheus_name("fp", "net-in.bytes"), "fp_net_in_bytes");
        assert_eq!(entity_kind("qemu/100"), "qemu");
        assert_eq!(entity_kind("host"), "host");
    }

    #[test]
    fn line_protocol_escapes_commas_spaces_and_equals() {
        let mut s = String::new();
        push_influx_escaped(&mut s, "a,b c=d");
        assert_eq!(s, "a\\,b\\ c\\=d");
    }
}

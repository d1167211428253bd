//! The Prometheus text exposition format 0.0.4 and OpenMetrics 1.0, parsed into flat
//! samples with their family's type.
//!
//! Hand-written rather than taken from a crate: the crates available (`prometheus-parse`,
//! `openmetrics-parser`) neither reject duplicate series, nor stop at a series limit
//! while parsing, nor bound label lengths, and one of them does not read OpenMetrics at
//! all. A scrape of a node_exporter is ~1,500 lines; this parser reads it without a
//! regular expression and allocates only the samples it returns.
//!
//! What it accepts: `# HELP`, `# TYPE`, `# UNIT` and other comments; samples
//! `name{label="value",…} value [timestamp]`; label values with the escapes `\\`, `\"`
//! and `\n`; values `NaN`, `+Inf`, `-Inf`; timestamps in milliseconds (text) or seconds
//! (OpenMetrics); exemplars (` # {…} v`) are skipped. OpenMetrics must end with `# EOF`
//! and nothing after it. What it refuses, as a bad reply naming the line: a syntax
//! error, the same series twice, more samples than the series limit, a label name or
//! value longer than [`MAX_LABEL_BYTES`].

use std::collections::HashSet;
use std::fmt;

/// The longest label name or value accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 1024;
/// The longest metric name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 512;

/// Which exposition format a body is in (from the reply's `Content-Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and anything not OpenMetrics).
    Text,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header names.
    pub fn from_content_type(value: Option<&str>) -> Format {
        match value {
            Some(v) if v.trim_start().starts_with("application/openmetrics-text") => {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }
}

/// A family's declared type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FamilyType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram` (and OpenMetrics `gaugehistogram`).
    Histogram,
    /// `summary`.
    Summary,
    /// `untyped`, `unknown`, `info`, `stateset`, or no `# TYPE` line.
    Untyped,
}

/// How a sample's value behaves: the store keeps gauges as GAUGE, counters as DERIVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// A value at an instant (gauges, untyped, summary quantiles).
    Gauge,
    /// A growing count (counters, histogram buckets, `_sum` and `_count`).
    Counter,
}

/// One sample: a series and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name as written (`node_cpu_seconds_total`, `…_bucket`).
    pub name: String,
    /// The labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// The sample's own timestamp, in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Gauge or counter, from the family's type and the sample's suffix.
    pub kind: SampleKind,
}

/// Why a body could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line, 0 for the body as a whole.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole body; at most `series_limit` samples.
pub fn parse(body: &str, format: Format, series_limit: usize) -> Result<Vec<Sample>, ParseError> {
    let mut collect = Collect {
        samples: Vec::new(),
        seen: HashSet::new(),
        series_limit,
    };
    read_lines(body, format, &mut collect)?;
    Ok(collect.samples)
}

/// Where a line is read: the body's format and the family of the last `# TYPE` line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LineContext<'a> {
    pub(crate) format: Format,
    pub(crate) family: Option<(&'a str, FamilyType)>,
}

/// What receives the sample lines of a body ([`read_lines`]).
pub(crate) trait SampleSink {
    /// One sample line, trimmed, read under `cx`.
    fn sample(&mut self, line: &str, cx: LineContext<'_>) -> Result<(), String>;
}

/// Reads a body line by line: comments and `# TYPE` lines here, samples into `sink`;
/// OpenMetrics' `# EOF` required and nothing after it.
pub(crate) fn read_lines(
    body: &str,
    format: Format,
    sink: &mut impl SampleSink,
) -> Result<(), ParseError> {
    let mut family = None;
    let mut eof = false;
    let lines = body.split('\n').count();
    for (index, raw) in body.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let fail = |message: String| ParseError {
            line: line_no,
            message,
        };
        if eof {
            if line.is_empty() && index + 1 == lines {
                break;
            }
            return Err(fail("content after `# EOF`".into()));
        }
        if format == Format::OpenMetrics && line == "# EOF" {
            eof = true;
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            if let Some(declared) = type_line(comment).map_err(fail)? {
                family = Some(declared);
            }
            continue;
        }
        sink.sample(trimmed, LineContext { format, family })
            .map_err(fail)?;
    }
    if format == Format::OpenMetrics && !eof {
        return Err(ParseError {
            line: 0,
            message: "OpenMetrics reply does not end with `# EOF` (cut off?)".into(),
        });
    }
    Ok(())
}

/// The samples of a body, each series once, at most `series_limit`.
struct Collect {
    samples: Vec<Sample>,
    /// Each series seen so far, as `name{sorted labels}`.
    seen: HashSet<String>,
    series_limit: usize,
}

impl SampleSink for Collect {
    fn sample(&mut self, line: &str, cx: LineContext<'_>) -> Result<(), String> {
        let (_, sample) = parse_sample(line, cx)?;
        let Some(sample) = sample else {
            return Ok(());
        };
        if !self.seen.insert(series_key(&sample.name, &sample.labels)) {
            return Err(duplicate(&sample.name, &sample.labels));
        }
        if self.samples.len() >= self.series_limit {
            return Err(over_limit(self.series_limit));
        }
        self.samples.push(sample);
        Ok(())
    }
}

/// A series' identity: its name and sorted labels, joined by NUL bytes.
pub(crate) fn series_key(name: &str, labels: &[(String, String)]) -> String {
    let mut key = String::with_capacity(name.len() + 32);
    key.push_str(name);
    for (k, v) in labels {
        key.push('\0');
        key.push_str(k);
        key.push('\0');
        key.push_str(v);
    }
    key
}

pub(crate) fn duplicate(name: &str, labels: &[(String, String)]) -> String {
    format!("series {} appears twice", display_series(name, labels))
}

pub(crate) fn over_limit(series_limit: usize) -> String {
    format!("more than {series_limit} series (the remote's series_limit)")
}

/// The family a comment declares, if it is a `# TYPE` line.
fn type_line(comment: &str) -> Result<Option<(&str, FamilyType)>, String> {
    let rest = comment.trim_start();
    let Some(rest) = rest.strip_prefix("TYPE") else {
        // HELP, UNIT and free comments carry nothing the store keeps.
        return Ok(None);
    };
    if !rest.starts_with([' ', '\t']) {
        return Ok(None);
    }
    let mut words = rest.split_whitespace();
    let name = words.next().ok_or("`# TYPE` without a metric name")?;
    let kind = words.next().ok_or("`# TYPE` without a type")?;
    let kind = match kind {
        "counter" => FamilyType::Counter,
        "gauge" => FamilyType::Gauge,
        "histogram" | "gaugehistogram" => FamilyType::Histogram,
        "summary" => FamilyType::Summary,
        "untyped" | "unknown" | "info" | "stateset" => FamilyType::Untyped,
        other => return Err(format!("unknown metric type {other:?}")),
    };
    check_name(name)?;
    Ok(Some((name, kind)))
}

/// One sample line read in full: the length of its series text (`name{…}`, up to the
/// value) and the sample, or `None` for a series the store does not keep (OpenMetrics'
/// `_created`).
pub(crate) fn parse_sample(
    line: &str,
    cx: LineContext<'_>,
) -> Result<(usize, Option<Sample>), String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or("a sample without a value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let series_len = line.len() - rest.len();
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(format!("series {name} repeats a label name"));
    }
    let (value, timestamp_ms) = value_part(rest, cx.format)?;
    let Some(kind) = kind_of(cx, name, &labels) else {
        return Ok((series_len, None));
    };
    Ok((
        series_len,
        Some(Sample {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
            kind,
        }),
    ))
}

/// What follows a sample's series text: the value and an optional timestamp (an
/// OpenMetrics exemplar after ` # ` ignored).
pub(crate) fn value_part(rest: &str, format: Format) -> Result<(f64, Option<i64>), String> {
    // Exemplars (OpenMetrics) follow ` # `; no label value remains to hold a '#'.
    let rest = rest.split_once('#').map_or(rest, |(head, _)| head);
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample without a value")?;
    let value = parse_value(value)?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(ts) => Some(parse_timestamp(ts, format)?),
    };
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok((value, timestamp_ms))
}

fn parse_timestamp(text: &str, format: Format) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a timestamp");
    match format {
        Format::Text => text.parse::<i64>().map_err(|_| bad()),
        Format::OpenMetrics => {
            let secs: f64 = text.parse().map_err(|_| bad())?;
            if !secs.is_finite() {
                return Err(bad());
            }
            Ok((secs * 1000.0).round() as i64)
        }
    }
}

/// The kind of a sample of the current family (or untyped outside one); `None` for
/// OpenMetrics' `_created` series, which the text format does not have (a scrape
/// stores the same series whichever format the target chose).
fn kind_of(cx: LineContext<'_>, name: &str, labels: &[(String, String)]) -> Option<SampleKind> {
    let Some((family, kind)) = cx.family else {
        return Some(SampleKind::Gauge);
    };
    let suffix = match name.strip_prefix(family) {
        Some(s) => s,
        None => return Some(SampleKind::Gauge),
    };
    if suffix == "_created"
        && cx.format == Format::OpenMetrics
        && matches!(
            kind,
            FamilyType::Counter | FamilyType::Histogram | FamilyType::Summary
        )
    {
        return None;
    }
    Some(match (kind, suffix) {
        (FamilyType::Counter, "" | "_total") => SampleKind::Counter,
        (FamilyType::Histogram, "_bucket" | "_sum" | "_count" | "_gsum" | "_gcount") => {
            SampleKind::Counter
        }
        (FamilyType::Summary, "_sum" | "_count") => SampleKind::Counter,
        (FamilyType::Summary, "") if labels.iter().any(|(k, _)| k == "quantile") => {
            SampleKind::Gauge
        }
        _ => SampleKind::Gauge,
    })
}

/// Where a sample line's series text (`name` or `name{…}`) ends, by a scan that skips
/// quoted label values; `None` if it does not end. Only a shortcut: a series text is
/// trusted only after [`parse_sample`] read the same text in full.
pub(crate) fn series_text_len(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let name_end = bytes
        .iter()
        .position(|&b| matches!(b, b'{' | b' ' | b'\t'))?;
    if bytes[name_end] != b'{' {
        return Some(name_end);
    }
    let mut i = name_end + 1;
    let mut quoted = false;
    while i < bytes.len() {
        match (quoted, bytes[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => quoted = false,
            (false, b'"') => quoted = true,
            (false, b'}') => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphabetic() || b == b'_' || b == b':' || (i > 0 && b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(80).collect();
        Err(format!("{shown:?} is not a metric name"))
    }
}

/// Reads `label="value",…}` and returns what follows the `}`.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok(after);
        }
        let eq = text.find('=').ok_or("a label without '='")?;
        let name = text[..eq].trim();
        if name.is_empty()
            || name.len() > MAX_LABEL_BYTES
            || !name
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit()))
        {
            let shown: String = name.chars().take(80).collect();
            return Err(format!("{shown:?} is not a label name"));
        }
        let after = text[eq + 1..].trim_start();
        let after = after
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name}'s value is not quoted"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}'s value is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => {
                        return Err(format!("label {name}'s value has the unknown escape \\{c}"))
                    }
                    None => return Err(format!("label {name}'s value is not closed")),
                },
                Some((_, c)) => value.push(c),
            }
            if value.len() > MAX_LABEL_BYTES {
                return Err(format!(
                    "label {name}'s value is longer than {MAX_LABEL_BYTES} bytes"
                ));
            }
        };
        labels.push((name.to_string(), value));
        text = after[end + 1..].trim_start();
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        } else if !text.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name}"));
        }
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => {
            let plain = text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
            match text.parse::<f64>() {
                Ok(v) if plain => Ok(v),
                _ => Err(format!("{text:?} is not a sample value")),
            }
        }
    }
}

/// `name{a="b",…}` for messages.
pub fn display_series(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> Result<Vec<Sample>, ParseError> {
        parse(body, Format::Text, 10_000)
    }

    #[test]
    fn typed_families_give_each_sample_its_kind() {
        let body = "# HELP node_cpu_seconds_total Seconds.\n\
            # TYPE node_cpu_seconds_total counter\n\
            node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12345.67\n\
            # TYPE node_load1 gauge\n\
            node_load1 0.5\n\
            # TYPE rq histogram\n\
            rq_bucket{le=\"0.1\"} 3\n\
            rq_bucket{le=\"+Inf\"} 5\n\
            rq_sum 1.5\n\
            rq_count 5\n\
            # TYPE lat summary\n\
            lat{quantile=\"0.99\"} 0.2\n\
            lat_sum 7\n\
            lat_count 70\n\
            loose_metric 1\n";
        let s = text(body).unwrap();
        let kinds: Vec<(&str, SampleKind)> = s.iter().map(|s| (s.name.as_str(), s.kind)).collect();
        use SampleKind::*;
        assert_eq!(
            kinds,
            [
                ("node_cpu_seconds_total", Counter),
                ("node_load1", Gauge),
                ("rq_bucket", Counter),
                ("rq_bucket", Counter),
                ("rq_sum", Counter),
                ("rq_count", Counter),
                ("lat", Gauge),
                ("lat_sum", Counter),
                ("lat_count", Counter),
                ("loose_metric", Gauge),
            ]
        );
        assert_eq!(
            s[0].labels,
            [("cpu".into(), "0".into()), ("mode".into(), "idle".into())]
        );
        assert_eq!(s[3].labels, [("le".into(), "+Inf".into())]);
    }

    #[test]
    fn escapes_special_values_and_timestamps_are_read() {
        let body = "a{path=\"C:\\\\dir\",q=\"say \\\"hi\\\"\",nl=\"x\\ny\"} NaN 1700000000123\n\
                    b +Inf\nc -Inf\nd 1e3\ne{ z=\"1\" , y=\"2\" , } -0.5\n";
        let s = text(body).unwrap();
        assert_eq!(
            s[0].labels,
            [
                ("nl".into(), "x\ny".into()),
                ("path".into(), "C:\\dir".into()),
                ("q".into(), "say \"hi\"".into()),
            ]
        );
        assert!(s[0].value.is_nan());
        assert_eq!(s[0].timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(s[1].value, f64::INFINITY);
        assert_eq!(s[2].value, f64::NEG_INFINITY);
        assert_eq!(s[3].value, 1000.0);
        assert_eq!(s[4].labels[0].0, "y", "labels sorted by name");
        assert_eq!(s[4].value, -0.5);
    }

    #[test]
    fn openmetrics_needs_its_eof_reads_seconds_and_skips_exemplars() {
        let body = "# TYPE req counter\n# UNIT req requests\n\
                    req_total{code=\"200\"} 17 1700000000.5 # {trace_id=\"abc\"} 1 1700000000.1\n\
                    req_created{code=\"200\"} 1699999000\n\
                    # EOF\n";
        let s = parse(body, Format::OpenMetrics, 100).unwrap();
        assert_eq!(s[0].name, "req_total");
        assert_eq!(s[0].kind, SampleKind::Counter);
        assert_eq!(s[0].value, 17.0);
        assert_eq!(s[0].timestamp_ms, Some(1_700_000_000_500));
        assert_eq!(s.len(), 1, "`_created` is not a series of the text format");
        let cut = "# TYPE req counter\nreq_total 1\n";
        let err = parse(cut, Format::OpenMetrics, 100).unwrap_err();
        assert!(err.message.contains("EOF"), "{err}");
        let after = "a 1\n# EOF\nb 2\n";
        assert!(parse(after, Format::OpenMetrics, 100).is_err());
        assert_eq!(
            Format::from_content_type(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type(Some("text/plain; version=0.0.4")),
            Format::Text
        );
    }

    #[test]
    fn a_series_twice_is_a_bad_reply_even_with_labels_in_another_order() {
        let err = text("a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("appears twice"), "{err}");
        assert!(text("a{x=\"1\"} 1\na{x=\"2\"} 2\n").is_ok());
        assert!(text("a{x=\"1\",x=\"2\"} 1\n").is_err());
    }

    #[test]
    fn the_series_limit_and_label_lengths_are_enforced() {
        let body: String = (0..11).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
        assert_eq!(parse(&body, Format::Text, 11).unwrap().len(), 11);
        let err = parse(&body, Format::Text, 10).unwrap_err();
        assert!(err.message.contains("series_limit"), "{err}");
        let long = format!("m{{v=\"{}\"}} 1\n", "x".repeat(MAX_LABEL_BYTES + 1));
        assert!(text(&long).unwrap_err().message.contains("longer than"));
        let ok = format!("m{{v=\"{}\"}} 1\n", "x".repeat(MAX_LABEL_BYTES));
        assert!(text(&ok).is_ok());
    }

    #[test]
    fn malformed_lines_name_their_line() {
        for (body, line) in [
            ("a 1\nb{x=\"1\" 2\n", 2),
            ("a one\n", 1),
            ("a{x=1} 1\n", 1),
            ("1a 1\n", 1),
            ("a 1 2 3\n", 1),
            ("a{x=\"\\q\"} 1\n", 1),
            ("# TYPE a bogus\n", 1),
            ("a 0x10\n", 1),
        ] {
            let err = text(body).unwrap_err();
            assert_eq!(err.line, line, "{body:?}: {err}");
        }
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_ignored() {
        let s = text("# just a comment\r\n\r\n   \na 1\r\n#TYPE-ish\n").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].value, 1.0);
    }
}

//! Exposition samples mapped into the engine's [`MetricBatch`]: one entity per label
//! set (`metrics` for unlabelled series, `metrics/<label>=<value>,…` for labelled ones,
//! labels sorted by name, `%`, `/`, `,`, `=` and non-printable bytes of values
//! percent-encoded), the metric named as the sample (`node_cpu_seconds_total`,
//! `…_bucket`, `…_sum`), gauges and quantiles as GAUGE, counters, buckets, sums and
//! counts as DERIVE. A sample with its own timestamp is stored at it; one more than
//! [`MAX_FUTURE_SECS`] ahead of the scrape is dropped and counted.

use std::collections::HashMap;
use std::sync::Arc;

use fleetpoll_actors::{MetricBatch, MetricKind, MetricPoint, SeriesKey, UnixTime};

use super::parse::{Sample, SampleKind};
use crate::remote::MAX_FUTURE_SECS;

/// The entity of unlabelled series.
pub const UNLABELLED_ENTITY: &str = "metrics";

/// The entity a label set is stored under.
pub fn entity_of(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return UNLABELLED_ENTITY.to_string();
    }
    let mut out = String::from(UNLABELLED_ENTITY);
    out.push('/');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push('=');
        encode_value(value, &mut out);
    }
    out
}

fn encode_value(value: &str, out: &mut String) {
    for b in value.bytes() {
        if (0x20..0x7f).contains(&b) && !matches!(b, b'%' | b'/' | b',' | b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The time a sample is stored at: its own timestamp (milliseconds) or the scrape's;
/// `None` for one more than [`MAX_FUTURE_SECS`] ahead of the scrape (dropped, counted).
pub(crate) fn point_time(timestamp_ms: Option<i64>, scrape_time: UnixTime) -> Option<UnixTime> {
    let t = timestamp_ms.map_or(scrape_time, |ms| ms.div_euclid(1000));
    (t <= scrape_time + MAX_FUTURE_SECS).then_some(t)
}

/// The store's kind of a sample's kind.
pub(crate) fn metric_kind(kind: SampleKind) -> MetricKind {
    match kind {
        SampleKind::Gauge => MetricKind::Gauge,
        SampleKind::Counter => MetricKind::Derive,
    }
}

/// The batch one scrape at `scrape_time` (Unix seconds) yields.
pub fn to_batch(samples: Vec<Sample>, scrape_time: UnixTime) -> MetricBatch {
    let mut batch = MetricBatch::default();
    let mut entities: HashMap<Vec<(String, String)>, Arc<str>> = HashMap::new();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    batch.series.reserve(samples.len());
    batch.points.reserve(samples.len());
    for sample in samples {
        let Some(timestamp) = point_time(sample.timestamp_ms, scrape_time) else {
            batch.dropped_future += 1;
            continue;
        };
        let entity = match entities.get(&sample.labels) {
            Some(e) => e.clone(),
            None => {
                let e: Arc<str> = entity_of(&sample.labels).into();
                entities.insert(sample.labels, e.clone());
                e
            }
        };
        let metric = names
            .entry(sample.name)
            .or_insert_with_key(|n| n.as_str().into())
            .clone();
        let kind = metric_kind(sample.kind);
        batch.points.push(MetricPoint {
            series: batch.series.len() as u32,
            timestamp,
            value: sample.value,
        });
        batch.series.push(SeriesKey {
            entity,
            metric,
            kind,
        });
    }
    batch.points.sort_by_key(|p| p.timestamp);
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::parse::{parse, Format};

    #[test]
    fn entities_sort_labels_and_percent_encode_what_would_be_ambiguous() {
        let labels = vec![
            ("device".to_string(), "/dev/sda1".to_string()),
            ("mode".to_string(), "a=b,c%d\n\u{e9}".to_string()),
        ];
        assert_eq!(
            entity_of(&labels),
            "metrics/device=%2Fdev%2Fsda1,mode=a%3Db%2Cc%25d%0A%C3%A9"
        );
        assert_eq!(entity_of(&[]), "metrics");
        assert_eq!(
            entity_of(&[("le".into(), "+Inf".into())]),
            "metrics/le=+Inf",
            "the le label is kept"
        );
    }

    #[test]
    fn kinds_names_and_timestamps_map_as_the_store_expects() {
        let body = "# TYPE node_cpu_seconds_total counter\n\
            node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 10\n\
            node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 5\n\
            # TYPE node_load1 gauge\nnode_load1 0.25\n\
            # TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 0.5\nh_count 2\n\
            # TYPE s summary\ns{quantile=\"0.5\"} 0.1\ns_count 9\n\
            stamped 7 1699999990000\nfuture 1 1700000070000\n";
        let samples = parse(body, Format::Text, 100).unwrap();
        let batch = to_batch(samples, 1_700_000_000);
        assert_eq!(batch.dropped_future, 1, "70 s ahead is dropped");
        let rows: Vec<(String, String, MetricKind, i64, f64)> = batch
            .points
            .iter()
            .map(|p| {
                let k = &batch.series[p.series as usize];
                (
                    k.entity.to_string(),
                    k.metric.to_string(),
                    k.kind,
                    p.timestamp,
                    p.value,
                )
            })
            .collect();
        let find = |e: &str, m: &str| {
            rows.iter()
                .find(|r| r.0 == e && r.1 == m)
                .cloned()
                .unwrap_or_else(|| panic!("{e} {m} in {rows:?}"))
        };
        let cpu = find("metrics/cpu=0,mode=idle", "node_cpu_seconds_total");
        assert_eq!((cpu.2, cpu.4), (MetricKind::Derive, 10.0));
        assert_eq!(find("metrics", "node_load1").2, MetricKind::Gauge);
        assert_eq!(find("metrics/le=1", "h_bucket").2, MetricKind::Derive);
        assert_eq!(find("metrics", "h_sum").2, MetricKind::Derive);
        assert_eq!(find("metrics/quantile=0.5", "s").2, MetricKind::Gauge);
        assert_eq!(find("metrics", "s_count").2, MetricKind::Derive);
        assert_eq!(find("metrics", "stamped").3, 1_699_999_990);
        assert_eq!(find("metrics", "node_load1").3, 1_700_000_000);
        assert!(batch
            .points
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp));
    }
}

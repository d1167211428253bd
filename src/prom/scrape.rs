//! A target's series remembered across scrapes, so that a scrape of a steady target
//! allocates nothing per sample. The first time a series text (`name{labels}` exactly
//! as the target writes it) is seen, its line is read in full by the parser and its
//! entity and metric names are interned; later scrapes find the text in a hash map and
//! read only the value and timestamp. Duplicates are found by stamping each series with
//! the scrape's number instead of collecting keys. The batch is the one
//! [`to_batch`](super::mapping::to_batch) makes from [`parse`](super::parse::parse)
//! (the tests and the fuzz target compare them).
//!
//! The cache holds at most about twice the series limit; a target whose series churn
//! past that starts a fresh one.

use std::sync::Arc;

use fleetpoll_actors::{MetricBatch, MetricKind, MetricPoint, SeriesKey, UnixTime};
use rustc_hash::{FxHashMap, FxHashSet};

use super::mapping::{entity_of, metric_kind, point_time};
use super::parse::{
    duplicate, over_limit, parse_sample, read_lines, series_text_len, value_part, FamilyType,
    Format, LineContext, ParseError, SampleSink,
};

/// The family id of samples outside any `# TYPE` family.
const NO_FAMILY: u32 = u32::MAX;

/// One series text as a target writes it, under one family and format.
struct Text {
    /// The body's format (OpenMetrics drops `_created` series, the text format keeps them).
    format: Format,
    /// The family it was typed under (`kind` depends on it), an index in `families`.
    family: u32,
    /// The series (its index in `Series`) and its kind under this family, or `None` for
    /// one the store does not keep.
    series: Option<(u32, MetricKind)>,
}

/// One series: what the store calls it, and the last scrape that saw it.
struct Series {
    entity: Arc<str>,
    metric: Arc<str>,
    seen_in: u64,
}

/// The series of one target, across its scrapes.
#[derive(Default)]
pub struct SeriesCache {
    texts: FxHashMap<Box<str>, Text>,
    series: Vec<Series>,
    /// Series identity → index in `series`. The entity names the sorted label set one to
    /// one (values are percent-encoded), so a series is its interned metric and entity,
    /// keyed here by the two `Arc`s' addresses (they live as long as the cache).
    by_key: FxHashMap<(usize, usize), u32>,
    entities: FxHashSet<Arc<str>>,
    metrics: FxHashSet<Arc<str>>,
    /// Families (name, type) seen → their ids.
    family_ids: FxHashMap<(Box<str>, FamilyType), u32>,
    scrape: u64,
}

impl std::fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesCache")
            .field("texts", &self.texts.len())
            .field("series", &self.series.len())
            .finish()
    }
}

impl SeriesCache {
    /// An empty cache.
    pub fn new() -> SeriesCache {
        SeriesCache::default()
    }

    /// Series remembered.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// One scrape's body read into the batch stored at `scrape_time`, at most
    /// `series_limit` series.
    pub fn read(
        &mut self,
        body: &str,
        format: Format,
        series_limit: usize,
        scrape_time: UnixTime,
    ) -> Result<MetricBatch, ParseError> {
        if self.texts.len() > 2 * series_limit + 1024 {
            *self = SeriesCache::default();
        }
        self.scrape += 1;
        let mut sink = Scrape {
            cache: self,
            batch: MetricBatch::default(),
            series_limit,
            scrape_time,
            taken: 0,
            last_family: None,
        };
        read_lines(body, format, &mut sink)?;
        let mut batch = sink.batch;
        batch.points.sort_by_key(|p| p.timestamp);
        Ok(batch)
    }
}

/// One scrape in progress.
struct Scrape<'c> {
    cache: &'c mut SeriesCache,
    batch: MetricBatch,
    series_limit: usize,
    scrape_time: UnixTime,
    /// Samples accepted so far (the limit counts them, future ones included).
    taken: usize,
    /// The last family seen, by the address and length of its name in the body (all
    /// samples under one `# TYPE` line share it), and its id.
    last_family: Option<(usize, usize, FamilyType, u32)>,
}

impl Scrape<'_> {
    /// The series of a text not seen before under this family, from a full read.
    /// Returns the length of the line's series text and the series.
    fn learn(
        &mut self,
        line: &str,
        cx: LineContext<'_>,
    ) -> Result<(usize, Option<(u32, MetricKind)>), String> {
        let (len, sample) = parse_sample(line, cx)?;
        let family = self.family_id(cx);
        let cache = &mut *self.cache;
        let series = match sample {
            None => None,
            Some(sample) => {
                let entity = intern(&mut cache.entities, entity_of(&sample.labels));
                let metric = intern(&mut cache.metrics, sample.name);
                let key = (address(&metric), address(&entity));
                let i = match cache.by_key.get(&key) {
                    Some(&i) => i,
                    None => {
                        let i = cache.series.len() as u32;
                        cache.series.push(Series {
                            entity,
                            metric,
                            seen_in: 0,
                        });
                        cache.by_key.insert(key, i);
                        i
                    }
                };
                // The kind belongs to the text under its family, not to the series.
                Some((i, metric_kind(sample.kind)))
            }
        };
        // Remember the text only where the shortcut scan ends it where the parser did.
        if series_text_len(line) == Some(len) {
            cache.texts.insert(
                Box::from(&line[..len]),
                Text {
                    format: cx.format,
                    family,
                    series,
                },
            );
        }
        Ok((len, series))
    }

    /// The id of the family a line is read under.
    fn family_id(&mut self, cx: LineContext<'_>) -> u32 {
        let Some((name, kind)) = cx.family else {
            return NO_FAMILY;
        };
        let at = (name.as_ptr() as usize, name.len());
        if let Some((p, l, k, id)) = self.last_family {
            if (p, l, k) == (at.0, at.1, kind) {
                return id;
            }
        }
        let cache = &mut *self.cache;
        let key = (Box::from(name), kind);
        let id = match cache.family_ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = cache.family_ids.len() as u32;
                cache.family_ids.insert(key, id);
                id
            }
        };
        self.last_family = Some((at.0, at.1, kind, id));
        id
    }
}

/// The address of an interned name: its identity within one cache.
fn address(name: &Arc<str>) -> usize {
    Arc::as_ptr(name) as *const u8 as usize
}

fn intern(set: &mut FxHashSet<Arc<str>>, text: String) -> Arc<str> {
    if let Some(a) = set.get(text.as_str()) {
        return a.clone();
    }
    let a: Arc<str> = Arc::from(text);
    set.insert(a.clone());
    a
}

impl SampleSink for Scrape<'_> {
    fn sample(&mut self, line: &str, cx: LineContext<'_>) -> Result<(), String> {
        let family = self.family_id(cx);
        let known = series_text_len(line).and_then(|len| {
            let text = self.cache.texts.get(&line[..len])?;
            (text.family == family && text.format == cx.format).then_some((len, text.series))
        });
        let (len, series) = match known {
            Some(known) => known,
            None => self.learn(line, cx)?,
        };
        let (value, timestamp_ms) = value_part(&line[len..], cx.format)?;
        let Some((series, kind)) = series else {
            return Ok(());
        };
        let scrape = self.cache.scrape;
        let s = &mut self.cache.series[series as usize];
        if s.seen_in == scrape {
            let (_, sample) = parse_sample(line, cx)?;
            let (name, labels) = sample.map(|s| (s.name, s.labels)).unwrap_or_default();
            return Err(duplicate(&name, &labels));
        }
        if self.taken >= self.series_limit {
            return Err(over_limit(self.series_limit));
        }
        s.seen_in = scrape;
        self.taken += 1;
        let Some(timestamp) = point_time(timestamp_ms, self.scrape_time) else {
            self.batch.dropped_future += 1;
            return Ok(());
        };
        self.batch.points.push(MetricPoint {
            series: self.batch.series.len() as u32,
            timestamp,
            value,
        });
        self.batch.series.push(SeriesKey {
            entity: s.entity.clone(),
            metric: s.metric.clone(),
            kind,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::mapping::to_batch;
    use crate::prom::parse::parse;

    const NOW: UnixTime = 1_700_000_000;

    /// The batch's rows in order, for comparing the two paths.
    fn rows(b: &MetricBatch) -> Vec<(String, String, MetricKind, i64, String)> {
        b.points
            .iter()
            .map(|p| {
                let k = &b.series[p.series as usize];
                let v = format!("{:?}", p.value);
                (
                    k.entity.to_string(),
                    k.metric.to_string(),
                    k.kind,
                    p.timestamp,
                    v,
                )
            })
            .collect()
    }

    /// The cached read agrees with parse + to_batch: the first time, and again from a
    /// cache that has seen other bodies.
    fn agrees(cache: &mut SeriesCache, body: &str, format: Format, limit: usize) {
        let plain = parse(body, format, limit).map(|s| to_batch(s, NOW));
        let cached = cache.read(body, format, limit, NOW);
        match (plain, cached) {
            (Ok(p), Ok(c)) => {
                assert_eq!(rows(&p), rows(&c), "{body:?}");
                assert_eq!(p.dropped_future, c.dropped_future);
            }
            (Err(p), Err(c)) => assert_eq!(p, c, "{body:?}"),
            (p, c) => panic!("{body:?}: plain {p:?}, cached {c:?}"),
        }
    }

    const BODIES: &[&str] = &[
        "# TYPE node_cpu_seconds_total counter\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 10\n\
         node_cpu_seconds_total{mode=\"user\",cpu=\"0\"} 5\n\
         # TYPE node_load1 gauge\nnode_load1 0.25\n",
        "# TYPE node_cpu_seconds_total counter\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 11\n\
         node_cpu_seconds_total{mode=\"user\",cpu=\"0\"} 6\n\
         # TYPE node_load1 gauge\nnode_load1 NaN\n",
        // The same texts under other families: kinds follow the new TYPE lines.
        "# TYPE node_cpu_seconds_total gauge\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12\n\
         node_load1 +Inf\n",
        // Escapes, a brace inside a value, timestamps, one in the future.
        "esc{path=\"a\\\"}b\\\\c\\n\"} 1 1699999990000\nesc{path=\"x\"} 2 1700000070000\n",
        // The same series written two ways is a duplicate, however it is cached.
        "node_load1 1\nnode_load1{} 2\n",
        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 10\n\
         node_cpu_seconds_total{mode=\"idle\",cpu=\"0\"} 10\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 # {trace_id=\"a\"} 1\nh_sum 2\nh_count 1\n\
         h_created 5\n# EOF\n",
        "bad value here\n",
        "unclosed{a=\"b} 1\n",
        "a 1\nb 2\nc 3\nd 4\n",
    ];

    #[test]
    fn the_cached_read_yields_what_parse_and_to_batch_yield() {
        let mut cache = SeriesCache::new();
        for round in 0..3 {
            for (i, body) in BODIES.iter().enumerate() {
                for format in [Format::Text, Format::OpenMetrics] {
                    agrees(&mut cache, body, format, 3);
                    agrees(&mut cache, body, format, 10_000);
                    let _ = (round, i);
                }
            }
        }
        assert!(!cache.is_empty());
    }

    #[test]
    fn a_steady_target_reuses_its_interned_names() {
        let mut cache = SeriesCache::new();
        let first = cache.read(BODIES[0], Format::Text, 100, NOW).unwrap();
        let second = cache.read(BODIES[1], Format::Text, 100, NOW + 15).unwrap();
        for (a, b) in first.series.iter().zip(&second.series) {
            assert!(Arc::ptr_eq(&a.entity, &b.entity), "entity {}", a.entity);
            assert!(Arc::ptr_eq(&a.metric, &b.metric), "metric {}", a.metric);
        }
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_churning_target_does_not_grow_the_cache_without_bound() {
        let mut cache = SeriesCache::new();
        for scrape in 0..100 {
            let body: String = (0..50)
                .map(|i| format!("m{{id=\"{scrape}-{i}\"}} 1\n"))
                .collect();
            cache.read(&body, Format::Text, 10, NOW).unwrap_err();
            cache.read(&body, Format::Text, 50, NOW).unwrap();
            assert!(cache.texts.len() <= 2 * 50 + 1024 + 50);
        }
    }
}

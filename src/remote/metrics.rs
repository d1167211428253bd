//! Parsing the metric export reply of PVE (`/cluster/metrics/export`) and PBS
//! (`/status/metrics`) straight into a [`MetricBatch`].
//!
//! The reply is `{"data":[{"timestamp":…,"id":…,"metric":…,"value":…,"type":…},…]}`.
//! The parser streams over the points with serde visitors, borrows every string from the
//! reply and interns `(id, metric, type)` into a series index, so a point costs a hash
//! lookup and a push; only the first point of each series allocates. A byte scanner
//! (`metrics_scan`) takes the canonical shape faster and hands anything unusual back
//! to the serde parser, which stays the reference and writes the error messages.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use fleetpoll_actors::{
    ErrorClass, MetricBatch, MetricKind, MetricPoint, RemoteId, SeriesKey, SourceError, UnixTime,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::metrics_scan::scan;

/// Points dated more than this many seconds after the request time are dropped: one
/// future point would otherwise hold back every later point of its series.
pub const MAX_FUTURE_SECS: i64 = 60;

/// How many bytes of the reply an error message quotes around the fault.
const EXCERPT_BYTES: usize = 60;

/// Parses a metric export reply of `remote`, requested at `request_time`, as
/// [`parse_dated_metric_reply`] for a reply without a `Date` header.
pub fn parse_metric_reply(
    remote: &RemoteId,
    body: &[u8],
    request_time: UnixTime,
) -> Result<MetricBatch, SourceError> {
    parse_dated_metric_reply(remote, body, request_time, None)
}

/// Parses a metric export reply of `remote`, requested at `request_time`, whose `Date`
/// header (if it had a readable one) said `date`.
///
/// Points more than [`MAX_FUTURE_SECS`] after `request_time` are dropped and counted in
/// [`MetricBatch::dropped_future`]. A reply that is not the promised JSON gives a
/// [`ErrorClass::BadReply`] error naming the remote and quoting the reply near the fault.
/// A reply that leaves nothing to store while the remote's clock is ahead — all its
/// points in the future, or its `Date` more than [`MAX_FUTURE_SECS`] ahead — gives an
/// [`ErrorClass::Clock`] error with the offset: measured by the `Date` header where it
/// shows the skew, else estimated from the newest point.
pub fn parse_dated_metric_reply(
    remote: &RemoteId,
    body: &[u8],
    request_time: UnixTime,
    date: Option<UnixTime>,
) -> Result<MetricBatch, SourceError> {
    let (batch, newest_future) = match scanned_with_future(body, request_time) {
        Some(parsed) => parsed,
        None => parse_with_serde_and_future(remote, body, request_time)?,
    };
    refuse_clock_skew(remote, &batch, newest_future, request_time, date)?;
    Ok(batch)
}

/// A reply that stores nothing from a remote whose clock is ahead: storing nothing and
/// calling it a success would show the remote as `ok` forever.
fn refuse_clock_skew(
    remote: &RemoteId,
    batch: &MetricBatch,
    newest_future: Option<UnixTime>,
    request_time: UnixTime,
    date: Option<UnixTime>,
) -> Result<(), SourceError> {
    if !batch.points.is_empty() {
        return Ok(());
    }
    let by_date = date
        .map(|d| d.saturating_sub(request_time))
        .filter(|&ahead| ahead > MAX_FUTURE_SECS);
    let (ahead, source) = match (by_date, newest_future) {
        (Some(ahead), _) => (ahead, "by the Date header of its reply"),
        (None, Some(newest)) => (newest - request_time, "judging by its newest point"),
        (None, None) => return Ok(()),
    };
    let points = match batch.dropped_future {
        0 => "the reply holds no point".to_string(),
        n => format!("all {n} points of the reply are dated after the request"),
    };
    Err(SourceError::new(
        ErrorClass::Clock,
        format!(
            "remote {remote}: its clock is about {ahead} s ahead ({source}) — {points}; set \
             the remote's time right (NTP)"
        ),
    ))
}

/// The reference parser: serde visitors over the whole reply.
#[cfg(test)]
pub(super) fn parse_with_serde(
    remote: &RemoteId,
    body: &[u8],
    request_time: UnixTime,
) -> Result<MetricBatch, SourceError> {
    parse_with_serde_and_future(remote, body, request_time).map(|(batch, _)| batch)
}

pub(crate) fn parse_with_serde_and_future(
    remote: &RemoteId,
    body: &[u8],
    request_time: UnixTime,
) -> Result<(MetricBatch, Option<UnixTime>), SourceError> {
    let mut builder = Builder::new(body, request_time);
    let mut de = serde_json::Deserializer::from_slice(body);
    ReplySeed(&mut builder)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|err| bad_json(remote, body, &err))?;
    Ok((builder.batch, builder.newest_future))
}

/// The fast path: the scanner's batch, if the reply has the canonical shape.
#[cfg(test)]
pub(super) fn scanned(body: &[u8], request_time: UnixTime) -> Option<MetricBatch> {
    scanned_with_future(body, request_time).map(|(batch, _)| batch)
}

pub(crate) fn scanned_with_future(
    body: &[u8],
    request_time: UnixTime,
) -> Option<(MetricBatch, Option<UnixTime>)> {
    let mut builder = Builder::new(body, request_time);
    scan(body, &mut builder)?;
    Some((builder.batch, builder.newest_future))
}

/// Builds the `BadReply` error for a JSON error, quoting the reply around its position.
pub(crate) fn bad_json(remote: &RemoteId, body: &[u8], err: &serde_json::Error) -> SourceError {
    let offset = byte_offset(body, err.line(), err.column());
    SourceError::new(
        ErrorClass::BadReply,
        format!(
            "remote {remote}: malformed reply ({err}) near {}",
            excerpt(body, offset)
        ),
    )
}

/// The byte offset of a 1-based line and column as serde_json reports them.
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match body[start..].iter().position(|&b| b == b'\n') {
            Some(nl) => start += nl + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(body.len())
}

/// A short, printable quote of `body` around `offset`.
pub(crate) fn excerpt(body: &[u8], offset: usize) -> String {
    let from = offset.saturating_sub(EXCERPT_BYTES / 2);
    let to = (from + EXCERPT_BYTES).min(body.len());
    let text = String::from_utf8_lossy(&body[from..to]);
    format!("byte {offset}: {text:?}")
}

/// A small, fast hasher for the interning maps (FxHash's mixing step): the keys are
/// short names from a remote we already authenticated, so hash flooding is no concern.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ rest.len() as u64);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// The state of one parse: the interning maps and the batch being filled.
pub(super) struct Builder<'de> {
    series: HashMap<(Cow<'de, str>, Cow<'de, str>, MetricKind), u32, FxBuild>,
    metrics: HashMap<Cow<'de, str>, Arc<str>, FxBuild>,
    batch: MetricBatch,
    newest_allowed: UnixTime,
    /// The newest of the dropped future points.
    newest_future: Option<UnixTime>,
    /// The series the next point most likely belongs to: every generation lists the
    /// series in the same order, so after the first one the series follow each other.
    guess: usize,
}

impl<'de> Builder<'de> {
    fn new(body: &[u8], request_time: UnixTime) -> Self {
        let mut batch = MetricBatch::default();
        // A point takes about 90 bytes of JSON; reserving avoids regrowing a large vector.
        batch.points.reserve(body.len() / 96);
        Builder {
            series: HashMap::default(),
            metrics: HashMap::default(),
            batch,
            newest_allowed: request_time.saturating_add(MAX_FUTURE_SECS),
            newest_future: None,
            guess: 0,
        }
    }

    /// Adds one point, interning its series; drops it if it lies too far ahead.
    #[inline]
    pub(super) fn push(
        &mut self,
        id: Cow<'de, str>,
        metric: Cow<'de, str>,
        kind: MetricKind,
        timestamp: UnixTime,
        value: f64,
    ) {
        if timestamp > self.newest_allowed {
            self.batch.dropped_future += 1;
            self.newest_future = self.newest_future.max(Some(timestamp));
            return;
        }
        let guessed = self
            .batch
            .series
            .get(self.guess)
            .filter(|key| key.kind == kind && *key.entity == *id && *key.metric == *metric);
        let series = match guessed {
            Some(_) => self.guess as u32,
            None => match self.series.get(&(id.clone(), metric.clone(), kind)) {
                Some(&index) => index,
                None => self.new_series(id, metric, kind),
            },
        };
        self.guess = series as usize + 1;
        if self.guess == self.batch.series.len() {
            self.guess = 0;
        }
        self.batch.points.push(MetricPoint {
            series,
            timestamp,
            value,
        });
    }

    #[cold]
    fn new_series(&mut self, id: Cow<'de, str>, metric: Cow<'de, str>, kind: MetricKind) -> u32 {
        let index = self.batch.series.len() as u32;
        let metric_name = self
            .metrics
            .entry(metric.clone())
            .or_insert_with(|| Arc::from(&*metric))
            .clone();
        self.batch.series.push(SeriesKey {
            entity: Arc::from(&*id),
            metric: metric_name,
            kind,
        });
        self.series.insert((id, metric, kind), index);
        index
    }
}

/// The top-level object: only `data` matters.
struct ReplySeed<'a, 'de>(&'a mut Builder<'de>);

impl<'de> DeserializeSeed<'de> for ReplySeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReplySeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a \"data\" array of metric points")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_data = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "data" {
                map.next_value_seed(DataSeed(&mut *self.0))?;
                seen_data = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if seen_data {
            Ok(())
        } else {
            Err(de::Error::missing_field("data"))
        }
    }
}

/// The `data` member: an array of points, or `null` for none.
struct DataSeed<'a, 'de>(&'a mut Builder<'de>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of metric points")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(hint) = seq.size_hint() {
            self.0.batch.points.reserve(hint);
        }
        while seq.next_element_seed(PointSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One point object; pushed into the builder once all five members are read.
struct PointSeed<'a, 'de>(&'a mut Builder<'de>);

impl<'de> DeserializeSeed<'de> for PointSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// The members of a point.
enum Field {
    Timestamp,
    Id,
    Metric,
    Value,
    Type,
    Other,
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metric point member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "timestamp" => Field::Timestamp,
                    "id" => Field::Id,
                    "metric" => Field::Metric,
                    "value" => Field::Value,
                    "type" => Field::Type,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

/// A string borrowed from the reply when it has no escapes, owned otherwise.
struct Text<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The `type` member.
struct Kind(MetricKind);

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"gauge\", \"counter\" or \"derive\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
                match v {
                    "gauge" => Ok(Kind(MetricKind::Gauge)),
                    "counter" => Ok(Kind(MetricKind::Counter)),
                    "derive" => Ok(Kind(MetricKind::Derive)),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_str(KindVisitor)
    }
}

impl<'de> Visitor<'de> for PointSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metric point object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut timestamp = None;
        let mut id = None;
        let mut metric = None;
        let mut value = None;
        let mut kind = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Timestamp => timestamp = Some(map.next_value::<i64>()?),
                Field::Id => id = Some(map.next_value::<Text<'de>>()?.0),
                Field::Metric => metric = Some(map.next_value::<Text<'de>>()?.0),
                Field::Value => value = Some(map.next_value::<f64>()?),
                Field::Type => kind = Some(map.next_value::<Kind>()?.0),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let timestamp = timestamp.ok_or_else(|| de::Error::missing_field("timestamp"))?;
        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        let metric = metric.ok_or_else(|| de::Error::missing_field("metric"))?;
        let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        self.0.push(id, metric, kind, timestamp, value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> RemoteId {
        RemoteId::new("lab")
    }

    #[test]
    fn points_of_the_same_series_share_one_series_entry() {
        let body = br#"{"data":[
            {"timestamp":100,"id":"node/pve1","metric":"cpu_current","value":0.5,"type":"gauge"},
            {"timestamp":100,"id":"qemu/100","metric":"net_in","value":12345,"type":"derive"},
            {"timestamp":110,"id":"node/pve1","metric":"cpu_current","value":0.25,"type":"gauge"},
            {"type":"derive","value":12400,"metric":"net_in","id":"qemu/100","timestamp":110}
        ]}"#;
        let batch = parse_metric_reply(&remote(), body, 200).unwrap();
        assert_eq!(batch.series.len(), 2);
        assert_eq!(&*batch.series[0].entity, "node/pve1");
        assert_eq!(&*batch.series[0].metric, "cpu_current");
        assert_eq!(batch.series[0].kind, MetricKind::Gauge);
        assert_eq!(batch.series[1].kind, MetricKind::Derive);
        let got: Vec<(u32, i64, f64)> = batch
            .points
            .iter()
            .map(|p| (p.series, p.timestamp, p.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 100, 0.5),
                (1, 100, 12345.0),
                (0, 110, 0.25),
                (1, 110, 12400.0)
            ]
        );
        assert_eq!(batch.dropped_future, 0);
    }

    #[test]
    fn the_same_metric_name_under_another_kind_is_another_series() {
        let body = br#"{"data":[
            {"timestamp":1,"id":"a","metric":"m","value":1,"type":"gauge"},
            {"timestamp":1,"id":"a","metric":"m","value":1,"type":"counter"},
            {"timestamp":1,"id":"b","metric":"m","value":1,"type":"gauge"}]}"#;
        let batch = parse_metric_reply(&remote(), body, 10).unwrap();
        assert_eq!(batch.series.len(), 3);
        assert!(Arc::ptr_eq(
            &batch.series[0].metric,
            &batch.series[2].metric
        ));
    }

    #[test]
    fn points_more_than_a_minute_ahead_are_dropped_and_counted() {
        let body = br#"{"data":[
            {"timestamp":1060,"id":"a","metric":"m","value":1,"type":"gauge"},
            {"timestamp":1061,"id":"a","metric":"m","value":2,"type":"gauge"},
            {"timestamp":5000,"id":"b","metric":"m","value":3,"type":"gauge"}]}"#;
        let batch = parse_metric_reply(&remote(), body, 1000).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.points[0].timestamp, 1060);
        assert_eq!(batch.dropped_future, 2);
    }

    #[test]
    fn escaped_strings_and_unknown_members_are_accepted() {
        let body = br#"{"extra":{"x":[1,2]},"data":[
            {"timestamp":1,"id":"storage/pve1/my\u002dstore","metric":"disk_used","value":1e3,"type":"gauge","unit":"bytes"}]}"#;
        let batch = parse_metric_reply(&remote(), body, 10).unwrap();
        assert_eq!(&*batch.series[0].entity, "storage/pve1/my-store");
        assert_eq!(batch.points[0].value, 1000.0);
    }

    #[test]
    fn an_empty_reply_dated_an_hour_ahead_is_a_clock_error_and_one_dated_now_is_not() {
        let err =
            parse_dated_metric_reply(&remote(), br#"{"data":[]}"#, 1000, Some(4600)).unwrap_err();
        assert_eq!(err.class, ErrorClass::Clock);
        assert!(
            err.message
                .contains("about 3600 s ahead (by the Date header"),
            "{}",
            err.message
        );
        let batch = parse_dated_metric_reply(&remote(), br#"{"data":[]}"#, 1000, Some(1001));
        assert!(batch.unwrap().is_empty());
    }

    #[test]
    fn null_or_empty_data_is_an_empty_batch() {
        assert!(parse_metric_reply(&remote(), br#"{"data":null}"#, 0)
            .unwrap()
            .is_empty());
        assert!(parse_metric_reply(&remote(), br#"{"data":[]}"#, 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_reply_is_bad_reply_naming_remote_and_quoting_it() {
        let body =
            br#"{"data":[{"timestamp":1,"id":"a","metric":"m","value":oops,"type":"gauge"}]}"#;
        let err = parse_metric_reply(&remote(), body, 0).unwrap_err();
        assert_eq!(err.class, ErrorClass::BadReply);
        assert!(err.message.contains("remote lab"), "{}", err.message);
        assert!(err.message.contains("oops"), "{}", err.message);
    }

    #[test]
    fn schema_violations_are_bad_replies() {
        for body in [
            &br#"<html>502 Bad Gateway</html>"#[..],
            br#"{"data":[{"timestamp":1,"id":"a","metric":"m","value":1,"type":"histogram"}]}"#,
            br#"{"data":[{"timestamp":1,"id":"a","value":1,"type":"gauge"}]}"#,
            br#"{"nodata":[]}"#,
            br#"{"data":[]} trailing"#,
            br#"{"data":[{"timestamp":1,"id":"a","metric":"m","value":1,"type":"gauge"}"#,
        ] {
            let err = parse_metric_reply(&remote(), body, 0).unwrap_err();
            assert_eq!(err.class, ErrorClass::BadReply, "{body:?}");
        }
    }
}

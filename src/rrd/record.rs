//! The payload of one journal record: a remote's metric batch in a compact binary
//! encoding (about 13 bytes per point; see `docs/rrd-format.md`, "Journal"). Records
//! written as JSON by earlier versions (payload starting with `{`) are still read.

use std::sync::Arc;

use fleetpoll_actors::{MetricBatch, MetricKind, MetricPoint, RemoteId, SeriesKey};
use serde::{Deserialize, Serialize};

/// The first byte of a binary record.
const BINARY_V1: u8 = 1;

/// The JSON form of earlier versions.
#[derive(Serialize, Deserialize)]
struct JsonRecord {
    remote: RemoteId,
    batch: MetricBatch,
}

/// Encodes a remote's batch as a record payload.
#[cfg(test)]
pub(crate) fn encode(remote: &RemoteId, batch: &MetricBatch) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, remote, batch);
    out
}

/// Appends a remote's batch to `out` as a record payload (straight into the journal's
/// write buffer: no record is built on its own first).
pub(crate) fn encode_into(out: &mut Vec<u8>, remote: &RemoteId, batch: &MetricBatch) {
    out.reserve(64 + batch.series.len() * 32 + batch.points.len() * 13);
    out.push(BINARY_V1);
    put_str(out, remote.as_str());
    put_varint(out, batch.series.len() as u64);
    for key in &batch.series {
        out.push(match key.kind {
            MetricKind::Gauge => 0,
            MetricKind::Counter => 1,
            MetricKind::Derive => 2,
        });
        put_str(out, &key.entity);
        put_str(out, &key.metric);
    }
    put_varint(out, batch.dropped_future);
    put_varint(out, batch.points.len() as u64);
    let mut previous = 0i64;
    for point in &batch.points {
        put_varint(out, u64::from(point.series));
        let delta = point.timestamp.wrapping_sub(previous);
        put_varint(out, ((delta << 1) ^ (delta >> 63)) as u64);
        previous = point.timestamp;
        out.extend_from_slice(&point.value.to_le_bytes());
    }
}

/// Decodes a record payload (binary, or JSON from an earlier version).
pub(crate) fn decode(payload: &[u8]) -> Result<(RemoteId, MetricBatch), String> {
    match payload.first() {
        Some(b'{') => serde_json::from_slice::<JsonRecord>(payload)
            .map(|r| (r.remote, r.batch))
            .map_err(|err| format!("a JSON record does not parse: {err}")),
        Some(&BINARY_V1) => decode_binary(&payload[1..]),
        Some(other) => Err(format!("unknown record version {other}")),
        None => Err("an empty record".to_string()),
    }
}

fn decode_binary(bytes: &[u8]) -> Result<(RemoteId, MetricBatch), String> {
    let mut r = Reader { bytes, pos: 0 };
    let remote = RemoteId::new(r.str()?);
    let series_count = r.count()?;
    let mut series = Vec::with_capacity(series_count);
    for _ in 0..series_count {
        let kind = match r.byte()? {
            0 => MetricKind::Gauge,
            1 => MetricKind::Counter,
            2 => MetricKind::Derive,
            other => return Err(format!("unknown metric kind {other}")),
        };
        let entity: Arc<str> = Arc::from(r.str()?);
        let metric: Arc<str> = Arc::from(r.str()?);
        series.push(SeriesKey {
            entity,
            metric,
            kind,
        });
    }
    let dropped_future = r.varint()?;
    let point_count = r.count()?;
    let mut points = Vec::with_capacity(point_count);
    let mut previous = 0i64;
    for _ in 0..point_count {
        let index = u32::try_from(r.varint()?).map_err(|_| "a series index overflows")?;
        let zigzag = r.varint()?;
        let delta = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
        let timestamp = previous.wrapping_add(delta);
        previous = timestamp;
        let value = f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
        points.push(MetricPoint {
            series: index,
            timestamp,
            value,
        });
    }
    if r.pos != bytes.len() {
        return Err("trailing bytes after the points".to_string());
    }
    Ok((
        remote,
        MetricBatch {
            series,
            points,
            dropped_future,
        },
    ))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let slice = self
            .bytes
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| "the record ends early".to_string())?;
        self.pos += n;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("a number is too long".to_string())
    }

    /// A count of items, bounded by the bytes left (each item takes at least one).
    fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len() - self.pos)
            .ok_or_else(|| format!("a count of {n} exceeds the record"))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let len = self.count()?;
        std::str::from_utf8(self.take(len)?).map_err(|_| "a name is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> MetricBatch {
        let key = |entity: &str, metric: &str, kind| SeriesKey {
            entity: Arc::from(entity),
            metric: Arc::from(metric),
            kind,
        };
        MetricBatch {
            series: vec![
                key("node/pve1", "cpu_current", MetricKind::Gauge),
                key("qemu/100", "net_in", MetricKind::Derive),
                key("qemu/100", "wraps", MetricKind::Counter),
            ],
            points: vec![
                MetricPoint {
                    series: 0,
                    timestamp: 1_700_000_000,
                    value: 0.25,
                },
                MetricPoint {
                    series: 1,
                    timestamp: 1_700_000_000,
                    value: 1e18,
                },
                MetricPoint {
                    series: 2,
                    timestamp: 1_699_999_990,
                    value: f64::NAN,
                },
                MetricPoint {
                    series: 0,
                    timestamp: -5,
                    value: -1.5,
                },
            ],
            dropped_future: 3,
        }
    }

    /// Batches compared through their debug form (NaN is not equal to itself).
    fn same(a: &MetricBatch, b: &MetricBatch) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn a_batch_round_trips_through_the_binary_record() {
        let remote = RemoteId::new("lab");
        let payload = encode(&remote, &batch());
        let (back_remote, back) = decode(&payload).unwrap();
        assert_eq!(back_remote, remote);
        assert!(same(&back, &batch()), "{back:?}");
        assert!(payload.len() < 4 * 13 + 80, "{} bytes", payload.len());
    }

    #[test]
    fn json_records_of_earlier_versions_are_still_read() {
        let mut b = batch();
        b.points[2].value = 7.0; // JSON has no NaN
        let json = serde_json::to_vec(&JsonRecord {
            remote: RemoteId::new("lab"),
            batch: b.clone(),
        })
        .unwrap();
        let (remote, back) = decode(&json).unwrap();
        assert_eq!(remote, RemoteId::new("lab"));
        assert!(same(&back, &b));
    }

    #[test]
    fn a_truncated_or_unknown_record_is_an_error_not_a_panic() {
        let payload = encode(&RemoteId::new("lab"), &batch());
        for len in 0..payload.len() {
            assert!(decode(&payload[..len]).is_err(), "cut at {len}");
        }
        assert!(decode(&[9, 0]).is_err());
    }
}

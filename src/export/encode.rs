//! Turning stored batches into each kind's wire format. An [`Encoder`] takes batches
//! one at a time and hands out sealed [`Chunk`]s of at most `batch_max_points` points:
//! text lines for Graphite, InfluxDB and statsd, a snappy-compressed protobuf
//! `WriteRequest` for remote write.

use std::collections::BTreeMap;
use std::fmt::Write;

use bytes::Bytes;
use fleetpoll_actors::HookBatch;
use tokio::time::Instant;

use super::names::{
    entity_kind, exported_value, graphite_path, prometheus_name, push_influx_escaped, push_value,
    selected_series,
};
use super::remote_write::{Label, PbSample, TimeSeries, WriteRequest};
use super::spec::{ExportKind, ExporterSpec, Target};

/// A UDP datagram stays below this (the internet's path MTU less headers).
pub(crate) const MAX_DATAGRAM: usize = 1432;

/// What one send carries.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// Bytes for a stream or an HTTP body.
    Body(Bytes),
    /// Datagrams, each below [`MAX_DATAGRAM`] (whole lines each).
    Datagrams(Vec<Bytes>),
}

/// A sealed piece of work for the transport.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub(crate) payload: Payload,
    /// Points it carries.
    pub(crate) points: usize,
    /// When the oldest batch in it was stored (for the lag).
    pub(crate) stored_at: Instant,
}

/// Buffers encoded points until a chunk is full or flushed.
#[derive(Debug)]
pub(crate) struct Encoder {
    kind: ExportKind,
    udp: bool,
    prefix: String,
    raw_counters: bool,
    instance: String,
    batch_max_points: usize,
    /// Text lines (every kind but remote write).
    text: String,
    /// Remote write's series.
    series: Vec<TimeSeries>,
    points: usize,
    oldest: Option<Instant>,
}

impl Encoder {
    pub(crate) fn new(spec: &ExporterSpec) -> Self {
        Self {
            kind: spec.kind,
            udp: matches!(spec.target, Target::Udp(_)),
            prefix: spec.prefix.clone(),
            raw_counters: spec.raw_counters,
            instance: spec.instance.clone(),
            batch_max_points: spec.batch_max_points.max(1),
            text: String::new(),
            series: Vec::new(),
            points: 0,
            oldest: None,
        }
    }

    /// Points encoded and not yet sealed.
    pub(crate) fn pending(&self) -> usize {
        self.points
    }

    /// When the oldest pending point was stored.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    /// Encodes the selected samples of `batch`; every chunk that fills up on the way is
    /// appended to `sealed`.
    pub(crate) fn push(&mut self, spec: &ExporterSpec, batch: &HookBatch, sealed: &mut Vec<Chunk>) {
        let Some(selected) = selected_series(spec, batch) else {
            return;
        };
        self.oldest.get_or_insert(batch.stored_at);
        let remote = batch.remote.as_str();
        match self.kind {
            ExportKind::Graphite => {
                let mut names: Vec<Option<String>> = vec![None; batch.batch.series.len()];
                for s in batch.samples() {
                    if !selected[s.series as usize] {
                        continue;
                    }
                    let Some(v) = exported_value(&s, self.raw_counters) else {
                        continue;
                    };
                    let name = names[s.series as usize].get_or_insert_with(|| {
                        graphite_path(&self.prefix, remote, s.entity, s.metric)
                    });
                    self.text.push_str(name);
                    self.text.push(' ');
                    push_value(&mut self.text, v);
                    let _ = writeln!(self.text, " {}", s.timestamp);
                    self.count(batch, sealed);
                }
            }
            ExportKind::Statsd => {
                // Gauges carry no timestamp: only the newest sample of each series.
                let mut newest: Vec<Option<(i64, f64)>> = vec![None; batch.batch.series.len()];
                for s in batch.samples() {
                    if !selected[s.series as usize] {
                        continue;
                    }
                    if let Some(v) = exported_value(&s, self.raw_counters) {
                        let slot = &mut newest[s.series as usize];
                        if slot.is_none_or(|(t, _)| s.timestamp >= t) {
                            *slot = Some((s.timestamp, v));
                        }
                    }
                }
                for (i, n) in newest.iter().enumerate() {
                    let Some((_, v)) = n else { continue };
                    let key = &batch.batch.series[i];
                    let name = graphite_path(&self.prefix, remote, &key.entity, &key.metric);
                    if *v < 0.0 {
                        // A signed gauge is a delta in statsd: set zero, then subtract.
                        let _ = writeln!(self.text, "{name}:0|g");
                    }
                    self.text.push_str(&name);
                    self.text.push(':');
                    push_value(&mut self.text, *v);
                    self.text.push_str("|g\n");
                    self.count(batch, sealed);
                }
            }
            ExportKind::Influxdb => {
                // One line per entity and timestamp, one field per metric.
                let mut lines: BTreeMap<(&str, i64), Vec<(&str, f64)>> = BTreeMap::new();
                for s in batch.samples() {
                    if !selected[s.series as usize] {
                        continue;
                    }
                    if let Some(v) = exported_value(&s, self.raw_counters) {
                        lines
                            .entry((s.entity, s.timestamp))
                            .or_default()
                            .push((s.metric, v));
                    }
                }
                let scale = if self.udp { 1_000_000_000 } else { 1 };
                for ((entity, ts), fields) in lines {
                    self.text.push_str(&self.prefix);
                    self.text.push_str(",entity=");
                    push_influx_escaped(&mut self.text, entity);
                    self.text.push_str(",remote=");
                    push_influx_escaped(&mut self.text, remote);
                    for (i, (metric, v)) in fields.iter().enumerate() {
                        self.text.push(if i == 0 { ' ' } else { ',' });
                        push_influx_escaped(&mut self.text, metric);
                        self.text.push('=');
                        push_value(&mut self.text, *v);
                    }
                    let _ = writeln!(self.text, " {}", ts.saturating_mul(scale));
                    self.points += fields.len() - 1;
                    self.count(batch, sealed);
                }
            }
            ExportKind::RemoteWrite => {
                let mut index: Vec<Option<usize>> = vec![None; batch.batch.series.len()];
                for s in batch.samples() {
                    if !selected[s.series as usize] {
                        continue;
                    }
                    let Some(v) = exported_value(&s, self.raw_counters) else {
                        continue;
                    };
                    let at = match index[s.series as usize] {
                        Some(at) if at < self.series.len() => at,
                        _ => {
                            // Sorted by name, `__name__` first.
                            let labels = vec![
                                label("__name__", prometheus_name(&self.prefix, s.metric)),
                                label("entity", s.entity.to_string()),
                                label("instance", self.instance.clone()),
                                label("kind", entity_kind(s.entity).to_string()),
                                label("remote", remote.to_string()),
                            ];
                            self.series.push(TimeSeries {
                                labels,
                                samples: Vec::new(),
                            });
                            index[s.series as usize] = Some(self.series.len() - 1);
                            self.series.len() - 1
                        }
                    };
                    self.series[at].samples.push(PbSample {
                        value: v,
                        timestamp: s.timestamp.saturating_mul(1000),
                    });
                    self.count(batch, sealed);
                    if self.points == 0 {
                        // Sealed: the next sample starts new series.
                        index.iter_mut().for_each(|i| *i = None);
                    }
                }
            }
        }
    }

    /// One more point encoded; seals the chunk when it is full.
    fn count(&mut self, batch: &HookBatch, sealed: &mut Vec<Chunk>) {
        self.points += 1;
        if self.points >= self.batch_max_points {
            if let Some(c) = self.seal() {
                sealed.push(c);
            }
            self.oldest = Some(batch.stored_at);
        }
    }

    /// The pending points as one chunk, if any.
    pub(crate) fn seal(&mut self) -> Option<Chunk> {
        if self.points == 0 {
            self.oldest = None;
            return None;
        }
        let payload = match self.kind {
            ExportKind::RemoteWrite => {
                let request = WriteRequest {
                    timeseries: std::mem::take(&mut self.series),
                };
                Payload::Body(Bytes::from(request.encode_snappy()))
            }
            _ if self.udp || self.kind == ExportKind::Statsd => {
                Payload::Datagrams(datagrams(&std::mem::take(&mut self.text)))
            }
            _ => Payload::Body(Bytes::from(std::mem::take(&mut self.text))),
        };
        let chunk = Chunk {
            payload,
            points: std::mem::take(&mut self.points),
            stored_at: self.oldest.take().unwrap_or_else(Instant::now),
        };
        Some(chunk)
    }
}

fn label(name: &str, value: String) -> Label {
    Label {
        name: name.to_string(),
        value,
    }
}

/// Splits lines into datagrams of whole lines below [`MAX_DATAGRAM`] (a longer line
/// goes alone).
fn datagrams(text: &str) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if !current.is_empty() && current.len() + line.len() > MAX_DATAGRAM {
            out.push(Bytes::from(std::mem::take(&mut current)));
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        out.push(Bytes::from(current));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_hold_whole_lines_below_the_limit() {
        let line = format!("{}\n", "x".repeat(99));
        let text = line.repeat(30);
        let grams = datagrams(&text);
        assert!(grams
            .iter()
            .all(|g| g.len() <= MAX_DATAGRAM && g.ends_with(b"\n")));
        assert_eq!(grams.iter().map(|g| g.len()).sum::<usize>(), text.len());
    }
}

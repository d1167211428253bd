//! The top-lists aggregate: every guest's and node's CPU and memory, kept up to date as
//! the store takes each batch, so `GET /api/v1/top?timeframe=hour` and the web page's
//! overview rank the whole fleet without reading a file. Each entity keeps twelve
//! five-minute buckets (sum and count) per metric; a ranking averages the buckets of the
//! last hour. It holds what was stored since the store was opened (nothing is replayed
//! into it), and forgets an entity an hour after its last sample.

use std::collections::HashMap;

use fleetpoll_actors::{MetricBatch, RemoteId};

/// Seconds one bucket covers.
const BUCKET_SECS: i64 = 300;
/// Buckets per entity: one hour.
const BUCKETS: usize = 12;
/// The window a ranking averages.
pub const TOP_WINDOW_SECS: i64 = BUCKET_SECS * BUCKETS as i64;

/// Which metrics the aggregate keeps, in bucket order.
const METRICS: [&str; 3] = ["cpu_current", "mem_used", "mem_total"];

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The bucket's number (`timestamp / BUCKET_SECS`); a stale one is reused.
    index: i64,
    sum: [f32; 3],
    count: [u16; 3],
}

#[derive(Debug, Default)]
struct EntityBuckets {
    buckets: [Bucket; BUCKETS],
    newest: i64,
}

impl EntityBuckets {
    fn add(&mut self, metric: usize, ts: i64, value: f64) {
        let index = ts.div_euclid(BUCKET_SECS);
        let b = &mut self.buckets[index.rem_euclid(BUCKETS as i64) as usize];
        if b.index != index {
            if b.index > index {
                return; // older than the ring holds
            }
            *b = Bucket {
                index,
                ..Bucket::default()
            };
        }
        b.sum[metric] += value as f32;
        b.count[metric] = b.count[metric].saturating_add(1);
        self.newest = self.newest.max(ts);
    }

    /// The mean of each metric over the buckets that end after `since`.
    fn means(&self, since: i64) -> [Option<f64>; 3] {
        let mut sum = [0f64; 3];
        let mut count = [0u32; 3];
        for b in &self.buckets {
            if (b.index + 1) * BUCKET_SECS <= since {
                continue;
            }
            for m in 0..3 {
                sum[m] += f64::from(b.sum[m]);
                count[m] += u32::from(b.count[m]);
            }
        }
        std::array::from_fn(|m| (count[m] > 0).then(|| sum[m] / f64::from(count[m])))
    }
}

/// Whether an entity is a guest (ranked among guests) or a node (among nodes).
fn role(entity: &str) -> Option<Role> {
    if entity.starts_with("qemu/") || entity.starts_with("lxc/") {
        Some(Role::Guest)
    } else if entity.starts_with("node/") || entity == "host" {
        Some(Role::Node)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Guest,
    Node,
}

/// One ranked entity.
#[derive(Debug, Clone, PartialEq)]
pub struct TopEntry {
    /// The remote.
    pub remote: RemoteId,
    /// The entity (`qemu/100`, `node/pve1`).
    pub entity: String,
    /// The mean CPU share or memory share over the window.
    pub value: f64,
}

/// The four rankings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopLists {
    /// Guests by mean CPU share.
    pub guests_by_cpu: Vec<TopEntry>,
    /// Guests by mean memory share (used / total).
    pub guests_by_memory: Vec<TopEntry>,
    /// Nodes by mean CPU share.
    pub nodes_by_cpu: Vec<TopEntry>,
    /// Nodes by mean memory share.
    pub nodes_by_memory: Vec<TopEntry>,
}

/// The aggregate itself (inside [`RrdStore`](super::RrdStore); public for the
/// benchmark).
#[derive(Debug, Default)]
pub struct TopAggregate {
    entities: parking_lot::Mutex<HashMap<RemoteId, HashMap<Box<str>, EntityBuckets>>>,
}

impl TopAggregate {
    /// Folds a stored batch in: one map lookup per entity, not per point.
    pub fn add(&self, remote: &RemoteId, batch: &MetricBatch) {
        let mut entities: Vec<&str> = Vec::new();
        // Per series: (index into `entities`, metric) when the series matters.
        let wanted: Vec<Option<(usize, usize)>> = batch
            .series
            .iter()
            .map(|s| {
                role(&s.entity)?;
                let metric = METRICS.iter().position(|m| **m == *s.metric)?;
                let e = match entities.iter().position(|e| **e == *s.entity) {
                    Some(e) => e,
                    None => {
                        entities.push(&s.entity);
                        entities.len() - 1
                    }
                };
                Some((e, metric))
            })
            .collect();
        if entities.is_empty() {
            return;
        }
        let mut updates: Vec<Vec<(usize, i64, f64)>> = vec![Vec::new(); entities.len()];
        for p in &batch.points {
            if let Some(Some((e, metric))) = wanted.get(p.series as usize) {
                updates[*e].push((*metric, p.timestamp, p.value));
            }
        }
        let mut map = self.entities.lock();
        let of_remote = map.entry(remote.clone()).or_default();
        for (entity, points) in entities.iter().zip(updates) {
            let buckets = match of_remote.get_mut(*entity) {
                Some(b) => b,
                None => of_remote.entry(Box::from(*entity)).or_default(),
            };
            for (metric, ts, value) in points {
                buckets.add(metric, ts, value);
            }
        }
    }

    /// The top `n` of each list over the hour before `now`, among `remotes`. Ranks by
    /// reference and builds entries only for the `n` kept of each list.
    pub fn top(&self, remotes: &[RemoteId], now: i64, n: usize) -> TopLists {
        let since = now - TOP_WINDOW_SECS;
        let wanted: std::collections::HashSet<&RemoteId> = remotes.iter().collect();
        let mut map = self.entities.lock();
        for of_remote in map.values_mut() {
            of_remote.retain(|_, e| e.newest > since);
        }
        map.retain(|_, of_remote| !of_remote.is_empty());
        // guests by cpu, guests by memory, nodes by cpu, nodes by memory
        let mut ranked: [Vec<Ranked<'_>>; 4] = Default::default();
        let pairs = map
            .iter()
            .filter(|(remote, _)| wanted.contains(remote))
            .flat_map(|(remote, of)| of.iter().map(move |(e, b)| (remote, e, b)));
        for (remote, entity, buckets) in pairs {
            let Some(role) = role(entity) else { continue };
            let [cpu, used, total] = buckets.means(since);
            let (by_cpu, by_mem) = match role {
                Role::Guest => (0, 1),
                Role::Node => (2, 3),
            };
            if let Some(cpu) = cpu {
                ranked[by_cpu].push((cpu, remote, entity));
            }
            if let (Some(used), Some(total)) = (used, total) {
                if total > 0.0 {
                    ranked[by_mem].push((used / total, remote, entity));
                }
            }
        }
        let [a, b, c, d] = ranked.map(|list| best(list, n));
        TopLists {
            guests_by_cpu: a,
            guests_by_memory: b,
            nodes_by_cpu: c,
            nodes_by_memory: d,
        }
    }
}

/// A ranked entity by reference: value, remote, entity.
type Ranked<'a> = (f64, &'a RemoteId, &'a Box<str>);

/// The `n` best of `list`, highest value first (ties by remote, then entity).
fn best(mut list: Vec<Ranked<'_>>, n: usize) -> Vec<TopEntry> {
    let order = |a: &Ranked<'_>, b: &Ranked<'_>| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.cmp(b.1))
            .then_with(|| a.2.cmp(b.2))
    };
    if n == 0 {
        return Vec::new();
    }
    if list.len() > n {
        list.select_nth_unstable_by(n - 1, order);
        list.truncate(n);
    }
    list.sort_by(order);
    list.into_iter()
        .map(|(value, remote, entity)| TopEntry {
            remote: remote.clone(),
            entity: entity.to_string(),
            value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fleetpoll_actors::{MetricKind, MetricPoint, SeriesKey};

    use super::*;

    fn batch(points: &[(&str, &str, i64, f64)]) -> MetricBatch {
        let mut b = MetricBatch::default();
        for (entity, metric, ts, value) in points {
            let key = SeriesKey {
                entity: Arc::from(*entity),
                metric: Arc::from(*metric),
                kind: MetricKind::Gauge,
            };
            let series = match b.series.iter().position(|s| *s == key) {
                Some(i) => i,
                None => {
                    b.series.push(key);
                    b.series.len() - 1
                }
            } as u32;
            b.points.push(MetricPoint {
                series,
                timestamp: *ts,
                value: *value,
            });
        }
        b
    }

    #[test]
    fn rankings_average_the_last_hour_of_stored_samples() {
        let top = TopAggregate::default();
        let r = RemoteId::new("pve-1");
        let now = 100_000;
        top.add(
            &r,
            &batch(&[
                ("qemu/100", "cpu_current", now - 60, 0.2),
                ("qemu/100", "cpu_current", now - 30, 0.4),
                ("qemu/101", "cpu_current", now - 30, 0.9),
                ("qemu/101", "mem_used", now - 30, 1.0),
                ("qemu/101", "mem_total", now - 30, 4.0),
                ("node/n1", "cpu_current", now - 30, 0.5),
                ("node/n1", "mem_used", now - 30, 3.0),
                ("node/n1", "mem_total", now - 30, 4.0),
                // Older than the hour: not counted.
                ("qemu/102", "cpu_current", now - 2 * TOP_WINDOW_SECS, 1.0),
                ("storage/n1/local", "disk_used", now - 30, 1.0),
            ]),
        );
        let lists = top.top(std::slice::from_ref(&r), now, 10);
        let names = |l: &[TopEntry]| l.iter().map(|e| e.entity.clone()).collect::<Vec<_>>();
        assert_eq!(names(&lists.guests_by_cpu), ["qemu/101", "qemu/100"]);
        assert!((lists.guests_by_cpu[1].value - 0.3).abs() < 1e-6);
        assert_eq!(names(&lists.guests_by_memory), ["qemu/101"]);
        assert!((lists.guests_by_memory[0].value - 0.25).abs() < 1e-6);
        assert_eq!(names(&lists.nodes_by_cpu), ["node/n1"]);
        assert!((lists.nodes_by_memory[0].value - 0.75).abs() < 1e-6);
        // A remote no longer polled is not ranked.
        assert_eq!(top.top(&[], now, 10), TopLists::default());
    }
}

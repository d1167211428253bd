//! The top-lists aggregate: every guest's and node's CPU and memory, kept up to date as
//! the store takes each batch, so `GET /api/v1/top?timeframe=hour` and the web page's
//! overview rank the whole fleet without reading a file or visiting every entity.
//!
//! Each entity keeps twelve five-minute buckets (sum and count) per metric; its value
//! is the mean of the buckets of the hour before `now`, and it is ranked while it has a
//! sample in that hour. When a batch is stored, its remote's entities are ranked for
//! the current window and for the next one (so crossing a five-minute boundary costs
//! nothing), each remote's four lists sorted best first (`ranking`); a request merges
//! the lists of the remotes it asks for, best first, and stops after `n`. Only a
//! remote whose prepared windows the request's has passed (no batch for five to ten
//! minutes) is ranked during a request, once per window. It holds
//! what was stored since the store was opened (nothing is replayed into it), and frees
//! an entity once no later request can rank it (its newest bucket lies before the
//! window of the latest request), at its remote's next batch or the first request of
//! the next window.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fleetpoll_actors::{MetricBatch, RemoteId};

mod ranking;
#[cfg(test)]
mod tests;

use ranking::{merge_top, Candidate, Lists, RemoteRankings};

/// Seconds one bucket covers.
const BUCKET_SECS: i64 = 300;
/// Buckets per entity: one hour.
const BUCKETS: usize = 12;
/// The window a ranking averages.
pub const TOP_WINDOW_SECS: i64 = BUCKET_SECS * BUCKETS as i64;

/// Which metrics the aggregate keeps, in bucket order.
const METRICS: [&str; 3] = ["cpu_current", "mem_used", "mem_total"];

/// The first bucket of the window of a request at `now`: a bucket counts when it ends
/// after `now - TOP_WINDOW_SECS`.
fn first_bucket(now: i64) -> i64 {
    (now - TOP_WINDOW_SECS).div_euclid(BUCKET_SECS)
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The bucket's number (`timestamp / BUCKET_SECS`); a stale one is reused.
    index: i64,
    sum: [f32; 3],
    count: [u16; 3],
}

#[derive(Debug)]
struct EntityBuckets {
    role: Role,
    buckets: [Bucket; BUCKETS],
    /// The newest sample's time.
    newest: i64,
}

impl EntityBuckets {
    fn new(role: Role) -> EntityBuckets {
        EntityBuckets {
            role,
            buckets: Default::default(),
            newest: i64::MIN,
        }
    }

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

    /// The mean of each metric over the buckets from `first` on.
    fn means(&self, first: i64) -> [Option<f64>; 3] {
        let mut sum = [0f64; 3];
        let mut count = [0u32; 3];
        for b in self.buckets.iter().filter(|b| b.index >= first) {
            for m in 0..3 {
                sum[m] += f64::from(b.sum[m]);
                count[m] += u32::from(b.count[m]);
            }
        }
        std::array::from_fn(|m| (count[m] > 0).then(|| sum[m] / f64::from(count[m])))
    }

    /// The CPU share and the memory share over the buckets from `first` on.
    fn shares(&self, first: i64) -> (Option<f64>, Option<f64>) {
        let [cpu, used, total] = self.means(first);
        let mem = match (used, total) {
            (Some(used), Some(total)) if total > 0.0 => Some(used / total),
            _ => None,
        };
        (cpu, mem)
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

/// One remote's entities and their rankings.
#[derive(Debug, Default)]
struct RemoteTop {
    entities: HashMap<Arc<str>, EntityBuckets>,
    rankings: RemoteRankings,
    /// The horizon it was last pruned to.
    pruned: i64,
}

impl RemoteTop {
    /// Frees the entities whose newest bucket lies before `horizon`: no request from
    /// then on ranks them (their rankings may still name them; requests skip them).
    fn prune(&mut self, horizon: i64) {
        if self.pruned < horizon {
            self.entities
                .retain(|_, e| e.newest.div_euclid(BUCKET_SECS) >= horizon);
            self.pruned = horizon;
        }
    }

    /// The four lists for the window starting at bucket `first`, best first.
    fn rank(&self, first: i64) -> Lists {
        let mut lists = Lists::default();
        for (entity, buckets) in &self.entities {
            let (cpu, mem) = buckets.shares(first);
            let (by_cpu, by_mem) = match buckets.role {
                Role::Guest => (0, 1),
                Role::Node => (2, 3),
            };
            let candidate = |value| Candidate {
                value,
                newest: buckets.newest,
                entity: entity.clone(),
            };
            if let Some(cpu) = cpu {
                lists[by_cpu].push(candidate(cpu));
            }
            if let Some(mem) = mem {
                lists[by_mem].push(candidate(mem));
            }
        }
        for list in &mut lists {
            list.sort_unstable_by(Candidate::order);
        }
        lists
    }

    /// Ranks the entities again after a change: for the window the newest sample falls
    /// in, and for the next one.
    fn rerank(&mut self, horizon: i64) {
        self.prune(horizon);
        let newest = self.entities.values().map(|e| e.newest).max();
        self.rankings = RemoteRankings::default();
        if let Some(newest) = newest {
            let first = first_bucket(newest);
            for f in [first, first + 1] {
                let lists = self.rank(f);
                self.rankings.put(f, lists);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Remotes {
    of: HashMap<RemoteId, RemoteTop>,
    /// The first bucket of the latest request's window: nothing older is ranked again.
    horizon: i64,
}

/// The aggregate itself (inside [`RrdStore`](super::RrdStore); public for the
/// benchmark).
#[derive(Debug, Default)]
pub struct TopAggregate {
    remotes: parking_lot::Mutex<Remotes>,
}

impl TopAggregate {
    /// Folds a stored batch in (one map lookup per entity, not per point) and ranks the
    /// remote's entities again.
    pub fn add(&self, remote: &RemoteId, batch: &MetricBatch) {
        let mut entities: Vec<(&Arc<str>, Role)> = Vec::new();
        // Per series: (index into `entities`, metric) when the series matters.
        let wanted: Vec<Option<(usize, usize)>> = batch
            .series
            .iter()
            .map(|s| {
                let role = role(&s.entity)?;
                let metric = METRICS.iter().position(|m| **m == *s.metric)?;
                let e = match entities.iter().position(|(e, _)| ***e == *s.entity) {
                    Some(e) => e,
                    None => {
                        entities.push((&s.entity, role));
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
        let mut remotes = self.remotes.lock();
        let horizon = remotes.horizon;
        let of_remote = remotes.of.entry(remote.clone()).or_default();
        for ((entity, role), points) in entities.iter().zip(updates) {
            let buckets = match of_remote.entities.get_mut(&***entity) {
                Some(b) => b,
                None => of_remote
                    .entities
                    .entry(Arc::clone(entity))
                    .or_insert_with(|| EntityBuckets::new(*role)),
            };
            for (metric, ts, value) in points {
                buckets.add(metric, ts, value);
            }
        }
        of_remote.rerank(horizon);
        if of_remote.entities.is_empty() {
            remotes.of.remove(remote);
        }
    }

    /// The top `n` of each list over the hour before `now`, among `remotes`: a merge of
    /// the remotes' ranked lists that stops after `n` entries each.
    pub fn top(&self, remotes: &[RemoteId], now: i64, n: usize) -> TopLists {
        let since = now - TOP_WINDOW_SECS;
        let first = first_bucket(now);
        let wanted: HashSet<&RemoteId> = remotes.iter().collect();
        let mut guard = self.remotes.lock();
        let state = &mut *guard;
        state.horizon = state.horizon.max(first);
        let mut emptied = false;
        for (remote, of_remote) in state.of.iter_mut() {
            if of_remote.rankings.get(first).is_some() {
                continue; // ranked when its latest batch was stored
            }
            // No batch since the window moved past this remote's rankings: free what no
            // later request can rank (a remote no longer polled goes with its last
            // entity), and rank the rest for this window.
            of_remote.prune(state.horizon);
            emptied |= of_remote.entities.is_empty();
            if wanted.contains(remote) {
                let lists = of_remote.rank(first);
                of_remote.rankings.put(first, lists);
            }
        }
        if emptied {
            state.of.retain(|_, r| !r.entities.is_empty());
        }
        let mut asked: Vec<(&RemoteId, &Lists)> = Vec::with_capacity(wanted.len());
        for (remote, of_remote) in &state.of {
            if let Some(lists) = of_remote.rankings.get(first) {
                if wanted.contains(remote) {
                    asked.push((remote, lists));
                }
            }
        }
        let [a, b, c, d] = std::array::from_fn(|list| merge_top(&asked, list, since, n));
        TopLists {
            guests_by_cpu: a,
            guests_by_memory: b,
            nodes_by_cpu: c,
            nodes_by_memory: d,
        }
    }
}

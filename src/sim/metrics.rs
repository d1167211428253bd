//! Simulated metric values, computed on demand: every value is a deterministic
//! function of (seed, remote, entity, metric, timestamp), so history costs no memory.

use std::f64::consts::TAU;
use std::io::Write;

use fleetpoll_actors::MetricKind;

use super::fleet::{hash, unit, Boots, Fleet, SimConfig, SimRemote};

/// Seconds between two generations of the remotes' metric loop.
pub const GENERATION_SECS: i64 = 10;
/// Generations kept as history (30 minutes).
pub const HISTORY_GENERATIONS: i64 = 180;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

use MetricKind::{Derive, Gauge};

const NODE_METRICS: &[(&str, MetricKind)] = &[
    ("uptime", Gauge),
    ("cpu_current", Gauge),
    ("cpu_iowait", Gauge),
    ("cpu_max", Gauge),
    ("cpu_avg1", Gauge),
    ("cpu_avg5", Gauge),
    ("cpu_avg15", Gauge),
    ("mem_total", Gauge),
    ("mem_used", Gauge),
    ("swap_total", Gauge),
    ("swap_used", Gauge),
    ("disk_total", Gauge),
    ("disk_used", Gauge),
    ("net_in", Derive),
    ("net_out", Derive),
];
const QEMU_STOPPED: &[(&str, MetricKind)] = &[
    ("uptime", Gauge),
    ("cpu_max", Gauge),
    ("mem_total", Gauge),
    ("disk_total", Gauge),
];
const QEMU_RUNNING: &[(&str, MetricKind)] = &[
    ("uptime", Gauge),
    ("cpu_max", Gauge),
    ("mem_total", Gauge),
    ("disk_total", Gauge),
    ("cpu_current", Gauge),
    ("mem_used", Gauge),
    ("disk_read", Derive),
    ("disk_write", Derive),
    ("net_in", Derive),
    ("net_out", Derive),
];
const LXC_STOPPED: &[(&str, MetricKind)] = &[
    ("uptime", Gauge),
    ("cpu_max", Gauge),
    ("mem_total", Gauge),
    ("disk_total", Gauge),
    ("disk_used", Gauge),
];
const LXC_RUNNING: &[(&str, MetricKind)] = &[
    ("uptime", Gauge),
    ("cpu_max", Gauge),
    ("mem_total", Gauge),
    ("disk_total", Gauge),
    ("disk_used", Gauge),
    ("cpu_current", Gauge),
    ("mem_used", Gauge),
    ("disk_read", Derive),
    ("disk_write", Derive),
    ("net_in", Derive),
    ("net_out", Derive),
];
const STORAGE_METRICS: &[(&str, MetricKind)] = &[("disk_total", Gauge), ("disk_used", Gauge)];
const HOST_METRICS: &[(&str, MetricKind)] = &[
    ("cpu_current", Gauge),
    ("cpu_iowait", Gauge),
    ("cpu_avg1", Gauge),
    ("cpu_avg5", Gauge),
    ("cpu_avg15", Gauge),
    ("mem_total", Gauge),
    ("mem_used", Gauge),
    ("swap_total", Gauge),
    ("swap_used", Gauge),
    ("net_in", Derive),
    ("net_out", Derive),
];
const DATASTORE_METRICS: &[(&str, MetricKind)] = &[
    ("disk_total", Gauge),
    ("disk_used", Gauge),
    ("disk_available", Gauge),
    ("disk_read", Derive),
    ("disk_write", Derive),
];

/// One entity whose metrics the remote exports, with its fixed parameters.
#[derive(Debug)]
pub(crate) struct Entity {
    pub(crate) id: String,
    key: u64,
    metrics: &'static [(&'static str, MetricKind)],
    /// When it (re)starts: uptime and counters count from the last boot.
    boots: Boots,
    cpus: f64,
    mem_total: f64,
    disk_total: f64,
    load: f64,
}

impl Entity {
    fn new(
        seed: u64,
        remote: &SimRemote,
        id: String,
        metrics: &'static [(&'static str, MetricKind)],
        boots: Boots,
        big: bool,
    ) -> Entity {
        let key = hash(&[seed, remote.index, fnv(&id)]);
        let pick = |salt: u64, lo: f64, hi: f64| lo + (hi - lo) * unit(&[key, salt]);
        let scale = if big { 16.0 } else { 1.0 };
        Entity {
            cpus: (pick(1, 1.0, 8.0) * if big { 8.0 } else { 1.0 }).round(),
            mem_total: (pick(2, 2.0, 32.0) * scale).round() * GIB,
            disk_total: (pick(3, 32.0, 512.0) * scale).round() * GIB,
            load: pick(4, 0.1, 0.8),
            id,
            key,
            metrics,
            boots,
        }
    }

    /// The value of `metric` (at `index` in the entity's list) at `ts`.
    fn value(&self, index: usize, metric: &str, ts: i64) -> f64 {
        let noise = unit(&[self.key, index as u64, ts as u64]);
        let wave = |period: f64, shift: f64| {
            0.5 + 0.5 * (TAU * (ts as f64 / period + unit(&[self.key, 9]) + shift)).sin()
        };
        let cpu = |lag: f64| (0.02 + self.load * wave(3600.0, lag) + 0.05 * noise).min(1.0);
        let up = (ts - self.boots.last_at(ts)).max(0) as f64;
        let counter = |salt: u64| {
            let rate = 1e3 * (1.0 + 1e4 * unit(&[self.key, salt]));
            let period = 600.0;
            // The wobble's slope never exceeds half the rate, so the counter only grows.
            let amplitude = rate * period / TAU * 0.5;
            (rate * up + amplitude * (TAU * up / period).sin() + amplitude).round()
        };
        let round4 = |v: f64| (v * 1e4).round() / 1e4;
        match metric {
            "uptime" => up,
            "cpu_current" => round4(cpu(0.0)),
            "cpu_iowait" => round4(0.03 * noise),
            "cpu_max" => self.cpus,
            "cpu_avg1" => round4(cpu(0.0) * self.cpus),
            "cpu_avg5" => round4(cpu(-0.04) * self.cpus),
            "cpu_avg15" => round4(cpu(-0.12) * self.cpus),
            "mem_total" => self.mem_total,
            "mem_used" => (self.mem_total * (0.3 + 0.4 * wave(7200.0, 0.3) + 0.05 * noise)).round(),
            "swap_total" => 8.0 * GIB,
            "swap_used" => (8.0 * GIB * 0.05 * (1.0 + wave(5400.0, 0.6))).round(),
            "disk_total" => self.disk_total,
            "disk_used" => self.disk_used(ts),
            "disk_available" => self.disk_total - self.disk_used(ts),
            "net_in" => counter(11),
            "net_out" => counter(12),
            "disk_read" => counter(13),
            "disk_write" => counter(14),
            _ => 0.0,
        }
    }

    /// The value of `metric` at `ts`, if the entity exports it (what its metric export
    /// would say at that generation).
    pub(crate) fn current(&self, metric: &str, ts: i64) -> Option<f64> {
        let index = self.metrics.iter().position(|(m, _)| *m == metric)?;
        Some(self.value(index, metric, ts))
    }

    /// Disk usage grows slowly and steadily, never past the total.
    fn disk_used(&self, ts: i64) -> f64 {
        let fill = 0.2 + 0.5 * unit(&[self.key, 21]);
        let growth = (ts - 1_600_000_000) as f64 / (86_400.0 * 365.0) * 0.01;
        (self.disk_total * (fill + growth).min(0.99)).round()
    }
}

/// A small, stable string hash.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The entities a remote exports, in a fixed order.
pub(crate) fn entities(seed: u64, remote: &SimRemote) -> Vec<Entity> {
    let mut out = Vec::new();
    if remote.datastores.is_empty() {
        for (n, node) in remote.nodes.iter().enumerate() {
            out.push(Entity::new(
                seed,
                remote,
                format!("node/{node}"),
                NODE_METRICS,
                remote.node_boots(seed, n),
                true,
            ));
        }
        for guest in &remote.guests {
            let kind = if guest.lxc { "lxc" } else { "qemu" };
            let metrics = match (guest.lxc, guest.running) {
                (false, false) => QEMU_STOPPED,
                (false, true) => QEMU_RUNNING,
                (true, false) => LXC_STOPPED,
                (true, true) => LXC_RUNNING,
            };
            let boots = if guest.running {
                Boots::new(hash(&[seed, remote.index, u64::from(guest.vmid)]), 5, 60)
            } else {
                Boots::never()
            };
            out.push(Entity::new(
                seed,
                remote,
                format!("{kind}/{}", guest.vmid),
                metrics,
                boots,
                false,
            ));
        }
        for storage in &remote.storages {
            out.push(Entity::new(
                seed,
                remote,
                format!("storage/{}/{}", remote.nodes[storage.node], storage.name),
                STORAGE_METRICS,
                Boots::never(),
                true,
            ));
        }
    } else {
        out.push(Entity::new(
            seed,
            remote,
            "host".to_string(),
            HOST_METRICS,
            remote.node_boots(seed, 0),
            true,
        ));
        for store in &remote.datastores {
            out.push(Entity::new(
                seed,
                remote,
                format!("datastore/{store}"),
                DATASTORE_METRICS,
                remote.node_boots(seed, 0),
                true,
            ));
        }
    }
    out
}

/// The metric export reply that remote `remote_id` of the fleet `config` describes would
/// send at `now`: the newest generation, or with `history` the last 30 minutes, only
/// points with `timestamp > start_time`; `None` if there is no such remote.
/// Lets benchmarks and tests produce realistic replies without a server.
pub fn metric_reply(
    config: &SimConfig,
    remote_id: &str,
    now: i64,
    history: bool,
    start_time: Option<i64>,
) -> Option<Vec<u8>> {
    let fleet = Fleet::build(config);
    let remote = fleet.remote(remote_id)?;
    Some(render_metrics(
        config.seed,
        remote,
        now,
        history,
        start_time,
    ))
}

/// Renders the metric export reply of `remote` as its clock shows `now`: the newest
/// generation, or with `history` the last 30 minutes of generations, keeping only
/// points with `timestamp > start_time`; sorted by timestamp.
pub(crate) fn render_metrics(
    seed: u64,
    remote: &SimRemote,
    now: i64,
    history: bool,
    start_time: Option<i64>,
) -> Vec<u8> {
    let entities = entities(seed, remote);
    let newest = now.div_euclid(GENERATION_SECS) * GENERATION_SECS;
    let oldest = if history {
        newest - (HISTORY_GENERATIONS - 1) * GENERATION_SECS
    } else {
        newest
    };
    let first = match start_time {
        Some(start) if start >= oldest => (start.div_euclid(GENERATION_SECS) + 1) * GENERATION_SECS,
        _ => oldest,
    };
    let per_generation: usize = entities.iter().map(|e| e.metrics.len()).sum();
    let generations = ((newest - first) / GENERATION_SECS + 1).max(0) as usize;
    let mut out = Vec::with_capacity(16 + generations * per_generation * 96);
    out.extend_from_slice(b"{\"data\":[");
    let mut first_point = true;
    let mut ts = first;
    while ts <= newest {
        for entity in &entities {
            for (index, (metric, kind)) in entity.metrics.iter().enumerate() {
                if !first_point {
                    out.push(b',');
                }
                first_point = false;
                let kind = match kind {
                    MetricKind::Gauge => "gauge",
                    MetricKind::Counter => "counter",
                    MetricKind::Derive => "derive",
                };
                let value = entity.value(index, metric, ts);
                // Writing into a Vec cannot fail.
                let _ = write!(
                    out,
                    "{{\"timestamp\":{ts},\"id\":\"{}\",\"metric\":\"{metric}\",\"value\":{value},\"type\":\"{kind}\"}}",
                    entity.id
                );
            }
        }
        ts += GENERATION_SECS;
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(body: &[u8]) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["data"].as_array().unwrap().clone()
    }

    #[test]
    fn history_has_180_generations_sorted_by_timestamp() {
        let fleet = Fleet::build(&SimConfig::default());
        let remote = fleet.remote("pbs-1").unwrap();
        let pts = points(&render_metrics(1, remote, 1_700_000_005, true, None));
        let per_gen = HOST_METRICS.len() + 2 * DATASTORE_METRICS.len();
        assert_eq!(pts.len(), 180 * per_gen);
        let ts: Vec<i64> = pts
            .iter()
            .map(|p| p["timestamp"].as_i64().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*ts.last().unwrap(), 1_700_000_000);
        assert_eq!(ts[0], 1_700_000_000 - 1790);
    }

    #[test]
    fn start_time_is_strictly_exclusive() {
        let fleet = Fleet::build(&SimConfig::default());
        let remote = fleet.remote("pve-1").unwrap();
        let pts = points(&render_metrics(
            1,
            remote,
            1_700_000_000,
            true,
            Some(1_699_999_980),
        ));
        let ts: std::collections::BTreeSet<i64> = pts
            .iter()
            .map(|p| p["timestamp"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ts.into_iter().collect::<Vec<_>>(),
            vec![1_699_999_990, 1_700_000_000]
        );
        let none = points(&render_metrics(
            1,
            remote,
            1_700_000_000,
            true,
            Some(1_700_000_000),
        ));
        assert!(none.is_empty());
    }

    #[test]
    fn without_history_only_the_newest_generation_is_sent() {
        let fleet = Fleet::build(&SimConfig::default());
        let remote = fleet.remote("pve-1").unwrap();
        let pts = points(&render_metrics(1, remote, 1_700_000_009, false, None));
        assert!(!pts.is_empty());
        assert!(pts.iter().all(|p| p["timestamp"] == 1_700_000_000));
        let ids: Vec<&str> = pts.iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&"node/pve-1-n1"));
        assert!(ids.contains(&"storage/pve-1-n2/local-lvm"));
        assert!(ids.iter().any(|id| id.starts_with("qemu/")));
        assert!(ids.iter().any(|id| id.starts_with("lxc/")));
    }

    #[test]
    fn values_are_deterministic_plausible_and_counters_grow() {
        let fleet = Fleet::build(&SimConfig::default());
        let remote = fleet.remote("pve-1").unwrap();
        let a = render_metrics(1, remote, 1_700_000_000, true, None);
        assert_eq!(a, render_metrics(1, remote, 1_700_000_000, true, None));
        let pts = points(&a);
        let mut last: std::collections::HashMap<(String, String), f64> = Default::default();
        for p in &pts {
            let (id, metric) = (p["id"].as_str().unwrap(), p["metric"].as_str().unwrap());
            let v = p["value"].as_f64().unwrap();
            assert!(v.is_finite() && v >= 0.0, "{p}");
            if metric == "cpu_current" {
                assert!(v <= 1.0, "{p}");
            }
            if p["type"] == "derive" {
                let prev = last.insert((id.into(), metric.into()), v);
                assert!(prev.is_none_or(|prev| prev <= v), "{p} after {prev:?}");
            }
        }
    }
}

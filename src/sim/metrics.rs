//! Simulated metric values, computed on demand: every value is a deterministic
//! function of (seed, remote, entity, metric, timestamp), so history costs no memory.

use std::f64::consts::TAU;
use std::io::Write;

use fleetpoll_actors::MetricKind;

use super::churn::{GuestLife, NodeSchedule};
use super::faults::Faults;
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

/// The metrics an entity exports.
type MetricList = &'static [(&'static str, MetricKind)];

/// When an entity (re)starts — uptime and counters count from its last boot — and,
/// for a guest, when it runs.
#[derive(Debug)]
enum Life {
    /// Booted on a schedule (`Boots::never` for storages).
    Boots(Boots),
    /// A PVE node: its reboots and its returns from the churn's outages.
    Node(NodeSchedule),
    /// A guest: running or stopped, with the metric lists of both states.
    Guest {
        life: GuestLife,
        running: MetricList,
        stopped: MetricList,
    },
}

/// One entity whose metrics the remote exports, with its fixed parameters.
#[derive(Debug)]
pub(crate) struct Entity {
    pub(crate) id: String,
    key: u64,
    metrics: MetricList,
    life: Life,
    /// The PVE node it lives on: gone from the export while that node is offline.
    pub(crate) node: Option<usize>,
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
        metrics: MetricList,
        life: Life,
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
            life,
            node: None,
        }
    }

    /// On PVE node `node`.
    fn on(mut self, node: usize) -> Entity {
        self.node = Some(node);
        self
    }

    /// The metrics it exports at `ts` (a guest's depend on whether it runs).
    fn metrics_at(&self, ts: i64) -> MetricList {
        match &self.life {
            Life::Guest {
                life,
                running,
                stopped,
            } => {
                if life.running_at(ts) {
                    running
                } else {
                    stopped
                }
            }
            _ => self.metrics,
        }
    }

    /// Its last boot at or before `ts` (`i64::MAX` when it is not running).
    fn last_boot(&self, ts: i64) -> i64 {
        match &self.life {
            Life::Boots(boots) => boots.last_at(ts),
            Life::Node(schedule) => schedule.last_boot(ts),
            Life::Guest { life, .. } => life.last_boot(ts).unwrap_or(i64::MAX),
        }
    }

    /// Whether it is a guest that runs at `ts` (`None` for what is not a guest).
    #[cfg(test)]
    pub(crate) fn guest_running(&self, ts: i64) -> Option<bool> {
        match &self.life {
            Life::Guest { life, .. } => Some(life.running_at(ts)),
            _ => None,
        }
    }

    /// The value of `metric` (at `index` in the entity's list) at `ts`.
    fn value(&self, index: usize, metric: &str, ts: i64) -> f64 {
        let noise = unit(&[self.key, index as u64, ts as u64]);
        let wave = |period: f64, shift: f64| {
            0.5 + 0.5 * (TAU * (ts as f64 / period + unit(&[self.key, 9]) + shift)).sin()
        };
        let cpu = |lag: f64| (0.02 + self.load * wave(3600.0, lag) + 0.05 * noise).min(1.0);
        let up = (ts - self.last_boot(ts)).max(0) as f64;
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
        let index = self.metrics_at(ts).iter().position(|(m, _)| *m == metric)?;
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

/// The entities a remote of `fleet` exports, in a fixed order.
pub(crate) fn entities(fleet: &Fleet, remote: &SimRemote) -> Vec<Entity> {
    let seed = fleet.seed;
    let mut out = Vec::new();
    if remote.datastores.is_empty() {
        for (n, node) in remote.nodes.iter().enumerate() {
            out.push(
                Entity::new(
                    seed,
                    remote,
                    format!("node/{node}"),
                    NODE_METRICS,
                    Life::Node(fleet.node_schedule(remote, n)),
                    true,
                )
                .on(n),
            );
        }
        for guest in &remote.guests {
            let kind = if guest.lxc { "lxc" } else { "qemu" };
            let (running, stopped) = if guest.lxc {
                (LXC_RUNNING, LXC_STOPPED)
            } else {
                (QEMU_RUNNING, QEMU_STOPPED)
            };
            let life = Life::Guest {
                life: guest.life.clone(),
                running,
                stopped,
            };
            out.push(
                Entity::new(
                    seed,
                    remote,
                    format!("{kind}/{}", guest.vmid),
                    running,
                    life,
                    false,
                )
                .on(guest.node),
            );
        }
        for storage in &remote.storages {
            out.push(
                Entity::new(
                    seed,
                    remote,
                    format!("storage/{}/{}", remote.nodes[storage.node], storage.name),
                    STORAGE_METRICS,
                    Life::Boots(Boots::never()),
                    true,
                )
                .on(storage.node),
            );
        }
    } else {
        out.push(Entity::new(
            seed,
            remote,
            "host".to_string(),
            HOST_METRICS,
            Life::Boots(remote.node_boots(seed, 0)),
            true,
        ));
        for store in &remote.datastores {
            out.push(Entity::new(
                seed,
                remote,
                format!("datastore/{store}"),
                DATASTORE_METRICS,
                Life::Boots(remote.node_boots(seed, 0)),
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
        &fleet,
        remote,
        &remote.faults,
        now,
        history,
        start_time,
    ))
}

/// Renders the metric export reply of `remote` as its clock shows `now`, with `faults`
/// in force: the newest generation, or with `history` the last 30 minutes of
/// generations, keeping only points with `timestamp > start_time`; sorted by timestamp.
/// The entities of a node that is offline now are missing (the cluster cannot reach
/// it), and so are those of a node that was offline at a generation (nothing measured).
pub(crate) fn render_metrics(
    fleet: &Fleet,
    remote: &SimRemote,
    faults: &Faults,
    now: i64,
    history: bool,
    start_time: Option<i64>,
) -> Vec<u8> {
    let entities = entities(fleet, remote);
    let schedules: Vec<NodeSchedule> = (0..remote.nodes.len())
        .map(|n| fleet.node_schedule(remote, n))
        .collect();
    let up_now: Vec<bool> = (0..remote.nodes.len())
        .map(|n| fleet.node_up(remote, faults, n, now))
        .collect();
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
    let per_generation: usize = entities.iter().map(|e| e.metrics_at(newest).len()).sum();
    let generations = ((newest - first) / GENERATION_SECS + 1).max(0) as usize;
    let mut out = Vec::with_capacity(16 + generations * per_generation * 96);
    out.extend_from_slice(b"{\"data\":[");
    let mut first_point = true;
    let mut ts = first;
    while ts <= newest {
        let present: Vec<bool> = (0..remote.nodes.len())
            .map(|n| up_now[n] && !schedules[n].offline_at(ts))
            .collect();
        for entity in &entities {
            if entity.node.is_some_and(|n| !present[n]) {
                continue;
            }
            for (index, (metric, kind)) in entity.metrics_at(ts).iter().enumerate() {
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
        let pts = points(&render_metrics(
            &fleet,
            remote,
            &Faults::default(),
            1_700_000_005,
            true,
            None,
        ));
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
            &fleet,
            remote,
            &Faults::default(),
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
            &fleet,
            remote,
            &Faults::default(),
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
        let pts = points(&render_metrics(
            &fleet,
            remote,
            &Faults::default(),
            1_700_000_009,
            false,
            None,
        ));
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
        let a = render_metrics(
            &fleet,
            remote,
            &Faults::default(),
            1_700_000_000,
            true,
            None,
        );
        assert_eq!(
            a,
            render_metrics(
                &fleet,
                remote,
                &Faults::default(),
                1_700_000_000,
                true,
                None
            )
        );
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

    #[test]
    fn an_offline_node_is_missing_from_the_export_with_its_guests_and_storages() {
        let fleet = Fleet::build(&SimConfig::default());
        let remote = fleet.remote("pve-1").unwrap();
        let faults = Faults::from_list(&[crate::sim::Fault::NodeOffline(1)]);
        let pts = points(&render_metrics(
            &fleet,
            remote,
            &faults,
            1_700_000_000,
            false,
            None,
        ));
        let on_n3 = |id: &str| {
            id == "node/pve-1-n3"
                || id.starts_with("storage/pve-1-n3/")
                || remote
                    .guests
                    .iter()
                    .any(|g| g.node == 2 && (id.ends_with(&format!("/{}", g.vmid))))
        };
        assert!(!pts.is_empty());
        assert!(pts.iter().all(|p| !on_n3(p["id"].as_str().unwrap())));
        assert!(pts.iter().any(|p| p["id"] == "node/pve-1-n2"));
    }

    #[test]
    fn with_churn_guests_export_what_their_state_allows_and_nodes_vanish_while_offline() {
        use crate::sim::churn::{Churn, NodeOutages};
        let config = SimConfig {
            churn: Churn {
                node_outages: Some(NodeOutages::new(1800, 600).unwrap()),
                guest_period_secs: 600,
                long_task_share: 0.0,
            },
            ..SimConfig::default()
        };
        let fleet = Fleet::build(&config);
        let remote = fleet.remote("pve-1").unwrap();
        let now = 1_700_000_000;
        let pts = points(&render_metrics(
            &fleet,
            remote,
            &Faults::default(),
            now,
            true,
            None,
        ));
        let entities = entities(&fleet, remote);
        let mut missing_node_generations = 0;
        for ts in (now - 1790..=now).step_by(10) {
            let at: Vec<&serde_json::Value> = pts.iter().filter(|p| p["timestamp"] == ts).collect();
            for e in &entities {
                let metrics: Vec<&str> = at
                    .iter()
                    .filter(|p| p["id"] == e.id.as_str())
                    .map(|p| p["metric"].as_str().unwrap())
                    .collect();
                let node_up = e.node.is_none_or(|n| {
                    let schedule = fleet.node_schedule(remote, n);
                    !schedule.offline_at(ts) && !schedule.offline_at(now)
                });
                if !node_up {
                    assert!(metrics.is_empty(), "{} at {ts}", e.id);
                    missing_node_generations += usize::from(e.id.starts_with("node/"));
                    continue;
                }
                match e.guest_running(ts) {
                    Some(true) => assert!(metrics.contains(&"cpu_current"), "{} at {ts}", e.id),
                    Some(false) => assert!(!metrics.contains(&"cpu_current"), "{} at {ts}", e.id),
                    None => assert!(!metrics.is_empty(), "{} at {ts}", e.id),
                }
            }
        }
        assert!(
            missing_node_generations > 0,
            "some node was offline in half an hour"
        );
    }
}

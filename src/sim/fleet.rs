//! The simulated fleet: which remotes exist, their nodes, guests, storages and
//! datastores, their API tokens and faults — all derived from the seed.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use fleetpoll_actors::RemoteKind;

use super::churn::{Churn, GuestLife, NodeSchedule};
use super::faults::{FaultRule, Faults};
use super::link::Rtt;

/// A deterministic 64-bit mix (splitmix64's finaliser) of a running hash and a word.
pub(crate) fn mix(hash: u64, word: u64) -> u64 {
    let mut z = hash ^ word.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a list of words into one.
pub(crate) fn hash(words: &[u64]) -> u64 {
    words.iter().fold(0x5EED_F1EE_7B01_u64, |h, &w| mix(h, w))
}

/// A hash mapped onto `[0, 1)`.
pub(crate) fn unit(words: &[u64]) -> f64 {
    (hash(words) >> 11) as f64 / (1u64 << 53) as f64
}

/// How big the simulated fleet is and how it misbehaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Everything (names, tokens, values, tasks, fault selection) derives from it.
    pub seed: u64,
    /// Number of Proxmox VE clusters.
    pub pve_remotes: usize,
    /// Number of Proxmox Backup Servers.
    pub pbs_remotes: usize,
    /// Nodes per PVE cluster.
    pub nodes_per_cluster: usize,
    /// Guests (qemu and lxc) per PVE cluster.
    pub guests_per_cluster: usize,
    /// Storages per PVE node.
    pub storages_per_node: usize,
    /// Datastores per PBS.
    pub datastores_per_pbs: usize,
    /// Mean seconds between two task starts on one node.
    pub task_interval_secs: i64,
    /// Number of Prometheus exposition targets (`prom-1`, …), served over plain http.
    pub prom_targets: usize,
    /// Series per exposition target.
    pub prom_series: usize,
    /// Exposition targets answer without a bearer token (for peers configured alike).
    pub prom_open: bool,
    /// Faults and whom they hit.
    pub faults: Vec<FaultRule>,
    /// Where the remotes listen: each node on its own address (the default) or all
    /// remotes behind one listener.
    pub listen: Listen,
    /// The round-trip time every connection pays for its setup and each exchange.
    pub rtt: Rtt,
    /// How the fleet changes over time (nothing changes by default).
    pub churn: Churn,
    /// How far the simulator's clock starts behind the clock it is given, until
    /// [`crate::sim::Simulator::catch_up_clock`] (0: not behind).
    pub clock_behind: std::time::Duration,
}

/// Where the simulated remotes listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// Every node of every remote its own listener on its own loopback address, with
    /// its own certificate: node `n` (from 0) of remote `i` (from 0, in fleet order) at
    /// `base + 256 × i + n + 1` — pve-1's nodes at 127.1.0.1, 127.1.0.2, … for the
    /// default base. `port` `None` takes the products' ports (PVE 8006, PBS 8007,
    /// exposition targets 9100); `Some(0)` a free port per listener.
    PerNode {
        /// The address before the first node's.
        base: Ipv4Addr,
        /// The port of every listener.
        port: Option<u16>,
    },
    /// One listener for every remote, paths prefixed with `/{remote-id}`, one
    /// certificate, one TLS server name (the layout before per-node listeners; a second
    /// listener serves the `wrong-cert` remotes, a third plain-http one the exposition
    /// targets, both on free ports of the same IP).
    Shared(SocketAddr),
}

/// The first address of the per-node layout: 127.1.0.0, so pve-1's first node is 127.1.0.1.
pub const DEFAULT_ADDRESS_BASE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 0);

impl Default for Listen {
    /// Per node, free ports (so tests can run side by side).
    fn default() -> Self {
        Listen::PerNode {
            base: DEFAULT_ADDRESS_BASE,
            port: Some(0),
        }
    }
}

impl Listen {
    /// The address of node `node` of the remote at `index` in the per-node layout, or
    /// why the layout has no room for it.
    pub(crate) fn node_ip(base: Ipv4Addr, index: usize, node: usize) -> Result<Ipv4Addr, String> {
        if node >= 255 {
            return Err(format!(
                "a remote has at most 255 nodes in the per-node layout (node {} asked for)",
                node + 1
            ));
        }
        let offset = (index as u64) * 256 + node as u64 + 1;
        let ip = u64::from(u32::from(base)) + offset;
        if u32::from(base) >> 24 != 127 || ip >> 24 != 127 {
            return Err(format!(
                "remote {} node {} would lie outside 127.0.0.0/8 (base {base})",
                index + 1,
                node + 1
            ));
        }
        Ok(Ipv4Addr::from(ip as u32))
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            pve_remotes: 2,
            pbs_remotes: 1,
            nodes_per_cluster: 3,
            guests_per_cluster: 30,
            storages_per_node: 2,
            datastores_per_pbs: 2,
            task_interval_secs: 600,
            prom_targets: 0,
            prom_series: 200,
            prom_open: false,
            faults: Vec::new(),
            listen: Listen::default(),
            rtt: Rtt::default(),
            churn: Churn::default(),
            clock_behind: std::time::Duration::ZERO,
        }
    }
}

/// One guest of a PVE cluster.
#[derive(Clone, Debug)]
pub(crate) struct Guest {
    pub(crate) vmid: u32,
    pub(crate) lxc: bool,
    pub(crate) node: usize,
    /// When it runs.
    pub(crate) life: GuestLife,
    /// Its name (`web-100`), as the resource list shows it.
    pub(crate) name: String,
}

/// One storage of a PVE node.
#[derive(Clone, Debug)]
pub(crate) struct Storage {
    pub(crate) node: usize,
    pub(crate) name: String,
}

/// One simulated remote.
#[derive(Clone, Debug)]
pub(crate) struct SimRemote {
    pub(crate) index: u64,
    pub(crate) id: String,
    pub(crate) kind: RemoteKind,
    pub(crate) nodes: Vec<String>,
    pub(crate) guests: Vec<Guest>,
    pub(crate) storages: Vec<Storage>,
    pub(crate) datastores: Vec<String>,
    pub(crate) token_id: String,
    pub(crate) secret: String,
    pub(crate) faults: Faults,
    /// Series of an exposition target.
    pub(crate) series: usize,
    /// An exposition target that needs no token.
    pub(crate) open: bool,
}

impl SimRemote {
    /// The exact `Authorization` header value the remote accepts.
    pub(crate) fn expected_authorization(&self) -> String {
        match self.kind {
            RemoteKind::Pbs => format!("PBSAPIToken={}:{}", self.token_id, self.secret),
            RemoteKind::Prometheus => format!("Bearer {}", self.secret),
            _ => format!("PVEAPIToken={}={}", self.token_id, self.secret),
        }
    }

    /// When node `node` reboots: every 60 to 120 days, at a seeded moment.
    pub(crate) fn node_boots(&self, seed: u64, node: usize) -> Boots {
        Boots::new(hash(&[seed, self.index, node as u64, 0xB007]), 60, 120)
    }

    /// How many listeners it has: one per node, one for an exposition target.
    pub(crate) fn listeners(&self) -> usize {
        self.nodes.len().max(1)
    }
}

/// A schedule of (re)boots: one every `period` seconds, shifted by `offset`. Uptimes
/// and counters restart at each boot, so they stay plausible whatever the date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Boots {
    period: i64,
    offset: i64,
}

impl Boots {
    /// A schedule with a period of `min_days..max_days` drawn from `h`.
    pub(crate) fn new(h: u64, min_days: u64, max_days: u64) -> Boots {
        let period = (min_days * 86_400 + h % ((max_days - min_days).max(1) * 86_400)) as i64;
        Boots {
            period,
            offset: ((h >> 32) % period as u64) as i64,
        }
    }

    /// Something that is not running: it never booted.
    pub(crate) fn never() -> Boots {
        Boots {
            period: 0,
            offset: 0,
        }
    }

    /// The last boot at or before `ts` (`i64::MAX` for [`Boots::never`]).
    pub(crate) fn last_at(&self, ts: i64) -> i64 {
        if self.period == 0 {
            return i64::MAX;
        }
        ts - (ts - self.offset).rem_euclid(self.period)
    }
}

/// The whole simulated fleet.
#[derive(Clone, Debug)]
pub(crate) struct Fleet {
    pub(crate) seed: u64,
    pub(crate) task_interval_secs: i64,
    pub(crate) remotes: Vec<SimRemote>,
    pub(crate) churn: Churn,
}

impl Fleet {
    /// Builds the fleet described by `config`.
    pub(crate) fn build(config: &SimConfig) -> Fleet {
        let seed = config.seed;
        let mut remotes = Vec::new();
        let api_remotes = config.pve_remotes + config.pbs_remotes;
        for i in 0..api_remotes + config.prom_targets {
            let index = i as u64;
            let pve = i < config.pve_remotes;
            let (kind, id) = if pve {
                (RemoteKind::Pve, format!("pve-{}", i + 1))
            } else if i < api_remotes {
                (
                    RemoteKind::Pbs,
                    format!("pbs-{}", i - config.pve_remotes + 1),
                )
            } else {
                (
                    RemoteKind::Prometheus,
                    format!("prom-{}", i - api_remotes + 1),
                )
            };
            let secret = secret(seed, index);
            let mut remote = SimRemote {
                index,
                id: id.clone(),
                kind,
                nodes: Vec::new(),
                guests: Vec::new(),
                storages: Vec::new(),
                datastores: Vec::new(),
                token_id: String::new(),
                secret,
                faults: Faults::default(),
                series: 0,
                open: false,
            };
            if kind == RemoteKind::Prometheus {
                remote.series = config.prom_series;
                remote.open = config.prom_open;
            } else if pve {
                let nodes = config.nodes_per_cluster.max(1);
                remote.token_id = "fleetpoll@pve!poll".into();
                remote.nodes = (1..=nodes).map(|n| format!("{id}-n{n}")).collect();
                remote.guests = (0..config.guests_per_cluster)
                    .map(|g| {
                        let h = hash(&[seed, index, g as u64, 0x6E57]);
                        let vmid = 100 + g as u32;
                        let reboots = Boots::new(hash(&[seed, index, u64::from(vmid)]), 5, 60);
                        Guest {
                            vmid,
                            name: guest_name(h, vmid),
                            lxc: h.is_multiple_of(3),
                            node: g % nodes,
                            life: GuestLife::new(
                                hash(&[h, 0x11FE]),
                                config.churn.guest_period_secs,
                                !(h >> 8).is_multiple_of(5),
                                reboots,
                            ),
                        }
                    })
                    .collect();
                const STORAGE_NAMES: [&str; 4] = ["local", "local-lvm", "ceph-pool", "nfs-backup"];
                for node in 0..nodes {
                    for s in 0..config.storages_per_node {
                        let name = match STORAGE_NAMES.get(s) {
                            Some(name) => (*name).to_string(),
                            None => format!("store{s}"),
                        };
                        remote.storages.push(Storage { node, name });
                    }
                }
            } else {
                remote.token_id = "fleetpoll@pbs!poll".into();
                remote.nodes = vec![id.clone()];
                remote.datastores = (1..=config.datastores_per_pbs)
                    .map(|d| format!("store{d}"))
                    .collect();
            }
            for (rule_index, rule) in config.faults.iter().enumerate() {
                if rule.target.selects(seed, rule_index, &remote.id, index) {
                    remote.faults.apply(&rule.fault);
                }
            }
            remotes.push(remote);
        }
        Fleet {
            seed,
            task_interval_secs: config.task_interval_secs.max(10),
            remotes,
            churn: config.churn.clone(),
        }
    }

    /// The remote with this id.
    pub(crate) fn remote(&self, id: &str) -> Option<&SimRemote> {
        self.remotes.iter().find(|r| r.id == id)
    }

    /// When node `node` of `remote` boots and goes offline. The churn takes only PVE
    /// cluster nodes offline: a PBS is one host, its outage is the `outage` fault's.
    pub(crate) fn node_schedule(&self, remote: &SimRemote, node: usize) -> NodeSchedule {
        let outages = self
            .churn
            .node_outages
            .filter(|_| remote.kind == RemoteKind::Pve);
        let key = hash(&[self.seed, remote.index, node as u64, 0x0DE5]);
        NodeSchedule::new(remote.node_boots(self.seed, node), outages, key)
    }

    /// Whether node `node` of `remote` runs at `ts` as the remote's clock shows it, with
    /// `faults` in force now: neither the `node-offline` fault nor the churn took it down.
    pub(crate) fn node_up(
        &self,
        remote: &SimRemote,
        faults: &Faults,
        node: usize,
        ts: i64,
    ) -> bool {
        !faults.node_offline(node, remote.nodes.len())
            && !self.node_schedule(remote, node).offline_at(ts)
    }
}

/// What guests are called: a role drawn from the hash, then the vmid (`db-104`).
fn guest_name(h: u64, vmid: u32) -> String {
    const ROLES: [&str; 12] = [
        "web", "db", "mail", "build", "cache", "proxy", "git", "ci", "dns", "backup", "monitor",
        "files",
    ];
    format!(
        "{}-{vmid}",
        ROLES[((h >> 20) % ROLES.len() as u64) as usize]
    )
}

/// A token secret in the UUID shape PVE and PBS hand out, derived from the seed.
fn secret(seed: u64, index: u64) -> String {
    let a = hash(&[seed, index, 0x5EC1]);
    let b = hash(&[seed, index, 0x5EC2]);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// A duration in whole milliseconds drawn in `[base, base + jitter]` from a hash.
pub(crate) fn jittered(base: Duration, jitter: Duration, h: u64) -> Duration {
    if jitter.is_zero() {
        return base;
    }
    base + Duration::from_millis(h % (jitter.as_millis() as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_builds_the_same_fleet_and_another_seed_another() {
        let config = SimConfig::default();
        let a = Fleet::build(&config);
        let b = Fleet::build(&config);
        assert_eq!(a.remotes.len(), 3);
        assert_eq!(a.remotes[0].secret, b.remotes[0].secret);
        assert_eq!(a.remotes[0].guests.len(), 30);
        let c = Fleet::build(&SimConfig { seed: 2, ..config });
        assert_ne!(a.remotes[0].secret, c.remotes[0].secret);
    }

    #[test]
    fn boots_recur_within_their_period() {
        let boots = Boots::new(12_345, 60, 120);
        let ts = 1_800_000_000;
        let last = boots.last_at(ts);
        assert!(last <= ts && ts - last < 120 * 86_400);
        assert_eq!(boots.last_at(last), last);
        assert_eq!(boots.last_at(last - 1), last - boots.period);
        assert_eq!(Boots::never().last_at(ts), i64::MAX);
    }

    #[test]
    fn the_per_node_layout_numbers_addresses_by_remote_and_node() {
        let ip = |i, n| Listen::node_ip(DEFAULT_ADDRESS_BASE, i, n);
        assert_eq!(ip(0, 0).unwrap(), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(ip(0, 2).unwrap(), Ipv4Addr::new(127, 1, 0, 3));
        assert_eq!(ip(1, 0).unwrap(), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(ip(999, 0).unwrap(), Ipv4Addr::new(127, 4, 231, 1));
        assert!(ip(0, 255).unwrap_err().contains("255 nodes"));
        assert!(ip(65_500, 0).unwrap_err().contains("127.0.0.0/8"));
        let outside = Listen::node_ip(Ipv4Addr::new(10, 0, 0, 0), 0, 0);
        assert!(outside.unwrap_err().contains("127.0.0.0/8"));
    }

    #[test]
    fn kinds_get_their_own_token_header_format() {
        let fleet = Fleet::build(&SimConfig::default());
        let pve = fleet.remote("pve-1").unwrap();
        let pbs = fleet.remote("pbs-1").unwrap();
        assert!(pve
            .expected_authorization()
            .starts_with("PVEAPIToken=fleetpoll@pve!poll="));
        assert!(pbs
            .expected_authorization()
            .starts_with("PBSAPIToken=fleetpoll@pbs!poll:"));
        assert_eq!(pbs.datastores, vec!["store1", "store2"]);
        assert_eq!(pve.nodes, vec!["pve-1-n1", "pve-1-n2", "pve-1-n3"]);
    }
}

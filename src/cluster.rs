//! Sharding: which instance of a sharded deployment polls which remote. A remote's owner
//! is `(low 64 bits, big-endian, of the MD5 of its id) mod shard_count` — what
//! Prometheus' `hashmod` relabel action computes — so every instance of one config
//! agrees on the split without talking to the others, and a Prometheus set-up can
//! reproduce it. An instance polls (metrics and tasks) only the remotes it owns; the
//! others it only lists (`GET /api/v1/remotes?all=true`).

use std::sync::{Arc, RwLock};

use fleetpoll_actors::RemoteKind;
use md5::{Digest, Md5};
use serde::Serialize;

/// The shard that owns `remote` among `shard_count` (0 is read as 1: one shard).
pub fn owner(remote: &str, shard_count: u32) -> u32 {
    let digest = Md5::digest(remote.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&digest[8..16]);
    // The remainder is below `shard_count`, so it fits.
    (u64::from_be_bytes(low) % u64::from(shard_count.max(1))) as u32
}

/// This instance's place in the deployment (`[cluster]`, resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shard {
    /// The instance's name (`cluster.instance`, by default the host name).
    pub instance: String,
    /// The shard this instance polls, below `shard_count`.
    pub shard_index: u32,
    /// How many instances share the remotes.
    pub shard_count: u32,
}

impl Shard {
    /// One instance polling everything, named `instance`.
    pub fn single(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            shard_index: 0,
            shard_count: 1,
        }
    }

    /// Whether this instance polls `remote`.
    pub fn owns(&self, remote: &str) -> bool {
        owner(remote, self.shard_count) == self.shard_index
    }
}

/// A configured remote that another shard polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherShardRemote {
    /// The remote's id.
    pub remote: String,
    /// Its kind.
    pub kind: RemoteKind,
    /// The shard that polls it.
    pub shard: u32,
}

/// What the API knows of the deployment: this instance's shard (fixed until a restart)
/// and the remotes of the other shards (replaced by each reload).
#[derive(Debug)]
pub struct ClusterView {
    shard: Shard,
    others: RwLock<Arc<Vec<OtherShardRemote>>>,
}

impl ClusterView {
    /// The view of `shard`, whose siblings poll `others`.
    pub fn new(shard: Shard, others: Vec<OtherShardRemote>) -> Self {
        Self {
            shard,
            others: RwLock::new(Arc::new(others)),
        }
    }

    /// This instance's shard.
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// The remotes the other shards poll, sorted by id.
    pub fn others(&self) -> Arc<Vec<OtherShardRemote>> {
        self.others
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the other shards' remotes (after a reload).
    pub fn set_others(&self, others: Vec<OtherShardRemote>) {
        *self.others.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(others);
    }

    /// The shard of a remote another shard polls, if it is configured at all.
    pub fn other_owner(&self, remote: &str) -> Option<u32> {
        self.others()
            .iter()
            .find(|r| r.remote == remote)
            .map(|r| r.shard)
    }
}

/// The machine's host name, the default `cluster.instance` (`localhost` when unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected shards were computed independently of this code, with Python:
    /// `d = hashlib.md5(s.encode()).digest(); low = int.from_bytes(d[8:16], "big")`,
    /// then `low % n` — the same arithmetic as Prometheus' `hashmod` (its `sum64` keeps
    /// bytes 8..16 of the digest, big-endian).
    #[test]
    fn owners_match_prometheus_hashmod() {
        // (id, low 64 bits, mod 3, mod 7, mod 1000)
        let known: [(&str, u64, u32, u32, u32); 5] = [
            ("pve-1", 14_861_056_270_327_489_241, 2, 5, 241),
            ("pbs-1", 11_948_550_185_181_962_452, 1, 2, 452),
            ("remote-a", 26_940_106_342_640_107, 1, 1, 107),
            ("", 16_825_458_760_271_544_958, 1, 1, 958),
            ("fleetpoll", 6_264_644_142_512_534_417, 2, 2, 417),
        ];
        for (id, low, m3, m7, m1000) in known {
            assert_eq!(owner(id, u32::MAX), (low % u64::from(u32::MAX)) as u32);
            assert_eq!(owner(id, 3), m3, "{id:?} mod 3");
            assert_eq!(owner(id, 7), m7, "{id:?} mod 7");
            assert_eq!(owner(id, 1000), m1000, "{id:?} mod 1000");
            assert_eq!(owner(id, 1), 0);
        }
    }

    #[test]
    fn every_remote_has_exactly_one_owner() {
        let shards: Vec<Shard> = (0..4)
            .map(|i| Shard {
                instance: format!("fp-{i}"),
                shard_index: i,
                shard_count: 4,
            })
            .collect();
        for n in 0..200 {
            let id = format!("remote-{n}");
            let owners = shards.iter().filter(|s| s.owns(&id)).count();
            assert_eq!(owners, 1, "{id}");
        }
        assert!(Shard::single("x").owns("anything"));
    }
}

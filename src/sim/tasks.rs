//! Simulated tasks: each node starts one task per time slot at a seeded moment (none
//! while the churn has it offline); a task runs for a seeded duration — seconds to
//! hours, or with the churn's `long_task_share` 1 to 5 days — and ends `OK` or with an
//! error. Tasks are computed for the asked time range on demand, never stored.

use fleetpoll_actors::RemoteKind;
use serde_json::{json, Value};

use super::fleet::{hash, unit, Fleet, SimRemote};
use crate::remote::Upid;

/// How far back a remote remembers tasks.
pub(crate) const TASK_MEMORY_SECS: i64 = 30 * 86_400;

const PVE_TYPES: &[(&str, bool)] = &[
    ("vzdump", true),
    ("qmstart", true),
    ("qmstop", true),
    ("vzstart", true),
    ("qmigrate", true),
    ("aptupdate", false),
    ("vncproxy", true),
    ("startall", false),
];
const PBS_TYPES: &[(&str, bool)] = &[
    ("backup", true),
    ("garbage_collection", true),
    ("verificationjob", true),
    ("prune", true),
    ("syncjob", true),
    ("logrotate", false),
];

/// One simulated task.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SimTask {
    pub(crate) upid: Upid,
    pub(crate) end: i64,
    pub(crate) status: String,
}

impl SimTask {
    /// Whether it still runs at `now`.
    pub(crate) fn running(&self, now: i64) -> bool {
        self.end > now
    }

    /// The list item as the remote's task listing shows it at `now`.
    pub(crate) fn list_item(&self, kind: RemoteKind, now: i64) -> Value {
        let u = &self.upid;
        let mut item = json!({
            "upid": u.to_string(),
            "node": u.node,
            "pid": u.pid,
            "pstart": u.pstart,
            "starttime": u.starttime,
            "user": u.user,
        });
        if kind == RemoteKind::Pbs {
            item["worker_type"] = json!(u.worker_type);
            if !u.worker_id.is_empty() {
                item["worker_id"] = json!(u.worker_id);
            }
        } else {
            item["type"] = json!(u.worker_type);
            item["id"] = json!(u.worker_id);
        }
        if !self.running(now) {
            item["endtime"] = json!(self.end);
            item["status"] = json!(self.status);
        }
        item
    }

    /// The task's status reply at `now`.
    pub(crate) fn status_reply(&self, kind: RemoteKind, now: i64) -> Value {
        let mut item = self.list_item(kind, now);
        let obj = item.as_object_mut().expect("list items are objects");
        obj.remove("endtime");
        obj.remove("status");
        if self.running(now) {
            item["status"] = json!("running");
        } else {
            item["status"] = json!("stopped");
            item["exitstatus"] = json!(self.status);
        }
        item
    }
}

/// The task that node `node` of `remote` started in time slot `slot`, if it started by `now`.
pub(crate) fn task_in_slot(
    fleet: &Fleet,
    remote: &SimRemote,
    node: usize,
    slot: i64,
    now: i64,
) -> Option<SimTask> {
    let (seed, interval) = (fleet.seed, fleet.task_interval_secs);
    let h = hash(&[seed, remote.index, node as u64, slot as u64, 0x7A5C]);
    let start = slot * interval + (h % interval as u64) as i64;
    if start > now || start < 0 || fleet.node_schedule(remote, node).offline_at(start) {
        return None;
    }
    let h2 = hash(&[h, 1]);
    let duration = if unit(&[h2, 0x1096]) < fleet.churn.long_task_share {
        86_400 + (h2 >> 8) % (4 * 86_400)
    } else {
        match h2 % 100 {
            0..=69 => 2 + (h2 >> 8) % 58,
            70..=94 => 60 + (h2 >> 8) % 840,
            _ => 3600 + (h2 >> 8) % 7200,
        }
    } as i64;
    let status = match (h2 >> 32) % 20 {
        0 => "WARNINGS: 1".to_string(),
        1 => "job errors".to_string(),
        _ => "OK".to_string(),
    };
    let pbs = remote.kind == RemoteKind::Pbs;
    let types = if pbs { PBS_TYPES } else { PVE_TYPES };
    let (worker_type, has_id) = types[((h >> 40) % types.len() as u64) as usize];
    let worker_id = if !has_id {
        String::new()
    } else if pbs {
        let stores = &remote.datastores;
        stores
            .get(((h >> 20) % stores.len().max(1) as u64) as usize)
            .cloned()
            .unwrap_or_default()
    } else {
        // A guest of this node.
        let here: Vec<u32> = remote
            .guests
            .iter()
            .filter(|g| g.node == node)
            .map(|g| g.vmid)
            .collect();
        match here.get(((h >> 20) % here.len().max(1) as u64) as usize) {
            Some(vmid) => vmid.to_string(),
            None => String::new(),
        }
    };
    let boot = remote.node_boots(seed, node).last_at(start);
    let user = if (h >> 50).is_multiple_of(4) {
        "admin@pve".to_string()
    } else {
        "root@pam".to_string()
    };
    let upid = Upid {
        node: remote.nodes[node].clone(),
        pid: (1000 + (h >> 12) % 4_000_000) as u32,
        pstart: (((start - boot).max(0) as u64) * 100).min(0xF_FFFF_FFFF),
        task_id: pbs.then_some(slot as u64 & 0xFFFF_FFFF),
        starttime: start,
        worker_type: worker_type.to_string(),
        worker_id,
        user,
    };
    Some(SimTask {
        upid,
        end: start + duration,
        status,
    })
}

/// The tasks of node `node` that started in `[since, until]` by `now`, newest first.
pub(crate) fn tasks_between(
    fleet: &Fleet,
    remote: &SimRemote,
    node: usize,
    since: i64,
    until: i64,
    now: i64,
) -> Vec<SimTask> {
    let since = since.max(now - TASK_MEMORY_SECS);
    let until = until.min(now);
    if until < since {
        return Vec::new();
    }
    let interval = fleet.task_interval_secs;
    let mut out = Vec::new();
    let mut slot = until.div_euclid(interval);
    while slot >= since.div_euclid(interval) {
        if let Some(task) = task_in_slot(fleet, remote, node, slot, now) {
            if (since..=until).contains(&task.upid.starttime) {
                out.push(task);
            }
        }
        slot -= 1;
    }
    out
}

/// Finds a task by its UPID, if the remote has it.
pub(crate) fn find_task(
    fleet: &Fleet,
    remote: &SimRemote,
    upid: &Upid,
    now: i64,
) -> Option<SimTask> {
    let node = remote.nodes.iter().position(|n| *n == upid.node)?;
    let slot = upid.starttime.div_euclid(fleet.task_interval_secs);
    task_in_slot(fleet, remote, node, slot, now).filter(|t| t.upid == *upid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fleet::{Fleet, SimConfig};

    fn fleet_every(task_interval_secs: i64) -> Fleet {
        Fleet::build(&SimConfig {
            task_interval_secs,
            ..SimConfig::default()
        })
    }

    #[test]
    fn tasks_in_a_range_are_newest_first_with_valid_upids() {
        let fleet = fleet_every(600);
        for remote in &fleet.remotes {
            let now = 1_700_000_000;
            let tasks = tasks_between(&fleet, remote, 0, now - 86_400, now, now);
            assert!((140..=145).contains(&tasks.len()), "{}", tasks.len());
            assert!(tasks
                .windows(2)
                .all(|w| w[0].upid.starttime >= w[1].upid.starttime));
            for t in &tasks {
                let text = t.upid.to_string();
                assert_eq!(Upid::parse(&text).unwrap(), t.upid);
                assert_eq!(t.upid.is_pbs(), remote.kind == RemoteKind::Pbs);
                assert!(find_task(&fleet, remote, &t.upid, now).is_some());
            }
        }
    }

    #[test]
    fn tasks_finish_over_time() {
        let fleet = fleet_every(60);
        let remote = &fleet.remotes[0];
        let now = 1_700_000_000;
        let tasks = tasks_between(&fleet, remote, 0, now - 86_400, now, now);
        let running = tasks.iter().find(|t| t.running(now)).expect("one runs");
        let item = running.list_item(remote.kind, now);
        assert!(item.get("endtime").is_none() && item.get("status").is_none());
        assert_eq!(running.status_reply(remote.kind, now)["status"], "running");
        let later = running.end;
        let done = running.status_reply(remote.kind, later);
        assert_eq!(done["status"], "stopped");
        assert!(done["exitstatus"].is_string());
    }

    #[test]
    fn a_task_from_another_node_or_the_future_is_not_found() {
        let fleet = fleet_every(600);
        let remote = &fleet.remotes[0];
        let now = 1_700_000_000;
        let task = tasks_between(&fleet, remote, 0, now - 3600, now, now).remove(0);
        let mut other = task.upid.clone();
        other.node = "elsewhere".into();
        assert!(find_task(&fleet, remote, &other, now).is_none());
        assert!(find_task(&fleet, remote, &task.upid, task.upid.starttime - 1).is_none());
    }

    #[test]
    fn with_long_tasks_some_started_days_ago_still_run_and_end_later() {
        let fleet = Fleet::build(&SimConfig {
            churn: crate::sim::churn::Churn {
                long_task_share: 0.05,
                ..Default::default()
            },
            ..SimConfig::default()
        });
        let remote = &fleet.remotes[0];
        let now = 1_700_000_000;
        let tasks = tasks_between(&fleet, remote, 0, now - 7 * 86_400, now, now);
        let old_running: Vec<&SimTask> = tasks
            .iter()
            .filter(|t| t.running(now) && now - t.upid.starttime > 86_400)
            .collect();
        assert!(
            !old_running.is_empty(),
            "a task started over a day ago still runs"
        );
        for t in old_running {
            assert!(t.end - t.upid.starttime <= 5 * 86_400);
            let found = find_task(&fleet, remote, &t.upid, t.end).unwrap();
            assert_eq!(found.status_reply(remote.kind, t.end)["status"], "stopped");
        }
        let short = tasks_between(&fleet_every(600), remote, 0, now - 7 * 86_400, now, now);
        assert!(short.iter().all(|t| t.end - t.upid.starttime < 3 * 3600));
    }

    #[test]
    fn an_offline_node_starts_no_tasks() {
        let fleet = Fleet::build(&SimConfig {
            task_interval_secs: 60,
            churn: crate::sim::churn::Churn {
                node_outages: Some(crate::sim::churn::NodeOutages::new(3600, 900).unwrap()),
                ..Default::default()
            },
            ..SimConfig::default()
        });
        let remote = &fleet.remotes[0];
        let now = 1_700_000_000;
        let tasks = tasks_between(&fleet, remote, 0, now - 86_400, now, now);
        let schedule = fleet.node_schedule(remote, 0);
        assert!(tasks.iter().all(|t| !schedule.offline_at(t.upid.starttime)));
        // Without the outages, about a fifth more (900 s × 0.5–1.5 of each hour).
        let steady = tasks_between(&fleet_every(60), remote, 0, now - 86_400, now, now);
        assert!(
            tasks.len() < steady.len() * 9 / 10,
            "{} vs {}",
            tasks.len(),
            steady.len()
        );
    }
}

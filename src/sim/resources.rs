//! The simulated resource lists: PVE's `GET /cluster/resources` (nodes, guests with
//! names and status, storages) and PBS's `GET /status/datastore-usage`, with the values
//! the metric export shows for the same generation, bent by the `node-offline`,
//! `datastore-full` and `bad-resources` faults and the churn (nodes offline, guests
//! started and stopped).

use serde_json::{json, Value};

use super::faults::Faults;
use super::fleet::{Fleet, SimRemote};
use super::metrics::{entities, Entity, GENERATION_SECS};

/// The reply of a resource list that `bad-resources` sends: JSON, but not the promised
/// shape (an id that is a number, a type that is missing).
const BAD_REPLY: &[u8] = br#"{"data":[{"id":42,"status":"online"}]}"#;

/// `GET /cluster/resources` of a PVE cluster as its clock shows `now`.
pub(crate) fn render_cluster_resources(
    fleet: &Fleet,
    remote: &SimRemote,
    faults: &Faults,
    now: i64,
) -> Vec<u8> {
    if faults.bad_resources {
        return BAD_REPLY.to_vec();
    }
    let ts = now.div_euclid(GENERATION_SECS) * GENERATION_SECS;
    let entities = entities(fleet, remote);
    let entity = |id: &str| entities.iter().find(|e| e.id == id);
    let offline = |node: usize| !fleet.node_up(remote, faults, node, now);
    let mut items = Vec::new();
    for (n, node) in remote.nodes.iter().enumerate() {
        let id = format!("node/{node}");
        let mut item = json!({ "id": id, "type": "node", "node": node, "name": node });
        if offline(n) {
            item["status"] = "offline".into();
        } else if let Some(e) = entity(&id) {
            item["status"] = "online".into();
            usage(&mut item, e, ts);
        }
        items.push(item);
    }
    for guest in &remote.guests {
        let kind = if guest.lxc { "lxc" } else { "qemu" };
        let id = format!("{kind}/{}", guest.vmid);
        let node = &remote.nodes[guest.node];
        let mut item = json!({
            "id": id, "type": kind, "vmid": guest.vmid, "node": node, "name": guest.name,
            "template": 0, "tags": "",
        });
        if offline(guest.node) {
            // A node that is gone reports nothing about its guests.
            item["status"] = "unknown".into();
        } else if let Some(e) = entity(&id) {
            let running = guest.life.running_at(ts);
            item["status"] = if running { "running" } else { "stopped" }.into();
            usage(&mut item, e, ts);
        }
        items.push(item);
    }
    for storage in &remote.storages {
        let node = &remote.nodes[storage.node];
        let id = format!("storage/{node}/{}", storage.name);
        let mut item = json!({
            "id": id, "type": "storage", "node": node, "storage": storage.name,
            "plugintype": "dir", "content": "images,rootdir", "shared": 0,
        });
        if offline(storage.node) {
            item["status"] = "unknown".into();
        } else if let Some(e) = entity(&id) {
            item["status"] = "available".into();
            item["disk"] = whole(e.current("disk_used", ts));
            item["maxdisk"] = whole(e.current("disk_total", ts));
        }
        items.push(item);
    }
    json!({ "data": items }).to_string().into_bytes()
}

/// `GET /status/datastore-usage` of a PBS as its clock shows `now`.
pub(crate) fn render_datastore_usage(
    fleet: &Fleet,
    remote: &SimRemote,
    faults: &Faults,
    now: i64,
) -> Vec<u8> {
    if faults.bad_resources {
        return BAD_REPLY.to_vec();
    }
    let ts = now.div_euclid(GENERATION_SECS) * GENERATION_SECS;
    let entities = entities(fleet, remote);
    let items: Vec<Value> = remote
        .datastores
        .iter()
        .enumerate()
        .filter_map(|(d, store)| {
            let e = entities
                .iter()
                .find(|e| e.id == format!("datastore/{store}"))?;
            let total = e.current("disk_total", ts).unwrap_or(0.0);
            let used = match faults.datastore_full_pct {
                Some(pct) if d == 0 => (total * pct / 100.0).round(),
                _ => e.current("disk_used", ts).unwrap_or(0.0),
            };
            Some(json!({
                "store": store,
                "total": total as u64,
                "used": used as u64,
                "avail": (total - used).max(0.0) as u64,
            }))
        })
        .collect();
    json!({ "data": items }).to_string().into_bytes()
}

/// A byte or second count as the API writes it: a whole number.
fn whole(value: Option<f64>) -> Value {
    value.map_or(Value::Null, |v| json!(v.max(0.0).round() as u64))
}

/// The use fields of a node or guest: the values its metric export has at `ts` (a
/// stopped guest uses nothing).
fn usage(item: &mut Value, e: &Entity, ts: i64) {
    let cpu = e.current("cpu_current", ts).unwrap_or(0.0);
    item["cpu"] = json!(cpu);
    item["maxcpu"] = json!(e.current("cpu_max", ts).unwrap_or(0.0));
    item["mem"] = e
        .current("mem_used", ts)
        .map_or(json!(0), |v| whole(Some(v)));
    item["maxmem"] = whole(e.current("mem_total", ts));
    item["disk"] = e
        .current("disk_used", ts)
        .map_or(json!(0), |v| whole(Some(v)));
    item["maxdisk"] = whole(e.current("disk_total", ts));
    item["uptime"] = whole(e.current("uptime", ts));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::faults::Fault;
    use crate::sim::fleet::{Fleet, SimConfig};

    const NOW: i64 = 1_750_000_000;

    fn items(body: &[u8]) -> Vec<Value> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["data"].as_array().unwrap().clone()
    }

    #[test]
    fn a_cluster_lists_its_nodes_named_guests_and_storages_with_their_status() {
        let fleet = Fleet::build(&SimConfig::default());
        let pve = fleet.remote("pve-1").unwrap();
        let list = items(&render_cluster_resources(
            &fleet,
            pve,
            &Faults::default(),
            NOW,
        ));
        let of = |t: &str| list.iter().filter(|i| i["type"] == t).count();
        assert_eq!((of("node"), of("storage")), (3, 6));
        assert_eq!(of("qemu") + of("lxc"), 30);
        let guest = list
            .iter()
            .find(|i| i["id"] == "qemu/100" || i["id"] == "lxc/100");
        let guest = guest.unwrap();
        assert!(guest["name"].as_str().unwrap().ends_with("-100"));
        let running = list.iter().filter(|i| i["status"] == "running").count();
        let stopped = list.iter().filter(|i| i["status"] == "stopped").count();
        assert!(running > 0 && stopped > 0 && running + stopped == 30);
        for stopped in list.iter().filter(|i| i["status"] == "stopped") {
            assert_eq!(
                (stopped["cpu"].as_f64(), stopped["uptime"].as_u64()),
                (Some(0.0), Some(0))
            );
        }
        assert!(list
            .iter()
            .all(|i| i["type"] != "node" || i["status"] == "online"));
        // The same generation renders the same list.
        assert_eq!(
            render_cluster_resources(&fleet, pve, &Faults::default(), NOW),
            render_cluster_resources(&fleet, pve, &Faults::default(), NOW + 1)
        );
    }

    #[test]
    fn an_offline_node_and_its_guests_report_no_values() {
        let fleet = Fleet::build(&SimConfig::default());
        let pve = fleet.remote("pve-1").unwrap();
        let faults = Faults::from_list(&[Fault::NodeOffline(1)]);
        let list = items(&render_cluster_resources(&fleet, pve, &faults, NOW));
        let node = list.iter().find(|i| i["id"] == "node/pve-1-n3").unwrap();
        assert_eq!(node["status"], "offline");
        assert!(node.get("cpu").is_none());
        let on_it: Vec<_> = list
            .iter()
            .filter(|i| i["node"] == "pve-1-n3" && i["type"] != "node")
            .collect();
        assert!(!on_it.is_empty() && on_it.iter().all(|i| i["status"] == "unknown"));
    }

    #[test]
    fn a_pbs_lists_its_datastores_and_the_fault_fills_the_first() {
        let fleet = Fleet::build(&SimConfig::default());
        let pbs = fleet.remote("pbs-1").unwrap();
        let list = items(&render_datastore_usage(
            &fleet,
            pbs,
            &Faults::default(),
            NOW,
        ));
        assert_eq!(list.len(), 2);
        for d in &list {
            let (total, used, avail) = (
                d["total"].as_u64().unwrap(),
                d["used"].as_u64().unwrap(),
                d["avail"].as_u64().unwrap(),
            );
            assert!(used < total && used + avail == total, "{d}");
        }
        let full = Faults::from_list(&[Fault::DatastoreFull(95.0)]);
        let list = items(&render_datastore_usage(&fleet, pbs, &full, NOW));
        let share = list[0]["used"].as_f64().unwrap() / list[0]["total"].as_f64().unwrap();
        assert!((share - 0.95).abs() < 1e-6, "{share}");
        let bad = Faults::from_list(&[Fault::BadResources]);
        assert_eq!(render_datastore_usage(&fleet, pbs, &bad, NOW), BAD_REPLY);
    }

    #[test]
    fn churning_guests_change_status_over_time_the_same_way_for_the_same_seed() {
        let config = |seed| SimConfig {
            seed,
            churn: crate::sim::churn::Churn {
                guest_period_secs: 600,
                ..Default::default()
            },
            ..SimConfig::default()
        };
        let statuses = |seed| {
            let fleet = Fleet::build(&config(seed));
            let pve = fleet.remote("pve-1").unwrap().clone();
            (0..12)
                .map(|i| {
                    items(&render_cluster_resources(
                        &fleet,
                        &pve,
                        &Faults::default(),
                        NOW + i * 600,
                    ))
                    .iter()
                    .filter(|i| i["type"] == "qemu" || i["type"] == "lxc")
                    .map(|i| i["status"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        let a = statuses(1);
        assert_eq!(a, statuses(1), "deterministic per seed");
        assert_ne!(a, statuses(2), "another seed, another history");
        assert!(a.windows(2).any(|w| w[0] != w[1]), "guests start and stop");
        let fleet = Fleet::build(&config(1));
        let pve = fleet.remote("pve-1").unwrap();
        for list in [0, 3, 7].map(|i| {
            items(&render_cluster_resources(
                &fleet,
                pve,
                &Faults::default(),
                NOW + i * 600,
            ))
        }) {
            for guest in list.iter().filter(|i| i["type"] == "qemu") {
                // A running guest uses memory (its metrics say so); a stopped one none.
                let running = guest["status"] == "running";
                assert_eq!(guest["mem"].as_u64().unwrap() > 0, running, "{guest}");
            }
        }
    }
}

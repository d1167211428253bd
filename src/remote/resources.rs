//! The resource list replies: PVE's `GET /cluster/resources` and PBS's
//! `GET /status/datastore-usage`, parsed into the engine's [`Resource`]s. A reply that
//! is not the promised JSON, or whose entries lack an id or a type, fails whole with a
//! `BadReply` error that says what was wrong; so does one with more entries than
//! [`MAX_RESOURCES`].

use fleetpoll_actors::{ErrorClass, RemoteId, Resource, SourceError};
use serde::Deserialize;

use super::pbs::PBS_NODE;
use super::reply::parse_data;

/// The most entries one resource list may hold (a cluster of 100 nodes with 10,000
/// guests each is far below it); more is taken for a broken reply.
pub const MAX_RESOURCES: usize = 1_000_000;

/// One entry of `GET /cluster/resources`. Numbers are read as floats: PVE writes some
/// counts as floats on some versions, and a float where an integer belongs is no reason
/// to refuse the list.
#[derive(Debug, Deserialize)]
struct PveResourceItem {
    id: String,
    #[serde(rename = "type")]
    resource_type: String,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// A storage's name (the entry has no `name`).
    #[serde(default)]
    storage: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    cpu: Option<f64>,
    #[serde(default)]
    maxcpu: Option<f64>,
    #[serde(default)]
    mem: Option<f64>,
    #[serde(default)]
    maxmem: Option<f64>,
    #[serde(default)]
    disk: Option<f64>,
    #[serde(default)]
    maxdisk: Option<f64>,
    #[serde(default)]
    uptime: Option<f64>,
}

/// One entry of `GET /status/datastore-usage`.
#[derive(Debug, Deserialize)]
struct DatastoreUsageItem {
    store: String,
    #[serde(default)]
    total: Option<f64>,
    #[serde(default)]
    used: Option<f64>,
}

/// A count of bytes or seconds: whole, never negative; `NaN` or a negative value is
/// unknown.
fn count(value: Option<f64>) -> Option<u64> {
    value
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.round() as u64)
}

/// A share or a number of CPUs: finite and not negative, else unknown.
fn share(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite() && *v >= 0.0)
}

fn bad(remote: &RemoteId, what: String) -> SourceError {
    SourceError::new(ErrorClass::BadReply, format!("remote {remote}: {what}"))
}

fn check_len(remote: &RemoteId, len: usize, what: &str) -> Result<(), SourceError> {
    if len > MAX_RESOURCES {
        return Err(bad(
            remote,
            format!("{what} has {len} entries, more than the {MAX_RESOURCES} allowed"),
        ));
    }
    Ok(())
}

/// Parses the reply of PVE's `GET /cluster/resources`.
pub(crate) fn parse_cluster_resources(
    remote: &RemoteId,
    body: &[u8],
) -> Result<Vec<Resource>, SourceError> {
    let items: Vec<PveResourceItem> = parse_data(remote, body)?;
    check_len(remote, items.len(), "the resource list")?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            if item.id.is_empty() || item.resource_type.is_empty() {
                return Err(bad(
                    remote,
                    format!("resource list entry {i} has an empty id or type"),
                ));
            }
            Ok(Resource {
                name: item.name.or(item.storage),
                node: item.node,
                status: item.status,
                cpu: share(item.cpu),
                maxcpu: share(item.maxcpu),
                mem: count(item.mem),
                maxmem: count(item.maxmem),
                disk: count(item.disk),
                maxdisk: count(item.maxdisk),
                uptime: count(item.uptime),
                id: item.id,
                resource_type: item.resource_type,
            })
        })
        .collect()
}

/// Parses the reply of PBS's `GET /status/datastore-usage`: one `datastore/<store>`
/// resource per datastore, its use as `disk` of `maxdisk`.
pub(crate) fn parse_datastore_usage(
    remote: &RemoteId,
    body: &[u8],
) -> Result<Vec<Resource>, SourceError> {
    let items: Vec<DatastoreUsageItem> = parse_data(remote, body)?;
    check_len(remote, items.len(), "the datastore usage")?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            if item.store.is_empty() {
                return Err(bad(
                    remote,
                    format!("datastore usage entry {i} has an empty store name"),
                ));
            }
            let mut r = Resource::new(format!("datastore/{}", item.store), "datastore");
            r.node = Some(PBS_NODE.to_string());
            r.status = Some("available".into());
            r.disk = count(item.used);
            r.maxdisk = count(item.total);
            r.name = Some(item.store);
            Ok(r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> RemoteId {
        RemoteId::new("r")
    }

    #[test]
    fn cluster_resources_become_named_resources() {
        let body = br#"{"data":[
            {"id":"qemu/100","type":"qemu","vmid":100,"node":"n1","name":"web-100","status":"running",
             "cpu":0.25,"maxcpu":4,"mem":1073741824,"maxmem":4294967296,"disk":0,"maxdisk":34359738368,
             "uptime":3600,"template":0,"tags":"a;b"},
            {"id":"node/n1","type":"node","node":"n1","status":"online","cpu":0.1,"maxcpu":8.0,
             "mem":2.0e9,"maxmem":3.2e10,"uptime":86400},
            {"id":"node/n2","type":"node","node":"n2","status":"offline"},
            {"id":"storage/n1/local","type":"storage","node":"n1","storage":"local","status":"available",
             "disk":100,"maxdisk":1000},
            {"id":"sdn/n1/localnetwork","type":"sdn","node":"n1","status":"ok"}
        ]}"#;
        let list = parse_cluster_resources(&remote(), body).unwrap();
        assert_eq!(list.len(), 5);
        let vm = &list[0];
        assert_eq!(
            (
                vm.id.as_str(),
                vm.resource_type.as_str(),
                vm.name.as_deref(),
                vm.status.as_deref()
            ),
            ("qemu/100", "qemu", Some("web-100"), Some("running"))
        );
        assert_eq!(
            (vm.cpu, vm.maxcpu, vm.mem, vm.uptime),
            (Some(0.25), Some(4.0), Some(1 << 30), Some(3600))
        );
        assert_eq!(list[1].mem, Some(2_000_000_000), "a float count is read");
        assert_eq!(
            (list[2].status.as_deref(), list[2].cpu),
            (Some("offline"), None)
        );
        assert_eq!(
            list[3].name.as_deref(),
            Some("local"),
            "a storage is named by `storage`"
        );
        assert_eq!(list[4].resource_type, "sdn", "other types are kept");
    }

    #[test]
    fn a_bad_resource_list_is_a_bad_reply_that_says_why() {
        for (body, why) in [
            (
                &br#"{"data":[{"id":42,"status":"online"}]}"#[..],
                "invalid type",
            ),
            (br#"{"data":[{"id":"qemu/1"}]}"#, "missing field `type`"),
            (br#"{"data":{"id":"qemu/1"}}"#, "expected a sequence"),
            (br#"{"data":[{"id":"","type":"qemu"}]}"#, "empty id"),
            (br#"{"data":[{"id":"qemu/1","ty"#, "EOF"),
        ] {
            let err = parse_cluster_resources(&remote(), body).unwrap_err();
            assert_eq!(err.class, ErrorClass::BadReply);
            assert!(err.message.contains(why), "{why}: {err}");
            assert!(err.message.starts_with("remote r:"), "{err}");
        }
    }

    #[test]
    fn negative_or_missing_numbers_are_unknown() {
        let body = br#"{"data":[{"id":"lxc/1","type":"lxc","cpu":-1,"mem":null}]}"#;
        let r = &parse_cluster_resources(&remote(), body).unwrap()[0];
        assert_eq!((r.cpu, r.mem, r.maxmem), (None, None, None));
    }

    #[test]
    fn datastore_usage_becomes_datastore_resources() {
        let body =
            br#"{"data":[{"store":"store1","total":1000,"used":850,"avail":150,"history":[]},
            {"store":"store2","total":1000,"used":100,"avail":900}]}"#;
        let list = parse_datastore_usage(&remote(), body).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, "datastore/store1");
        assert_eq!(list[0].resource_type, "datastore");
        assert_eq!((list[0].disk, list[0].maxdisk), (Some(850), Some(1000)));
        assert_eq!(list[0].name.as_deref(), Some("store1"));
        let err = parse_datastore_usage(&remote(), br#"{"data":[{"total":1}]}"#).unwrap_err();
        assert!(err.message.contains("missing field `store`"), "{err}");
        let err = parse_datastore_usage(&remote(), br#"{"data":[{"store":""}]}"#).unwrap_err();
        assert!(err.message.contains("empty store name"), "{err}");
    }
}

//! Task records, batches and file helpers shared by the task cache tests.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;

use fleetpoll::engine::{RemoteId, TaskBatch, TaskQuery, TaskRecord, TaskStore, TaskWrite};
use fleetpoll::tasks::{TaskCache, TaskFilter};

pub const DAY: i64 = 86_400;
/// 2025-06-16 00:00:00 UTC.
pub const T0: i64 = 1_750_032_000;

pub fn pve(node: &str, pid: u32, start: i64, end: Option<i64>, status: Option<&str>) -> TaskRecord {
    pve_typed(node, pid, start, end, status, "qmstart", "root@pam")
}

pub fn pve_typed(
    node: &str,
    pid: u32,
    start: i64,
    end: Option<i64>,
    status: Option<&str>,
    task_type: &str,
    user: &str,
) -> TaskRecord {
    TaskRecord {
        upid: format!("UPID:{node}:{pid:08X}:0000ABCD:{start:08X}:{task_type}:100:{user}:"),
        node: node.to_string(),
        task_type: task_type.to_string(),
        task_id: Some("100".into()),
        user: user.to_string(),
        start_time: start,
        end_time: end,
        status: status.map(str::to_string),
    }
}

pub fn pbs(host: &str, counter: u64, start: i64, end: Option<i64>) -> TaskRecord {
    TaskRecord {
        upid: format!("UPID:{host}:000002B2:00000158:{counter:08X}:{start:08X}:garbage_collection:store1:root@pam:"),
        node: host.to_string(),
        task_type: "garbage_collection".into(),
        task_id: Some("store1".into()),
        user: "root@pam".into(),
        start_time: start,
        end_time: end,
        status: end.map(|_| "OK".to_string()),
    }
}

pub fn batch(remote: &str, tasks: Vec<TaskRecord>, complete: &[&str]) -> TaskWrite {
    TaskWrite {
        remote: RemoteId::new(remote),
        batch: TaskBatch {
            tasks,
            complete_nodes: complete.iter().map(|s| s.to_string()).collect(),
        },
        query: TaskQuery::default(),
    }
}

pub fn store(cache: &TaskCache, writes: Vec<TaskWrite>) {
    for r in cache.store_tasks(&writes) {
        r.unwrap();
    }
}

pub fn all(remote: &str) -> TaskFilter {
    TaskFilter {
        remote: Some(RemoteId::new(remote)),
        limit: 0,
        ..TaskFilter::default()
    }
}

pub fn magic_is_zstd(path: &Path) -> bool {
    std::fs::read(path)
        .unwrap()
        .starts_with(&[0x28, 0xB5, 0x2F, 0xFD])
}

pub fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

//! The task cache's workload: batches of finished tasks stored (each acknowledged
//! when `store` returns), the journal applied into the active file on a cadence, a
//! rotation at each new day (archives, compression past two, expiry past seven, the
//! state file and the index snapshot), the tracked tasks replaced now and then, and a
//! clean reopen midway.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use fleetpoll::engine::{RemoteId, TaskBatch, TaskQuery, TaskRecord, TaskRef, TaskWrite};
use fleetpoll::tasks::{TaskCache, TaskFilter};
use rand::rngs::StdRng;
use rand::Rng as _;

use super::Workload;

const DAY: i64 = 86_400;
/// 2025-06-16 00:00:00 UTC.
pub const T0: i64 = 1_750_032_000;
const TASKS_PER_BATCH: u32 = 3;

fn upid(pid: u32, start: i64) -> String {
    format!("UPID:n1:{pid:08X}:0000ABCD:{start:08X}:qmstart:100:root@pam:")
}

/// The tasks of batch `i`, on remote `r<i % 2>`, in day `i / per_day`.
pub fn batch(i: u32, per_day: u32) -> TaskWrite {
    let day = i64::from(i / per_day);
    let tasks = (0..TASKS_PER_BATCH)
        .map(|k| {
            let start = T0 + day * DAY + i64::from(i % per_day) * 100 + i64::from(k);
            TaskRecord {
                upid: upid(i * TASKS_PER_BATCH + k, start),
                node: "n1".into(),
                task_type: "qmstart".into(),
                task_id: Some("100".into()),
                user: "root@pam".into(),
                start_time: start,
                end_time: Some(start + 1),
                status: Some("OK".into()),
            }
        })
        .collect();
    TaskWrite {
        remote: RemoteId::new(format!("r{}", i % 2)),
        batch: TaskBatch {
            tasks,
            complete_nodes: vec!["n1".into()],
        },
        query: TaskQuery::default(),
    }
}

fn tracked(i: u32) -> Vec<TaskRef> {
    vec![TaskRef {
        remote: RemoteId::new("r0"),
        upid: upid(1_000_000 + i, T0),
    }]
}

pub struct TaskWorkload;

#[derive(Debug)]
pub struct TaskParams {
    batches: u32,
    per_day: u32,
    apply_every: u32,
    track_every: u32,
    reopen_at: Option<u32>,
}

#[derive(Debug, Default)]
pub struct TaskAcks {
    acked: BTreeSet<u32>,
    /// The tracked tasks last saved, and those being saved when the run stopped.
    tracked_acked: Option<Vec<TaskRef>>,
    tracked_tried: Option<Vec<TaskRef>>,
    rotations: u32,
}

impl Workload for TaskWorkload {
    type Params = TaskParams;
    type Acks = TaskAcks;

    fn params(&self, rng: &mut StdRng) -> TaskParams {
        let per_day = rng.random_range(2..=4);
        let batches = per_day * rng.random_range(2..=10);
        TaskParams {
            batches,
            per_day,
            apply_every: rng.random_range(1..=4),
            track_every: rng.random_range(2..=6),
            reopen_at: rng.random_bool(0.4).then(|| rng.random_range(1..batches)),
        }
    }

    fn run(&self, p: &TaskParams, dir: &Path, acks: &mut TaskAcks) {
        let Ok(mut cache) = TaskCache::open(dir, T0) else {
            return;
        };
        for i in 0..p.batches {
            let now = T0 + i64::from(i / p.per_day) * DAY;
            if p.reopen_at == Some(i) {
                drop(cache);
                match TaskCache::open(dir, now) {
                    Ok(reopened) => cache = reopened,
                    Err(_) => return,
                }
            }
            match cache.rotate_at(now) {
                Ok(rotated) => acks.rotations += u32::from(rotated),
                Err(_) => return,
            }
            if cache.store(&[batch(i, p.per_day)]).is_err() {
                return;
            }
            acks.acked.insert(i);
            if i % p.apply_every == p.apply_every - 1 && cache.apply().is_err() {
                return;
            }
            if i % p.track_every == p.track_every - 1 {
                acks.tracked_tried = Some(tracked(i));
                if cache.set_tracked(&tracked(i)).is_err() {
                    return;
                }
                acks.tracked_acked = acks.tracked_tried.clone();
            }
        }
    }

    fn check(&self, p: &TaskParams, dir: &Path, acks: &TaskAcks) -> Result<(), String> {
        let cache =
            TaskCache::open(dir, T0).map_err(|e| format!("the cache does not open: {e}"))?;
        if !cache.problems().is_empty() {
            let problems: Vec<String> = cache.problems().iter().map(|e| e.to_string()).collect();
            return Err(format!("opening found problems: {problems:?}"));
        }
        let present = batches_present(&cache)?;
        // Archives beyond the newest seven expire with their batches.
        let first_kept_day = cache.active_day() - T0 / DAY - 7;
        let missing: Vec<u32> = acks
            .acked
            .iter()
            .copied()
            .filter(|b| i64::from(b / p.per_day) >= first_kept_day && !present.contains(b))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "acknowledged batches {missing:?} are missing (present {present:?}, active day +{})",
                cache.active_day() - T0 / DAY
            ));
        }
        let tracked = cache.tracked();
        let ok = match &acks.tracked_acked {
            None => tracked.is_empty() || Some(&tracked) == acks.tracked_tried.as_ref(),
            Some(acked) => &tracked == acked || Some(&tracked) == acks.tracked_tried.as_ref(),
        };
        if !ok {
            return Err(format!(
                "tracked tasks {tracked:?}, acknowledged {:?}",
                acks.tracked_acked
            ));
        }
        Ok(())
    }
}

/// The batches in the cache, each checked to be whole.
pub fn batches_present(cache: &TaskCache) -> Result<BTreeSet<u32>, String> {
    let page = cache.query(&TaskFilter {
        limit: 0,
        ..TaskFilter::default()
    });
    let mut per_batch = BTreeMap::<u32, u32>::new();
    let mut upids = BTreeSet::new();
    for t in &page.tasks {
        if !upids.insert(t.task.upid.clone()) {
            return Err(format!("{} is there twice", t.task.upid));
        }
        let pid = u32::from_str_radix(t.task.upid.split(':').nth(2).unwrap(), 16).unwrap();
        *per_batch.entry(pid / TASKS_PER_BATCH).or_default() += 1;
    }
    for (b, n) in &per_batch {
        if *n != TASKS_PER_BATCH {
            return Err(format!("batch {b} is torn: {n} tasks"));
        }
    }
    Ok(per_batch.into_keys().collect())
}

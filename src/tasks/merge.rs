//! Merging batches into a [`TaskCache`] ([`TaskCache::store`]). The costly part of a merge — parsing
//! UPIDs, finding tasks already cached, preparing new slots — runs under the shared lock
//! that queries also take; the changes are journalled and fsynced; then they are applied
//! under the write lock in steps of at most [`APPLY_STEP`] tasks, so a query waits for
//! one step at most. Nothing of a call is kept after it returns.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use fleetpoll_actors::{TaskRecord, TaskWrite};
use serde::{Serialize, Serializer};

use super::apply::{apply_locked, JOURNAL_APPLY_BYTES};
use super::cache::{complete_cutoffs, lock, read, set_cutoffs, slot_day, write, TaskCache, Writer};
use super::error::TaskCacheError;
use super::files::{FileLock, LockKind, IO_LOCK};
use super::format::{DiskTask, Fields};
use super::index::{Change, Incoming, Index, Merged, MAX_REMOTES};
use super::journal;
use crate::remote::upid::Upid;

/// Task changes applied per hold of the write lock.
const APPLY_STEP: usize = 256;

/// Tasks planned, journalled (one fsync) and applied together: bounds what a call holds
/// whatever the number of batches handed to it.
const GROUP_TASKS: usize = 16 * 1024;

/// The planned change of one task of a batch.
#[derive(Debug)]
struct Planned {
    /// The task's position in the batch.
    task: u32,
    change: Change,
    /// Its record's fields differ from its UPID (they are journalled).
    raw: bool,
}

/// The planned changes of one batch.
#[derive(Debug)]
struct BatchPlan<'a> {
    write: &'a TaskWrite,
    /// New tasks by start, then finished ones.
    changes: Vec<Planned>,
}

/// [`TaskCache::store`]: merges the batches, journalling each group with one fsync,
/// then updates memory and the cutoffs of each batch's complete nodes.
pub(super) fn store(cache: &TaskCache, writes: &[TaskWrite]) -> Result<(), TaskCacheError> {
    let mut guard = lock(&cache.writer);
    let Some(writer) = guard.as_mut() else {
        return Err(cache.read_only());
    };
    let mut rest = writes;
    while !rest.is_empty() {
        let n = group_len(rest);
        store_group(cache, writer, &rest[..n])?;
        rest = &rest[n..];
    }
    if writer.journal.len() >= JOURNAL_APPLY_BYTES {
        apply_locked(cache, writer)?;
        cache.snapshot_if_behind(writer);
    }
    Ok(())
}

/// Plans, journals and applies one group of batches (see [`group_len`]).
fn store_group(
    cache: &TaskCache,
    writer: &mut Writer,
    writes: &[TaskWrite],
) -> Result<(), TaskCacheError> {
    let (plans, day) = {
        let inner = read(&cache.inner);
        let new_remotes = writes
            .iter()
            .filter(|w| inner.index.remote_id(&w.remote).is_none())
            .count();
        if inner.index.remotes.len() + new_remotes > MAX_REMOTES {
            return Err(TaskCacheError::TooManyRemotes {
                path: cache.dir.clone(),
            });
        }
        let plans: Vec<BatchPlan<'_>> =
            writes.iter().map(|w| plan_batch(&inner.index, w)).collect();
        (plans, slot_day(inner.active_day))
    };
    let journalled = || {
        plans
            .iter()
            .filter(|p| !p.changes.is_empty() || !p.write.batch.complete_nodes.is_empty())
    };
    if journalled().next().is_none() {
        return Ok(());
    }
    {
        let _io = FileLock::acquire(&cache.dir.join(IO_LOCK), LockKind::Exclusive)?;
        journal::append(
            &mut writer.journal,
            journalled().map(|p| EntryOut {
                r: p.write.remote.as_str(),
                c: &p.write.batch.complete_nodes,
                t: TasksOut(p),
            }),
        )?;
    }
    for plan in &plans {
        apply_batch(cache, writer, plan, day);
    }
    Ok(())
}

/// Applies one batch's planned changes, a step at a time under the write lock.
fn apply_batch(cache: &TaskCache, writer: &mut Writer, plan: &BatchPlan<'_>, day: u16) {
    let w = plan.write;
    let new = plan
        .changes
        .iter()
        .filter(|p| matches!(p.change, Change::New(_)))
        .count();
    for (n, step) in plan.changes.chunks(APPLY_STEP).enumerate() {
        let mut inner = write(&cache.inner);
        // Checked before journalling: the id exists or there is room for it.
        let Some(remote) = inner.index.intern_remote(w.remote.as_str()) else {
            return;
        };
        if n == 0 {
            inner.index.reserve(remote, new);
        }
        for p in step {
            let t = Incoming::from_record(&w.batch.tasks[p.task as usize], None);
            if let Merged::New(i) | Merged::Finished(i) =
                inner.index.apply(remote, p.change, &t, day)
            {
                writer.pending.push(i);
            }
        }
    }
    let remote = w.remote.as_str();
    let cutoffs = complete_cutoffs(&read(&cache.inner), remote, &w.batch.complete_nodes);
    set_cutoffs(&mut write(&cache.inner), remote, cutoffs);
}

/// How many of `writes` form the next group: at least one, no remote twice (a later
/// batch of a remote must see the earlier one merged), at most [`GROUP_TASKS`] tasks.
fn group_len(writes: &[TaskWrite]) -> usize {
    let mut remotes = HashSet::new();
    let mut tasks = 0;
    for (n, w) in writes.iter().enumerate() {
        tasks += w.batch.tasks.len();
        let repeated = !remotes.insert(w.remote.as_str());
        if n > 0 && (repeated || tasks > GROUP_TASKS) {
            return n;
        }
    }
    writes.len()
}

/// Plans the changes of one batch against the index. A task listed twice keeps its
/// first change, unless that adds it running and a later one lists it finished.
fn plan_batch<'a>(index: &Index, w: &'a TaskWrite) -> BatchPlan<'a> {
    let remote = index.remote_id(&w.remote);
    let tasks = &w.batch.tasks;
    let mut changes: Vec<Planned> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (k, t) in tasks.iter().enumerate() {
        let parsed = Upid::parse(&t.upid).ok();
        let incoming = Incoming::from_record(t, parsed.as_ref());
        let Some(change) = index.plan(remote, &incoming) else {
            continue;
        };
        let planned = Planned {
            task: k as u32,
            change,
            raw: incoming.is_raw(),
        };
        match seen.entry(t.upid.as_str()) {
            Entry::Vacant(v) => {
                v.insert(changes.len());
                changes.push(planned);
            }
            Entry::Occupied(o) => {
                let kept = &mut changes[*o.get()];
                let kept_running = tasks[kept.task as usize].end_time.is_none();
                if kept_running && t.end_time.is_some() && matches!(kept.change, Change::New(_)) {
                    *kept = planned;
                }
            }
        }
    }
    drop(seen);
    // New tasks in start order append to the remote's list instead of shifting it.
    changes.sort_by_key(|p| match p.change {
        Change::Finish(_) => (0, 0),
        Change::New(n) => (1, n.start()),
    });
    BatchPlan { write: w, changes }
}

/// A journal record of one batch, encoded straight from the batch: the same JSON as
/// `JournalEntry`, without a copy of the tasks.
#[derive(Serialize)]
struct EntryOut<'a> {
    r: &'a str,
    c: &'a [String],
    t: TasksOut<'a>,
}

/// The changed tasks of a batch in their disk form.
struct TasksOut<'a>(&'a BatchPlan<'a>);

impl Serialize for TasksOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let plan = self.0;
        let remote = plan.write.remote.as_str();
        s.collect_seq(
            plan.changes
                .iter()
                .map(|p| disk_task(remote, &plan.write.batch.tasks[p.task as usize], p.raw)),
        )
    }
}

/// The disk form of a record whose rawness is known (no second parse of its UPID).
fn disk_task<'a>(remote: &'a str, t: &'a TaskRecord, raw: bool) -> DiskTask<'a> {
    DiskTask {
        r: Cow::Borrowed(remote),
        u: Cow::Borrowed(&t.upid),
        e: t.end_time,
        s: t.status.as_deref().map(Cow::Borrowed),
        x: raw.then(|| Fields::of_record(t)),
    }
}

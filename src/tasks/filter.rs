//! Task queries: a [`TaskFilter`] answered from the in-memory index, newest first, with
//! paging and the total number of matches. Given the time of the query, tasks dated
//! more than [`FUTURE_SKEW_SECS`] after it (a remote whose clock is ahead) are marked
//! [`CachedTask::future`] and listed after every other match instead of first.

use fleetpoll_actors::{RemoteId, TaskRecord, UnixTime};

use std::collections::BinaryHeap;

use super::index::Index;
use super::slots::{Slot, Slots};

/// How far a task's start may lie after the query's `now` before it counts as
/// future-dated: the same tolerance as for metric points
/// ([`crate::remote::MAX_FUTURE_SECS`]).
pub const FUTURE_SKEW_SECS: i64 = 60;

/// The page size when a filter does not set one.
pub const DEFAULT_LIMIT: usize = 50;

/// How a task ended, derived from its status text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// No status yet: running when last seen.
    Running,
    /// Status `OK`.
    Ok,
    /// A status starting with `WARNINGS`.
    Warning,
    /// Any other status: the task failed.
    Error,
}

impl StatusClass {
    /// The class of a task: running while it has no end time; a finished task without
    /// a status text counts as failed (its outcome is unknown).
    pub fn of(task: &TaskRecord) -> StatusClass {
        Self::classify(task.is_running(), task.status.as_deref())
    }

    fn classify(running: bool, status: Option<&str>) -> StatusClass {
        match (running, status) {
            (true, _) => StatusClass::Running,
            (false, Some("OK")) => StatusClass::Ok,
            (false, Some(s)) if s.starts_with("WARNINGS") => StatusClass::Warning,
            (false, _) => StatusClass::Error,
        }
    }
}

/// Which cached tasks to list. Every set field narrows the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this remote's tasks.
    pub remote: Option<RemoteId>,
    /// Only tasks of this node (exact name).
    pub node: Option<String>,
    /// Only tasks running when last seen.
    pub running_only: bool,
    /// Only tasks started at or after this time.
    pub since: Option<UnixTime>,
    /// Only tasks started at or before this time.
    pub until: Option<UnixTime>,
    /// Only tasks whose type contains this text.
    pub type_contains: Option<String>,
    /// Only tasks whose user contains this text.
    pub user_contains: Option<String>,
    /// Only failed tasks (finished with a status neither `OK` nor a warning).
    pub errors_only: bool,
    /// Only tasks of this status class.
    pub status: Option<StatusClass>,
    /// Matches to skip before the page starts.
    pub start: usize,
    /// Page size; 0 means all matches.
    pub limit: usize,
    /// The time of the query: tasks started more than [`FUTURE_SKEW_SECS`] after it
    /// are future-dated (marked, and listed after the others). `None`: no task is.
    pub now: Option<UnixTime>,
}

impl Default for TaskFilter {
    fn default() -> Self {
        TaskFilter {
            remote: None,
            node: None,
            running_only: false,
            since: None,
            until: None,
            type_contains: None,
            user_contains: None,
            errors_only: false,
            status: None,
            start: 0,
            limit: DEFAULT_LIMIT,
            now: None,
        }
    }
}

/// One task of a query result with the remote it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedTask {
    /// The remote that ran it.
    pub remote: RemoteId,
    /// The task.
    pub task: TaskRecord,
    /// It started more than [`FUTURE_SKEW_SECS`] after the query's `now`: its remote's
    /// clock is ahead.
    pub future: bool,
}

/// One page of a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskPage {
    /// The tasks of the page, newest start first.
    pub tasks: Vec<CachedTask>,
    /// How many tasks match the filter in all.
    pub total: usize,
}

/// Per-string answers to the string conditions of a filter, computed once per query.
struct Conditions {
    node: Option<u32>,
    types: Option<Vec<bool>>,
    users: Option<Vec<bool>>,
    status: Option<StatusClass>,
    running_only: bool,
}

impl Conditions {
    fn trivial(&self) -> bool {
        self.node.is_none()
            && self.types.is_none()
            && self.users.is_none()
            && self.status.is_none()
            && !self.running_only
    }

    fn accept(&self, index: &Index, s: &Slot) -> bool {
        let shape = index.shape(s);
        if self.running_only && !shape.running() {
            return false;
        }
        if self.node.is_some_and(|n| n != shape.node) {
            return false;
        }
        if let Some(types) = &self.types {
            if !types[shape.wtype as usize] {
                return false;
            }
        }
        if let Some(users) = &self.users {
            if !users[shape.user as usize] {
                return false;
            }
        }
        if let Some(class) = self.status {
            if StatusClass::classify(shape.running(), index.status(s)) != class {
                return false;
            }
        }
        true
    }
}

/// Walks several lists of slots, each ordered by (start, slot) ascending, as one list
/// newest first: a k-way merge of their tails.
struct NewestFirst<'a> {
    slots: &'a Slots,
    lists: Vec<&'a [u32]>,
    /// (start, slot, list) of each list's last element not yet taken.
    heads: BinaryHeap<(u32, u32, u32)>,
}

impl<'a> NewestFirst<'a> {
    fn new(slots: &'a Slots, lists: Vec<&'a [u32]>) -> NewestFirst<'a> {
        let heads = lists
            .iter()
            .enumerate()
            .filter_map(|(k, l)| {
                let &i = l.last()?;
                Some((slots.get(i).start, i, k as u32))
            })
            .collect();
        NewestFirst {
            slots,
            lists,
            heads,
        }
    }
}

impl Iterator for NewestFirst<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (_, i, k) = self.heads.pop()?;
        let list = &mut self.lists[k as usize];
        *list = &list[..list.len() - 1];
        if let Some(&next) = list.last() {
            self.heads.push((self.slots.get(next).start, next, k));
        }
        Some(i)
    }
}

/// Runs a filter over the index.
pub(crate) fn query(index: &Index, filter: &TaskFilter) -> TaskPage {
    let empty = TaskPage::default();
    let status = match (filter.errors_only, filter.status) {
        (true, Some(c)) if c != StatusClass::Error => return empty,
        (true, _) => Some(StatusClass::Error),
        (false, c) => c,
    };
    let node = match &filter.node {
        Some(n) => match index.strings.lookup(n) {
            Some(id) => Some(id),
            None => return empty,
        },
        None => None,
    };
    let cond = Conditions {
        node,
        types: filter
            .type_contains
            .as_deref()
            .map(|t| index.strings.mask(|s| s.contains(t))),
        users: filter
            .user_contains
            .as_deref()
            .map(|u| index.strings.mask(|s| s.contains(u))),
        status,
        running_only: filter.running_only,
    };
    let remote = match &filter.remote {
        Some(r) => match index.remote_id(r) {
            Some(id) => Some(id),
            None => return empty,
        },
        None => None,
    };
    let since = filter
        .since
        .map_or(0, |t| t.clamp(0, i64::from(u32::MAX)) as u32);
    let until = filter
        .until
        .map_or(u32::MAX, |t| t.clamp(0, i64::from(u32::MAX)) as u32);
    if since > until || filter.since.is_some_and(|t| t > i64::from(u32::MAX)) {
        return empty;
    }
    let slots = &index.slots;
    let limit = if filter.limit == 0 {
        usize::MAX
    } else {
        filter.limit
    };
    // The candidates, each list oldest first: the running set, a remote's list, or the
    // lists of all remotes.
    let running: Vec<u32>;
    let lists: Vec<&[u32]> = if filter.running_only {
        running = index
            .running
            .range((since, 0)..=(until, u32::MAX))
            .map(|&(_, i)| i)
            .filter(|&i| remote.is_none_or(|r| slots.get(i).remote == r))
            .collect();
        vec![&running[..]]
    } else {
        // Each remote's list bounded by `since` and `until` (binary search on starts).
        let bounded = |r: u16| -> &[u32] {
            let list = &index.per_remote[r as usize][..];
            let lo = if since == 0 {
                0
            } else {
                index.partition(r, |s| s < since)
            };
            let hi = if until == u32::MAX {
                list.len()
            } else {
                index.partition(r, |s| s <= until)
            };
            &list[lo..hi.max(lo)]
        };
        match remote {
            Some(r) => vec![bounded(r)],
            None => (0..index.per_remote.len() as u16)
                .map(bounded)
                .filter(|l| !l.is_empty())
                .collect(),
        }
    };
    // Future-dated tasks (each list's tail) come after all the others.
    let present_until = filter.now.map_or(u32::MAX, |now| {
        now.saturating_add(FUTURE_SKEW_SECS)
            .clamp(0, i64::from(u32::MAX)) as u32
    });
    let (present, future): (Vec<&[u32]>, Vec<&[u32]>) = lists
        .iter()
        .map(|l| l.split_at(l.partition_point(|&i| slots.get(i).start <= present_until)))
        .unzip();
    let to_task = |i: u32| CachedTask {
        remote: index.remotes[slots.get(i).remote as usize].clone(),
        task: index.record(i),
        future: slots.get(i).start > present_until,
    };
    let total = if cond.trivial() {
        lists.iter().map(|l| l.len()).sum()
    } else {
        lists
            .iter()
            .flat_map(|l| l.iter())
            .filter(|&&i| cond.accept(index, slots.get(i)))
            .count()
    };
    let tasks = NewestFirst::new(slots, present)
        .chain(NewestFirst::new(slots, future))
        .filter(|&i| cond.trivial() || cond.accept(index, slots.get(i)))
        .skip(filter.start)
        .take(limit)
        .map(to_task)
        .collect();
    TaskPage { tasks, total }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(status: Option<&str>) -> TaskRecord {
        TaskRecord {
            upid: String::new(),
            node: String::new(),
            task_type: String::new(),
            task_id: None,
            user: String::new(),
            start_time: 0,
            end_time: Some(1),
            status: status.map(str::to_string),
        }
    }

    #[test]
    fn status_texts_fall_into_their_classes() {
        assert_eq!(StatusClass::of(&finished(Some("OK"))), StatusClass::Ok);
        assert_eq!(
            StatusClass::of(&finished(Some("WARNINGS: 2"))),
            StatusClass::Warning
        );
        assert_eq!(
            StatusClass::of(&finished(Some("job errors"))),
            StatusClass::Error
        );
        assert_eq!(StatusClass::of(&finished(None)), StatusClass::Error);
        let mut running = finished(None);
        running.end_time = None;
        assert_eq!(StatusClass::of(&running), StatusClass::Running);
    }
}

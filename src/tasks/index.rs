//! The in-memory index of every cached task: one 28-byte slot per task (see `slots`),
//! each remote's slots ordered by start time, and the running tasks. A task is found
//! again (deduplication) by binary search on its remote's list for its start second,
//! comparing the UPID's fields; the rare UPID kept as text is found through a small
//! table. Queries and cutoffs are answered from here, never from the files.
//!
//! A merge is split in two: [`Index::plan`] decides, under a shared borrow, what a task
//! state changes and prepares its slot; [`Index::apply`] makes the change, which is
//! cheap (no parsing, no search), so the write lock is held only briefly.

use std::collections::{BTreeSet, HashMap};

use fleetpoll_actors::{RemoteId, TaskRecord, UnixTime};

use super::format::DiskTask;
use super::intern::Interner;
use super::slots::{Kind, Shape, Shapes, Slot, Slots, NO_STATUS, RUNNING, UNRESOLVED};
use crate::remote::pbs::PBS_NODE;
use crate::remote::upid::Upid;

/// Slots of a remote's list per fence (see [`Index::partition`]).
const FENCE: usize = 32;

/// Most remotes the index addresses (slots keep a 16-bit remote id).
pub(crate) const MAX_REMOTES: usize = u16::MAX as usize;

/// What a slot cannot hold: the UPID text when it is not rebuilt from the slot, and
/// numbers wider than the slot's fields.
#[derive(Debug, Default)]
struct Extra {
    upid: Option<Box<str>>,
    start: Option<UnixTime>,
    end: Option<UnixTime>,
    pstart: Option<u64>,
}

/// The outcome of merging one task state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Merged {
    /// A task not seen before.
    New(u32),
    /// A running task that is now finished.
    Finished(u32),
    /// Nothing new (the same state, or a stale running state of a finished task).
    Same,
}

/// A task state to merge, borrowed from a remote's record or a data-file line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Incoming<'a> {
    pub(crate) upid: &'a str,
    node: &'a str,
    task_type: &'a str,
    task_id: &'a str,
    user: &'a str,
    start: UnixTime,
    pub(crate) end: Option<UnixTime>,
    status: Option<&'a str>,
    /// The UPID parsed (only needed by [`Index::plan`]).
    parsed: Option<&'a Upid>,
    /// The fields agree with the parsed UPID, so it is rebuilt from the slot.
    agrees: bool,
}

impl<'a> Incoming<'a> {
    /// A record as a remote reported it, with its UPID parsed if it parses.
    pub(crate) fn from_record(t: &'a TaskRecord, parsed: Option<&'a Upid>) -> Incoming<'a> {
        let task_id = t.task_id.as_deref();
        let agrees = parsed.is_some_and(|u| {
            u.node == t.node
                && u.worker_type == t.task_type
                && task_id == (!u.worker_id.is_empty()).then_some(u.worker_id.as_str())
                && u.user == t.user
                && u.starttime == t.start_time
        });
        Incoming {
            upid: &t.upid,
            node: &t.node,
            task_type: &t.task_type,
            task_id: task_id.unwrap_or(""),
            user: &t.user,
            start: t.start_time,
            end: t.end_time,
            status: t.status.as_deref(),
            parsed,
            agrees,
        }
    }

    /// A data-file or journal line, with its UPID parsed if it parses. Its own fields
    /// (`x`) win over the UPID's; a line with neither gets empty fields.
    pub(crate) fn from_disk(t: &'a DiskTask<'_>, parsed: Option<&'a Upid>) -> Incoming<'a> {
        let (node, task_type, task_id, user, start) = match (&t.x, parsed) {
            (Some(x), _) => (
                x.node.as_str(),
                x.task_type.as_str(),
                x.task_id.as_deref().unwrap_or(""),
                x.user.as_str(),
                x.start_time,
            ),
            (None, Some(u)) => (
                u.node.as_str(),
                u.worker_type.as_str(),
                u.worker_id.as_str(),
                u.user.as_str(),
                u.starttime,
            ),
            (None, None) => ("", "", "", "", 0),
        };
        Incoming {
            upid: &t.u,
            node,
            task_type,
            task_id,
            user,
            start,
            end: t.e,
            status: t.s.as_deref(),
            parsed,
            agrees: t.x.is_none() && parsed.is_some(),
        }
    }

    /// Whether the UPID is kept as text (the record's fields are written out on disk).
    pub(crate) fn is_raw(&self) -> bool {
        !self.agrees
    }
}

/// A new task's slot, prepared by [`Index::plan`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planned {
    slot: Slot,
    kind: Kind,
    /// The status id, if the string is interned already.
    status: u32,
    /// The shape's pid and pstart (PBS).
    pid: u32,
    pstart: u64,
    /// A PVE pstart too wide for the slot.
    wide_pstart: Option<u64>,
}

impl Planned {
    /// The task's start as kept in the slot.
    pub(crate) fn start(&self) -> u32 {
        self.slot.start
    }
}

/// What merging a task state changes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change {
    /// A task not cached yet.
    New(Planned),
    /// The cached running task in this slot finished.
    Finish(u32),
}

/// All cached tasks.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub(crate) slots: Slots,
    extra: HashMap<u32, Extra>,
    /// Tasks whose UPID is kept as text: text → (remote, slot).
    raw: HashMap<Box<str>, Vec<(u16, u32)>>,
    pub(crate) remotes: Vec<RemoteId>,
    remote_ids: HashMap<Box<str>, u16>,
    pub(crate) strings: Interner,
    pub(crate) shapes: Shapes,
    /// Per remote id, its slots by (start, slot) ascending.
    pub(crate) per_remote: Vec<Vec<u32>>,
    /// Per remote id, the start of every [`FENCE`]th slot of its list: a binary search
    /// by start touches this short array and one block of the list, instead of slots
    /// spread over the whole slot table.
    fences: Vec<Vec<u32>>,
    /// The running slots, by (start, slot).
    pub(crate) running: BTreeSet<(u32, u32)>,
}

fn to_u32(t: UnixTime) -> Option<u32> {
    u32::try_from(t).ok()
}

/// A time as kept in a slot: clamped to `u32`.
fn clamp_u32(t: UnixTime) -> u32 {
    to_u32(t).unwrap_or(if t < 0 { 0 } else { u32::MAX })
}

impl Index {
    /// Number of cached tasks.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The id of a remote, if it has tasks.
    pub(crate) fn remote_id(&self, remote: &RemoteId) -> Option<u16> {
        self.remote_ids.get(remote.as_str()).copied()
    }

    /// The id of a remote, adding it if new; `None` once 65,535 remotes are known.
    pub(crate) fn intern_remote(&mut self, remote: &str) -> Option<u16> {
        if let Some(&id) = self.remote_ids.get(remote) {
            return Some(id);
        }
        if self.remotes.len() >= MAX_REMOTES {
            return None;
        }
        let id = self.remotes.len() as u16;
        self.remotes.push(RemoteId::new(remote));
        self.remote_ids.insert(remote.into(), id);
        self.per_remote.push(Vec::new());
        self.fences.push(Vec::new());
        Some(id)
    }

    /// The shape of a slot.
    pub(crate) fn shape(&self, s: &Slot) -> &Shape {
        self.shapes.get(s.shape)
    }

    /// Whether a slot's task was running when last seen.
    pub(crate) fn is_running(&self, s: &Slot) -> bool {
        self.shape(s).running()
    }

    /// The status text of a slot.
    pub(crate) fn status(&self, s: &Slot) -> Option<&str> {
        match self.shape(s).status {
            RUNNING | NO_STATUS => None,
            id => Some(self.strings.get(id)),
        }
    }

    fn pstart(&self, idx: u32, s: &Slot) -> u64 {
        match self.extra.get(&idx).and_then(|e| e.pstart) {
            Some(p) => p,
            None => u64::from(s.b),
        }
    }

    /// Whether slot `i` holds the task of the parsed UPID `u` (same remote assumed).
    fn holds(&self, i: u32, u: &Upid) -> bool {
        let s = self.slots.get(i);
        let shape = self.shape(s);
        let numbers = match (shape.kind, u.task_id) {
            (Kind::Pve, None) => s.a == u.pid && self.pstart(i, s) == u.pstart,
            (Kind::Pbs, Some(counter)) => {
                shape.pid == u.pid
                    && shape.pstart == u.pstart
                    && u64::from(s.a) | (u64::from(s.b) << 32) == counter
            }
            _ => false,
        };
        numbers
            && self.strings.get(shape.node) == u.node
            && self.strings.get(shape.wtype) == u.worker_type
            && self.strings.get(s.wid) == u.worker_id
            && self.strings.get(shape.user) == u.user
    }

    /// The slot of (remote, UPID), if cached.
    fn find(&self, remote: u16, t: &Incoming<'_>) -> Option<u32> {
        if let Some(u) = t.parsed {
            let list = &self.per_remote[remote as usize];
            let start = clamp_u32(u.starttime);
            let lo = self.partition(remote, |s| s < start);
            let found = list[lo..]
                .iter()
                .take_while(|&&i| self.slots.get(i).start == start)
                .find(|&&i| self.holds(i, u));
            if let Some(&i) = found {
                return Some(i);
            }
        }
        if self.raw.is_empty() {
            return None;
        }
        self.raw
            .get(t.upid)?
            .iter()
            .find(|&&(r, _)| r == remote)
            .map(|&(_, i)| i)
    }

    /// What merging `t` for `remote` (`None`: a remote not known yet) would change, with
    /// everything a new slot needs looked up. Nothing is changed.
    pub(crate) fn plan(&self, remote: Option<u16>, t: &Incoming<'_>) -> Option<Change> {
        if let Some(i) = remote.and_then(|r| self.find(r, t)) {
            let finishes = self.is_running(self.slots.get(i)) && t.end.is_some();
            return finishes.then_some(Change::Finish(i));
        }
        let mut wide_pstart = None;
        let (kind, pid, pstart, a, b) = match (t.parsed, t.agrees) {
            (Some(u), true) => match u.task_id {
                None => {
                    let b = u32::try_from(u.pstart).unwrap_or_else(|_| {
                        wide_pstart = Some(u.pstart);
                        0
                    });
                    (Kind::Pve, 0, 0, u.pid, b)
                }
                Some(c) => (Kind::Pbs, u.pid, u.pstart, c as u32, (c >> 32) as u32),
            },
            (Some(u), false) if u.is_pbs() => (Kind::RawPbs, 0, 0, 0, 0),
            _ => (Kind::Raw, 0, 0, 0, 0),
        };
        let lookup = |s: &str| self.strings.lookup(s).unwrap_or(UNRESOLVED);
        let status = match (t.end, t.status) {
            (None, _) => RUNNING,
            (Some(_), None) => NO_STATUS,
            (Some(_), Some(s)) => lookup(s),
        };
        let ids = [t.node, t.task_type, t.user].map(lookup);
        let shape = if ids.contains(&UNRESOLVED) || status == UNRESOLVED {
            UNRESOLVED
        } else {
            let [node, wtype, user] = ids;
            let shape = Shape {
                node,
                wtype,
                user,
                status,
                kind,
                pid,
                pstart,
            };
            self.shapes.lookup(&shape).unwrap_or(UNRESOLVED)
        };
        Some(Change::New(Planned {
            slot: Slot {
                start: clamp_u32(t.start),
                end: t.end.map_or(0, |e| to_u32(e).unwrap_or(0)),
                a,
                b,
                shape,
                wid: lookup(t.task_id),
                remote: 0,
                day: 0,
            },
            kind,
            status,
            pid,
            pstart,
            wide_pstart,
        }))
    }

    /// Makes a planned change: `t` is the task state it was planned from (its parsed UPID
    /// is not needed any more), `day` the day of the file its record goes to.
    pub(crate) fn apply(
        &mut self,
        remote: u16,
        change: Change,
        t: &Incoming<'_>,
        day: u16,
    ) -> Merged {
        match change {
            Change::Finish(idx) => {
                let end = t.end.unwrap_or_default();
                let status = t.status.map_or(NO_STATUS, |s| self.strings.intern(s));
                let end32 = to_u32(end);
                if end32.is_none() {
                    self.extra.entry(idx).or_default().end = Some(end);
                }
                let finished = Shape {
                    status,
                    ..*self.shape(self.slots.get(idx))
                };
                let shape = self.shapes.intern(finished);
                let slot = self.slots.get_mut(idx);
                slot.end = end32.unwrap_or(0);
                slot.shape = shape;
                slot.day = day;
                let start = slot.start;
                self.running.remove(&(start, idx));
                Merged::Finished(idx)
            }
            Change::New(planned) => {
                let mut slot = planned.slot;
                slot.remote = remote;
                slot.day = day;
                if slot.shape == UNRESOLVED {
                    let status = match planned.status {
                        UNRESOLVED => self.strings.intern(t.status.unwrap_or_default()),
                        id => id,
                    };
                    let shape = Shape {
                        node: self.strings.intern(t.node),
                        wtype: self.strings.intern(t.task_type),
                        user: self.strings.intern(t.user),
                        status,
                        kind: planned.kind,
                        pid: planned.pid,
                        pstart: planned.pstart,
                    };
                    slot.shape = self.shapes.intern(shape);
                }
                if slot.wid == UNRESOLVED {
                    slot.wid = self.strings.intern(t.task_id);
                }
                let idx = self.slots.push(slot);
                let raw = matches!(planned.kind, Kind::Raw | Kind::RawPbs);
                let extra = Extra {
                    upid: raw.then(|| t.upid.into()),
                    start: to_u32(t.start).is_none().then_some(t.start),
                    end: t.end.filter(|&e| to_u32(e).is_none()),
                    pstart: planned.wide_pstart,
                };
                if raw {
                    self.raw
                        .entry(t.upid.into())
                        .or_default()
                        .push((remote, idx));
                }
                if extra.upid.is_some()
                    || extra.start.is_some()
                    || extra.end.is_some()
                    || extra.pstart.is_some()
                {
                    self.extra.insert(idx, extra);
                }
                if self.is_running(&slot) {
                    self.running.insert((slot.start, idx));
                }
                self.insert_order(remote, idx);
                Merged::New(idx)
            }
        }
    }

    /// Merges one task state of a data file or the journal.
    pub(crate) fn merge(&mut self, remote: u16, t: &DiskTask<'_>, day: u16) -> Merged {
        let parsed = Upid::parse(&t.u).ok();
        let incoming = Incoming::from_disk(t, parsed.as_ref());
        match self.plan(Some(remote), &incoming) {
            Some(change) => self.apply(remote, change, &incoming, day),
            None => Merged::Same,
        }
    }

    /// Makes room for `n` more slots in a remote's list, exactly (growing by doubling
    /// would leave up to half of it unused).
    pub(crate) fn reserve(&mut self, remote: u16, n: usize) {
        self.per_remote[remote as usize].reserve_exact(n);
    }

    /// The number of slots at the front of a remote's list whose start satisfies
    /// `below` (which must hold for a prefix of the list: `|s| s < t` or `|s| s <= t`).
    pub(crate) fn partition(&self, remote: u16, below: impl Fn(u32) -> bool) -> usize {
        let list = &self.per_remote[remote as usize];
        let k = self.fences[remote as usize].partition_point(|&s| below(s));
        if k == 0 {
            return 0;
        }
        // The fence of position (k - 1) * FENCE is below, that of k * FENCE is not.
        let lo = (k - 1) * FENCE + 1;
        let hi = (k * FENCE).min(list.len());
        lo + list[lo..hi].partition_point(|&i| below(self.slots.get(i).start))
    }

    /// Puts a new slot (the highest number) into its remote's ordering.
    fn insert_order(&mut self, remote: u16, idx: u32) {
        let start = self.slots.get(idx).start;
        let list = &self.per_remote[remote as usize];
        let at = if list
            .last()
            .is_none_or(|&l| self.slots.get(l).start <= start)
        {
            list.len()
        } else {
            self.partition(remote, |s| s <= start)
        };
        self.per_remote[remote as usize].insert(at, idx);
        self.refresh_fences(remote, at);
    }

    /// Recomputes a remote's fences from list position `from` on.
    fn refresh_fences(&mut self, remote: u16, from: usize) {
        let list = &self.per_remote[remote as usize];
        let fences = &mut self.fences[remote as usize];
        let first = from.div_ceil(FENCE);
        fences.truncate(first);
        fences.extend(
            list.iter()
                .skip(first * FENCE)
                .step_by(FENCE)
                .map(|&i| self.slots.get(i).start),
        );
    }

    /// Trims the remotes' lists to their length (after a bulk load, whose lists grew by
    /// doubling).
    pub(crate) fn shrink(&mut self) {
        for list in &mut self.per_remote {
            list.shrink_to_fit();
        }
        for fences in &mut self.fences {
            fences.shrink_to_fit();
        }
    }

    /// Rebuilds the orderings from the slots (after slots were removed), sized to fit.
    pub(crate) fn rebuild(&mut self) {
        let mut counts = vec![0usize; self.remotes.len()];
        for (_, s) in self.slots.iter() {
            counts[s.remote as usize] += 1;
        }
        let mut per_remote: Vec<Vec<u32>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
        for (i, s) in self.slots.iter() {
            per_remote[s.remote as usize].push(i);
        }
        let slots = &self.slots;
        for list in &mut per_remote {
            list.sort_unstable_by_key(|&i| (slots.get(i).start, i));
        }
        self.per_remote = per_remote;
        self.fences = vec![Vec::new(); self.per_remote.len()];
        for remote in 0..self.per_remote.len() {
            self.refresh_fences(remote as u16, 0);
            self.fences[remote].shrink_to_fit();
        }
        self.running = self
            .slots
            .iter()
            .filter(|(_, s)| self.shapes.get(s.shape).running())
            .map(|(i, s)| (s.start, i))
            .collect();
    }

    /// Removes the tasks whose newest record is in the file of `day` (an archive that
    /// is deleted), renumbering the rest.
    pub(crate) fn drop_day(&mut self, day: u16) -> usize {
        let before = self.slots.len();
        if !self.slots.iter().any(|(_, s)| s.day == day) {
            return 0;
        }
        let mut old_extra = std::mem::take(&mut self.extra);
        let mut extra = HashMap::new();
        self.slots.retain(
            |s| s.day != day,
            |old, new| {
                if let Some(e) = old_extra.remove(&old) {
                    extra.insert(new, e);
                }
            },
        );
        self.extra = extra;
        self.raw = HashMap::new();
        for (&i, e) in &self.extra {
            if let Some(upid) = &e.upid {
                let remote = self.slots.get(i).remote;
                self.raw.entry(upid.clone()).or_default().push((remote, i));
            }
        }
        self.rebuild();
        before - self.slots.len()
    }

    /// The UPID text of a slot, rebuilt from its parsed fields.
    pub(crate) fn upid(&self, idx: u32) -> String {
        let s = self.slots.get(idx);
        let shape = self.shape(s);
        if let Some(upid) = self.extra.get(&idx).and_then(|e| e.upid.as_deref()) {
            return upid.to_string();
        }
        let (pid, pstart, task_id) = match shape.kind {
            Kind::Pbs => (
                shape.pid,
                shape.pstart,
                Some(u64::from(s.a) | (u64::from(s.b) << 32)),
            ),
            _ => (s.a, self.pstart(idx, s), None),
        };
        Upid {
            node: self.strings.get(shape.node).to_string(),
            pid,
            pstart,
            task_id,
            starttime: UnixTime::from(s.start),
            worker_type: self.strings.get(shape.wtype).to_string(),
            worker_id: self.strings.get(s.wid).to_string(),
            user: self.strings.get(shape.user).to_string(),
        }
        .to_string()
    }

    /// The full record of a slot.
    pub(crate) fn record(&self, idx: u32) -> TaskRecord {
        let s = self.slots.get(idx);
        let shape = self.shape(s);
        let extra = self.extra.get(&idx);
        let wid = self.strings.get(s.wid);
        TaskRecord {
            upid: self.upid(idx),
            node: self.strings.get(shape.node).to_string(),
            task_type: self.strings.get(shape.wtype).to_string(),
            task_id: (!wid.is_empty()).then(|| wid.to_string()),
            user: self.strings.get(shape.user).to_string(),
            start_time: extra
                .and_then(|e| e.start)
                .unwrap_or(UnixTime::from(s.start)),
            end_time: if shape.running() {
                None
            } else {
                Some(extra.and_then(|e| e.end).unwrap_or(UnixTime::from(s.end)))
            },
            status: self.status(s).map(str::to_string),
        }
    }

    /// The name under which a slot's cutoff is kept: its node, or `localhost` for a
    /// PBS task (the PBS client lists and reports its tasks under that name).
    pub(crate) fn cutoff_key(&self, idx: u32) -> &str {
        let shape = self.shape(self.slots.get(idx));
        if shape.is_pbs() {
            PBS_NODE
        } else {
            self.strings.get(shape.node)
        }
    }

    /// Per cutoff key of a remote: the start of its oldest running task, else the start
    /// of its newest task.
    pub(crate) fn cutoffs_of(&self, remote: u16) -> HashMap<&str, UnixTime> {
        let mut oldest_running: HashMap<&str, UnixTime> = HashMap::new();
        let mut newest: HashMap<&str, UnixTime> = HashMap::new();
        for &i in &self.per_remote[remote as usize] {
            let s = self.slots.get(i);
            let key = self.cutoff_key(i);
            let start = UnixTime::from(s.start);
            let n = newest.entry(key).or_insert(start);
            *n = (*n).max(start);
            if self.is_running(s) {
                let r = oldest_running.entry(key).or_insert(start);
                *r = (*r).min(start);
            }
        }
        newest.extend(oldest_running);
        newest
    }

    /// Whether a remote has a task that was running when last seen.
    pub(crate) fn has_running(&self, remote: u16) -> bool {
        self.running
            .iter()
            .any(|&(_, i)| self.slots.get(i).remote == remote)
    }

    /// The slot's record in the compact disk form (for the active file).
    pub(crate) fn disk_line(&self, idx: u32) -> (String, TaskRecord) {
        let s = self.slots.get(idx);
        (
            self.remotes[s.remote as usize].to_string(),
            self.record(idx),
        )
    }
}

pub(crate) mod persist;
#[cfg(test)]
mod tests;

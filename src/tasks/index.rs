//! The in-memory index of every cached task: one compact slot per task (interned
//! strings, numeric times, the UPID kept as its parsed fields), a hash of (remote, UPID)
//! for deduplication, and orderings by start time overall, per remote, and of the
//! running tasks. Queries and cutoffs are answered from here, never from the files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use fleetpoll_actors::{RemoteId, TaskRecord, UnixTime};

use super::format::DiskTask;
use super::intern::Interner;
use crate::remote::pbs::PBS_NODE;
use crate::remote::upid::Upid;

/// The slot is a PBS UPID (it has a task counter).
const F_PBS: u8 = 1;
/// The task was running when last seen.
const F_RUNNING: u8 = 2;
/// The slot has an entry in `extra` (raw UPID text, out-of-range times).
const F_EXTRA: u8 = 4;
/// No string (a running task's status).
const NONE: u32 = u32::MAX;

/// One cached task in 56 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pstart: u64,
    counter: u64,
    pub(crate) start: u32,
    end: u32,
    pid: u32,
    pub(crate) remote: u32,
    pub(crate) node: u32,
    pub(crate) wtype: u32,
    wid: u32,
    pub(crate) user: u32,
    pub(crate) status: u32,
    /// The UTC day of the file that holds this task's newest record.
    pub(crate) day: u16,
    flags: u8,
}

impl Slot {
    /// Whether the task was running when last seen.
    pub(crate) fn running(&self) -> bool {
        self.flags & F_RUNNING != 0
    }
}

/// What a slot cannot hold compactly: the UPID text when it does not parse or when the
/// record's fields differ from it, and times outside `u32`.
#[derive(Debug)]
struct Extra {
    upid: Box<str>,
    start: UnixTime,
    end: Option<UnixTime>,
}

/// A hasher for keys that already are hashes.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashIndex = HashMap<u64, u32, BuildHasherDefault<IdHasher>>;

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

/// All cached tasks.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub(crate) slots: Vec<Slot>,
    extra: HashMap<u32, Extra>,
    by_hash: HashIndex,
    collided: HashMap<(u32, Box<str>), u32>,
    pub(crate) remotes: Vec<RemoteId>,
    remote_ids: HashMap<Box<str>, u32>,
    pub(crate) strings: Interner,
    /// Every slot, by (start, slot) ascending.
    pub(crate) by_start: Vec<u32>,
    /// Per remote id, its slots by (start, slot) ascending.
    pub(crate) per_remote: Vec<Vec<u32>>,
    /// The running slots, by (start, slot).
    pub(crate) running: BTreeSet<(u32, u32)>,
}

fn key_hash(remote: u32, upid: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    remote.hash(&mut h);
    upid.hash(&mut h);
    h.finish()
}

fn to_u32(t: UnixTime) -> Option<u32> {
    u32::try_from(t).ok()
}

impl Index {
    /// Number of cached tasks.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The id of a remote, if it has tasks.
    pub(crate) fn remote_id(&self, remote: &RemoteId) -> Option<u32> {
        self.remote_ids.get(remote.as_str()).copied()
    }

    /// The id of a remote, adding it if new.
    pub(crate) fn intern_remote(&mut self, remote: &str) -> u32 {
        if let Some(&id) = self.remote_ids.get(remote) {
            return id;
        }
        let id = self.remotes.len() as u32;
        self.remotes.push(RemoteId::new(remote));
        self.remote_ids.insert(remote.into(), id);
        self.per_remote.push(Vec::new());
        id
    }

    /// The slot of (remote, UPID), if cached.
    fn find(&self, remote: u32, upid: &str) -> Option<u32> {
        self.find_hashed(key_hash(remote, upid), remote, upid)
    }

    /// [`Index::find`] with the key hash already computed.
    fn find_hashed(&self, h: u64, remote: u32, upid: &str) -> Option<u32> {
        let idx = *self.by_hash.get(&h)?;
        if self.slots[idx as usize].remote == remote && self.upid(idx) == upid {
            return Some(idx);
        }
        self.collided.get(&(remote, Box::from(upid))).copied()
    }

    /// Whether merging `t` for `remote` would add or finish a task.
    pub(crate) fn would_change(&self, remote: &RemoteId, t: &DiskTask<'_>) -> bool {
        let Some(r) = self.remote_id(remote) else {
            return true;
        };
        match self.find(r, &t.u) {
            None => true,
            Some(i) => self.slots[i as usize].running() && t.e.is_some(),
        }
    }

    /// Merges one task state into the index: a new task is added, a running one that
    /// finished is updated, anything else is left as it is. New slots must be passed to
    /// [`Index::insert_orders`] before the next query.
    pub(crate) fn merge(&mut self, remote: u32, t: &DiskTask<'_>, day: u16) -> Merged {
        let h = key_hash(remote, &t.u);
        if let Some(idx) = self.find_hashed(h, remote, &t.u) {
            let slot = self.slots[idx as usize];
            if !slot.running() || t.e.is_none() {
                return Merged::Same;
            }
            let end = t.e.unwrap_or_default();
            let status = t.s.as_deref().map_or(NONE, |s| self.strings.intern(s));
            let end32 = to_u32(end);
            if end32.is_none() {
                self.extra_mut(idx).end = Some(end);
            }
            let slot = &mut self.slots[idx as usize];
            slot.end = end32.unwrap_or(0);
            slot.status = status;
            slot.flags &= !F_RUNNING;
            slot.day = day;
            self.running.remove(&(slot.start, idx));
            return Merged::Finished(idx);
        }
        let idx = self.slots.len() as u32;
        let parsed = match (&t.x, Upid::parse(&t.u)) {
            (None, Ok(u)) => Some(u),
            _ => None,
        };
        // The record's own fields when it carries them, else the UPID's. A line without
        // either (hand-edited) gets empty fields.
        let (node, task_type, task_id, user, start_time) = match (&t.x, &parsed) {
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
        let start = to_u32(start_time);
        let end = t.e.map(to_u32);
        let mut slot = Slot {
            pstart: parsed.as_ref().map_or(0, |u| u.pstart),
            counter: parsed.as_ref().and_then(|u| u.task_id).unwrap_or(0),
            start: start.unwrap_or(if start_time < 0 { 0 } else { u32::MAX }),
            end: end.flatten().unwrap_or(0),
            pid: parsed.as_ref().map_or(0, |u| u.pid),
            remote,
            node: self.strings.intern(node),
            wtype: self.strings.intern(task_type),
            wid: self.strings.intern(task_id),
            user: self.strings.intern(user),
            status: t.s.as_deref().map_or(NONE, |s| self.strings.intern(s)),
            day,
            flags: 0,
        };
        if t.e.is_none() {
            slot.flags |= F_RUNNING;
        }
        match &parsed {
            Some(u) if u.task_id.is_some() => slot.flags |= F_PBS,
            Some(_) => {}
            None => {
                slot.flags |= F_EXTRA;
                // A PBS UPID whose record fields differ still counts as PBS.
                if Upid::parse(&t.u).is_ok_and(|u| u.is_pbs()) {
                    slot.flags |= F_PBS;
                }
            }
        }
        if start.is_none() || matches!(end, Some(None)) {
            slot.flags |= F_EXTRA;
        }
        if slot.flags & F_EXTRA != 0 {
            self.extra.insert(
                idx,
                Extra {
                    upid: t.u.as_ref().into(),
                    start: start_time,
                    end: t.e,
                },
            );
        }
        self.slots.push(slot);
        if slot.running() {
            self.running.insert((slot.start, idx));
        }
        self.index_hash(h, remote, idx, &t.u);
        Merged::New(idx)
    }

    /// Records slot `idx` under its key hash; a second task with the same hash goes to
    /// the (practically always empty) collision table.
    fn index_hash(&mut self, h: u64, remote: u32, idx: u32, upid: &str) {
        match self.by_hash.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.insert((remote, upid.into()), idx);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(idx);
            }
        }
    }

    fn extra_mut(&mut self, idx: u32) -> &mut Extra {
        let slot = &mut self.slots[idx as usize];
        slot.flags |= F_EXTRA;
        let start = i64::from(slot.start);
        let upid = if self.extra.contains_key(&idx) {
            String::new()
        } else {
            self.upid(idx)
        };
        self.extra.entry(idx).or_insert_with(|| Extra {
            upid: upid.into(),
            start,
            end: None,
        })
    }

    /// Adds new slots to the orderings. Slots mostly arrive newest last, so this is
    /// usually an append; otherwise one merge pass.
    pub(crate) fn insert_orders(&mut self, mut new: Vec<u32>) {
        if new.is_empty() {
            return;
        }
        let key = |slots: &[Slot], i: u32| (slots[i as usize].start, i);
        new.sort_unstable_by_key(|&i| key(&self.slots, i));
        merge_sorted(&mut self.by_start, &new, |i| key(&self.slots, i));
        let mut by_remote: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &i in &new {
            by_remote
                .entry(self.slots[i as usize].remote)
                .or_default()
                .push(i);
        }
        for (remote, list) in by_remote {
            let slots = &self.slots;
            merge_sorted(&mut self.per_remote[remote as usize], &list, |i| {
                key(slots, i)
            });
        }
    }

    /// Rebuilds every ordering and the deduplication hash from the slots (after a bulk
    /// load or after slots were removed), sized to fit.
    pub(crate) fn rebuild(&mut self) {
        let mut order: Vec<u32> = (0..self.slots.len() as u32).collect();
        order.sort_unstable_by_key(|&i| (self.slots[i as usize].start, i));
        let mut counts = vec![0usize; self.remotes.len()];
        for s in &self.slots {
            counts[s.remote as usize] += 1;
        }
        let mut per_remote: Vec<Vec<u32>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
        for &i in &order {
            per_remote[self.slots[i as usize].remote as usize].push(i);
        }
        self.by_start = order;
        self.per_remote = per_remote;
        self.running = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.running())
            .map(|(i, s)| (s.start, i as u32))
            .collect();
        self.slots.shrink_to_fit();
    }

    /// Removes the tasks whose newest record is in the file of `day` (an archive that
    /// is deleted), renumbering the rest.
    pub(crate) fn drop_day(&mut self, day: u16) -> usize {
        let before = self.slots.len();
        if !self.slots.iter().any(|s| s.day == day) {
            return 0;
        }
        let old_slots = std::mem::take(&mut self.slots);
        let mut old_extra = std::mem::take(&mut self.extra);
        let mut slots = Vec::with_capacity(old_slots.len());
        let mut extra = HashMap::new();
        for (i, s) in old_slots.into_iter().enumerate() {
            if s.day == day {
                continue;
            }
            if let Some(e) = old_extra.remove(&(i as u32)) {
                extra.insert(slots.len() as u32, e);
            }
            slots.push(s);
        }
        self.slots = slots;
        self.extra = extra;
        self.by_hash = HashIndex::default();
        self.collided = HashMap::new();
        self.by_hash.reserve(self.slots.len());
        for i in 0..self.slots.len() as u32 {
            let remote = self.slots[i as usize].remote;
            let upid = self.upid(i);
            self.index_hash(key_hash(remote, &upid), remote, i, &upid);
        }
        self.rebuild();
        before - self.slots.len()
    }

    /// The UPID text of a slot, rebuilt from its parsed fields.
    pub(crate) fn upid(&self, idx: u32) -> String {
        let s = &self.slots[idx as usize];
        if s.flags & F_EXTRA != 0 {
            if let Some(e) = self.extra.get(&idx) {
                if !e.upid.is_empty() {
                    return e.upid.to_string();
                }
            }
        }
        Upid {
            node: self.strings.get(s.node).to_string(),
            pid: s.pid,
            pstart: s.pstart,
            task_id: (s.flags & F_PBS != 0).then_some(s.counter),
            starttime: UnixTime::from(s.start),
            worker_type: self.strings.get(s.wtype).to_string(),
            worker_id: self.strings.get(s.wid).to_string(),
            user: self.strings.get(s.user).to_string(),
        }
        .to_string()
    }

    /// The full record of a slot.
    pub(crate) fn record(&self, idx: u32) -> TaskRecord {
        let s = &self.slots[idx as usize];
        let extra = self.extra.get(&idx);
        let wid = self.strings.get(s.wid);
        TaskRecord {
            upid: self.upid(idx),
            node: self.strings.get(s.node).to_string(),
            task_type: self.strings.get(s.wtype).to_string(),
            task_id: (!wid.is_empty()).then(|| wid.to_string()),
            user: self.strings.get(s.user).to_string(),
            start_time: extra.map_or(UnixTime::from(s.start), |e| e.start),
            end_time: if s.running() {
                None
            } else {
                Some(extra.and_then(|e| e.end).unwrap_or(UnixTime::from(s.end)))
            },
            status: (s.status != NONE).then(|| self.strings.get(s.status).to_string()),
        }
    }

    /// The name under which a slot's cutoff is kept: its node, or `localhost` for a
    /// PBS task (the PBS client lists and reports its tasks under that name).
    pub(crate) fn cutoff_key(&self, idx: u32) -> &str {
        let s = &self.slots[idx as usize];
        if s.flags & F_PBS != 0 {
            PBS_NODE
        } else {
            self.strings.get(s.node)
        }
    }

    /// Per cutoff key of a remote: the start of its oldest running task, else the start
    /// of its newest task.
    pub(crate) fn cutoffs_of(&self, remote: u32) -> HashMap<&str, UnixTime> {
        let mut oldest_running: HashMap<&str, UnixTime> = HashMap::new();
        let mut newest: HashMap<&str, UnixTime> = HashMap::new();
        for &i in &self.per_remote[remote as usize] {
            let s = &self.slots[i as usize];
            let key = self.cutoff_key(i);
            let start = UnixTime::from(s.start);
            let n = newest.entry(key).or_insert(start);
            *n = (*n).max(start);
            if s.running() {
                let r = oldest_running.entry(key).or_insert(start);
                *r = (*r).min(start);
            }
        }
        newest.extend(oldest_running);
        newest
    }

    /// Whether a remote has a task that was running when last seen.
    pub(crate) fn has_running(&self, remote: u32) -> bool {
        self.running
            .iter()
            .any(|&(_, i)| self.slots[i as usize].remote == remote)
    }

    /// The slot's record in the compact disk form (for the active file).
    pub(crate) fn disk_line(&self, idx: u32) -> (String, TaskRecord) {
        let s = &self.slots[idx as usize];
        (
            self.remotes[s.remote as usize].to_string(),
            self.record(idx),
        )
    }
}

/// Merges the sorted `new` into the sorted `into`.
fn merge_sorted<K: Ord>(into: &mut Vec<u32>, new: &[u32], key: impl Fn(u32) -> K) {
    if new.is_empty() {
        return;
    }
    if into.last().is_none_or(|&l| key(l) <= key(new[0])) {
        into.extend_from_slice(new);
        return;
    }
    // Only the part of `into` after the first new key moves; new tasks are recent, so
    // that tail is short even when `into` holds millions.
    let first = key(new[0]);
    let at = into.partition_point(|&x| key(x) <= first);
    let old = into.split_off(at);
    let mut out = std::mem::take(into);
    out.reserve(old.len() + new.len());
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(&&x), Some(&&y)) => {
                if key(x) <= key(y) {
                    out.push(x);
                    a.next();
                } else {
                    out.push(y);
                    b.next();
                }
            }
            (Some(&&x), None) => {
                out.push(x);
                a.next();
            }
            (None, Some(&&y)) => {
                out.push(y);
                b.next();
            }
            (None, None) => break,
        }
    }
    *into = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::format::Fields;
    use std::borrow::Cow;

    const PVE: &str = "UPID:pve1:00001234:00ABCDEF:67B4A9D1:vzdump:100:root@pam:";
    const PBS: &str = "UPID:pbs:000002B2:00000158:00000000:674D828C:logrotate::root@pam:";

    fn disk(upid: &str, end: Option<i64>, status: Option<&str>) -> DiskTask<'static> {
        DiskTask {
            r: Cow::Borrowed("lab"),
            u: Cow::Owned(upid.to_string()),
            e: end,
            s: status.map(|s| Cow::Owned(s.to_string())),
            x: None,
        }
    }

    #[test]
    fn merging_the_same_upid_twice_keeps_one_slot() {
        let mut index = Index::default();
        let r = index.intern_remote("lab");
        assert!(matches!(
            index.merge(r, &disk(PVE, Some(5), Some("OK")), 1),
            Merged::New(0)
        ));
        assert_eq!(
            index.merge(r, &disk(PVE, Some(5), Some("OK")), 1),
            Merged::Same
        );
        assert_eq!(index.len(), 1);
        let other = index.intern_remote("other");
        assert!(matches!(
            index.merge(other, &disk(PVE, None, None), 1),
            Merged::New(1)
        ));
    }

    #[test]
    fn finished_replaces_running_but_running_never_replaces_finished() {
        let mut index = Index::default();
        let r = index.intern_remote("lab");
        index.merge(r, &disk(PVE, None, None), 1);
        index.rebuild();
        assert!(index.has_running(r));
        assert_eq!(
            index.merge(r, &disk(PVE, Some(0x67B4_A9FF), Some("OK")), 2),
            Merged::Finished(0)
        );
        assert!(!index.has_running(r));
        assert_eq!(index.merge(r, &disk(PVE, None, None), 3), Merged::Same);
        let rec = index.record(0);
        assert_eq!(rec.end_time, Some(0x67B4_A9FF));
        assert_eq!(rec.status.as_deref(), Some("OK"));
        assert_eq!(index.slots[0].day, 2);
    }

    #[test]
    fn records_are_rebuilt_exactly_from_the_parsed_upid() {
        let mut index = Index::default();
        let r = index.intern_remote("lab");
        index.merge(r, &disk(PVE, Some(0x67B4_AA00), Some("job errors")), 1);
        index.merge(r, &disk(PBS, None, None), 1);
        let pve = index.record(0);
        assert_eq!(pve.upid, PVE);
        assert_eq!(pve.node, "pve1");
        assert_eq!(pve.task_type, "vzdump");
        assert_eq!(pve.task_id.as_deref(), Some("100"));
        assert_eq!(pve.user, "root@pam");
        assert_eq!(pve.start_time, 0x67B4_A9D1);
        let pbs = index.record(1);
        assert_eq!(pbs.upid, PBS);
        assert_eq!(pbs.task_id, None);
        assert_eq!(index.cutoff_key(1), "localhost");
        assert_eq!(index.cutoff_key(0), "pve1");
    }

    #[test]
    fn a_upid_that_does_not_parse_is_kept_verbatim_with_its_fields() {
        let mut index = Index::default();
        let r = index.intern_remote("lab");
        let mut t = disk("UPID:odd", Some(-5), Some("OK"));
        t.x = Some(Fields {
            node: "n".into(),
            task_type: "t".into(),
            task_id: None,
            user: "u@pam".into(),
            start_time: -10,
        });
        index.merge(r, &t, 1);
        let rec = index.record(0);
        assert_eq!(rec.upid, "UPID:odd");
        assert_eq!(rec.start_time, -10);
        assert_eq!(rec.end_time, Some(-5));
        assert_eq!(rec.node, "n");
        assert_eq!(index.merge(r, &t, 1), Merged::Same);
    }

    #[test]
    fn dropping_a_day_removes_its_tasks_and_keeps_the_rest_findable() {
        let mut index = Index::default();
        let r = index.intern_remote("lab");
        index.merge(r, &disk(PVE, Some(1), Some("OK")), 1);
        index.merge(r, &disk(PBS, Some(1), Some("OK")), 2);
        index.rebuild();
        assert_eq!(index.drop_day(1), 1);
        assert_eq!(index.len(), 1);
        assert_eq!(index.record(0).upid, PBS);
        assert_eq!(
            index.merge(r, &disk(PBS, Some(1), Some("OK")), 2),
            Merged::Same
        );
        assert_eq!(index.by_start, vec![0]);
        assert_eq!(index.per_remote[r as usize], vec![0]);
    }

    #[test]
    fn out_of_order_inserts_keep_the_orderings_sorted() {
        let mut index = Index::default();
        let r = index.intern_remote("lab");
        let upid = |start: u32| format!("UPID:n:00000001:00000001:{start:08X}:t::u@pam:");
        let mut new = Vec::new();
        for start in [50, 10, 30] {
            if let Merged::New(i) = index.merge(r, &disk(&upid(start), None, None), 1) {
                new.push(i);
            }
        }
        index.insert_orders(new);
        let mut new = Vec::new();
        for start in [20, 60] {
            if let Merged::New(i) = index.merge(r, &disk(&upid(start), None, None), 1) {
                new.push(i);
            }
        }
        index.insert_orders(new);
        let starts: Vec<u32> = index
            .by_start
            .iter()
            .map(|&i| index.slots[i as usize].start)
            .collect();
        assert_eq!(starts, vec![10, 20, 30, 50, 60]);
        assert_eq!(index.per_remote[r as usize], index.by_start);
    }

    #[test]
    fn a_slot_stays_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 56,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }
}

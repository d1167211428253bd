//! The rankings behind the top lists: each remote's four lists sorted best first for a
//! window (computed when a batch is stored), and the merge of many remotes' lists into
//! the fleet's top `n` that a request runs (a heap with one head per remote, so a
//! request costs the number of remotes plus `n`, not the number of entities).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use fleetpoll_actors::RemoteId;

use super::TopEntry;

/// Guests by CPU, guests by memory, nodes by CPU, nodes by memory: each best first.
pub(super) type Lists = [Vec<Candidate>; 4];

/// One entity's value in one list.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    /// The mean over the window.
    pub(super) value: f64,
    /// The entity's newest sample: it is ranked while that lies in a request's window.
    pub(super) newest: i64,
    pub(super) entity: Arc<str>,
}

impl Candidate {
    /// Best first: the highest value, then the entity's name.
    pub(super) fn order(a: &Candidate, b: &Candidate) -> Ordering {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.entity.cmp(&b.entity))
    }
}

/// A remote's lists for up to two windows (by their first bucket): the current one and
/// the next, so that the window moving on finds its lists ready.
#[derive(Debug, Default)]
pub(super) struct RemoteRankings {
    held: [Option<(i64, Lists)>; 2],
}

impl RemoteRankings {
    /// The lists of the window that starts at bucket `first`, if they are held.
    pub(super) fn get(&self, first: i64) -> Option<&Lists> {
        self.held
            .iter()
            .flatten()
            .find(|(f, _)| *f == first)
            .map(|(_, lists)| lists)
    }

    /// Holds the lists of the window starting at `first`, in place of the older window.
    pub(super) fn put(&mut self, first: i64, lists: Lists) {
        let place = if self.held[0].as_ref().map_or(i64::MIN, |h| h.0)
            <= self.held[1].as_ref().map_or(i64::MIN, |h| h.0)
        {
            0
        } else {
            1
        };
        self.held[place] = Some((first, lists));
    }
}

/// The best entry a remote's list still offers, and what follows it.
#[derive(Debug)]
struct Head<'a> {
    best: &'a Candidate,
    remote: &'a RemoteId,
    rest: &'a [Candidate],
}

impl<'a> Head<'a> {
    /// The first candidate of `list` ranked at a request whose window starts after
    /// `since` (an entity without a sample in the window is skipped).
    fn of(remote: &'a RemoteId, list: &'a [Candidate], since: i64) -> Option<Head<'a>> {
        let at = list.iter().position(|c| c.newest > since)?;
        Some(Head {
            best: &list[at],
            remote,
            rest: &list[at + 1..],
        })
    }
}

impl Ord for Head<'_> {
    /// The greater head is the better entry: the higher value, then the smaller remote,
    /// then the smaller entity (the order of the lists the API answers).
    fn cmp(&self, other: &Self) -> Ordering {
        self.best
            .value
            .total_cmp(&other.best.value)
            .then_with(|| other.remote.cmp(self.remote))
            .then_with(|| other.best.entity.cmp(&self.best.entity))
    }
}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head<'_> {}

/// The `n` best entries of list `list` among `remotes`' lists, highest value first
/// (ties by remote, then entity), counting only entities with a sample after `since`.
pub(super) fn merge_top(
    remotes: &[(&RemoteId, &Lists)],
    list: usize,
    since: i64,
    n: usize,
) -> Vec<TopEntry> {
    let mut heap: BinaryHeap<Head<'_>> = remotes
        .iter()
        .filter_map(|(remote, lists)| Head::of(remote, &lists[list], since))
        .collect();
    let mut out = Vec::with_capacity(n.min(heap.len()));
    while out.len() < n {
        let Some(head) = heap.pop() else { break };
        out.push(TopEntry {
            remote: head.remote.clone(),
            entity: head.best.entity.to_string(),
            value: head.best.value,
        });
        if let Some(next) = Head::of(head.remote, head.rest, since) {
            heap.push(next);
        }
    }
    out
}

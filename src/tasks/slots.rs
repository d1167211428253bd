//! The storage behind the index: 28-byte task slots kept in fixed-size chunks (so a
//! growing cache never holds more than one partly filled chunk of slack, and never
//! copies millions of slots to grow), and the table of "shapes": the (node, type, user,
//! status, UPID kind) combinations that many tasks share, stored once. The object id (a
//! vmid, a datastore) stays in the slot: it varies too much to share.

use std::collections::HashMap;

/// Slots per chunk: 64 Ki slots, 2 MiB.
const CHUNK: usize = 1 << 16;

/// A status id meaning "running when last seen" (no end time, no status).
pub(crate) const RUNNING: u32 = u32::MAX;
/// A status id meaning "finished without a status text".
pub(crate) const NO_STATUS: u32 = u32::MAX - 1;
/// A string or shape id not interned yet (only in a planned slot).
pub(crate) const UNRESOLVED: u32 = u32::MAX - 2;

/// How the UPID of a task is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A PVE UPID rebuilt from the slot: `a` is the pid, `b` the pstart.
    Pve,
    /// A PBS UPID rebuilt from the slot and its shape: `a`/`b` are the low and high
    /// halves of the task counter, pid and pstart are in the shape.
    Pbs,
    /// The UPID text is kept in the side table (it does not parse, or the record's
    /// fields differ from it).
    Raw,
    /// [`Kind::Raw`] of a UPID that parses as a PBS one (its cutoff key is `localhost`).
    RawPbs,
}

/// What many tasks share: their strings (interned ids) and, for PBS, the daemon's pid
/// and process start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub(crate) node: u32,
    pub(crate) wtype: u32,
    pub(crate) user: u32,
    /// An interned string id, [`RUNNING`] or [`NO_STATUS`].
    pub(crate) status: u32,
    pub(crate) kind: Kind,
    pub(crate) pid: u32,
    pub(crate) pstart: u64,
}

impl Shape {
    /// Whether the task's cutoff key is `localhost` (a PBS task).
    pub(crate) fn is_pbs(&self) -> bool {
        matches!(self.kind, Kind::Pbs | Kind::RawPbs)
    }

    /// Whether its tasks were running when last seen.
    pub(crate) fn running(&self) -> bool {
        self.status == RUNNING
    }
}

/// One cached task in 28 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) start: u32,
    pub(crate) end: u32,
    /// PVE: pid; PBS: the counter's low 32 bits.
    pub(crate) a: u32,
    /// PVE: pstart (0 with the real value in the side table when it needs more than 32
    /// bits); PBS: the counter's high 32 bits.
    pub(crate) b: u32,
    pub(crate) shape: u32,
    /// The object id (interned; empty for none).
    pub(crate) wid: u32,
    pub(crate) remote: u16,
    /// The UTC day of the file that holds this task's newest record.
    pub(crate) day: u16,
}

/// Every slot, addressed by a `u32`, in chunks of [`CHUNK`].
#[derive(Debug, Default)]
pub(crate) struct Slots {
    chunks: Vec<Vec<Slot>>,
    len: usize,
}

impl Slots {
    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot `i`.
    pub(crate) fn get(&self, i: u32) -> &Slot {
        let i = i as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    /// The slot `i`, to change.
    pub(crate) fn get_mut(&mut self, i: u32) -> &mut Slot {
        let i = i as usize;
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    /// Appends a slot and returns its number.
    pub(crate) fn push(&mut self, slot: Slot) -> u32 {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            if last.len() == last.capacity() {
                // A chunk trimmed by `retain` grows back to exactly CHUNK, not beyond.
                last.reserve_exact(CHUNK - last.len());
            }
            last.push(slot);
        }
        self.len += 1;
        (self.len - 1) as u32
    }

    /// Every slot with its number, in number order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| (i as u32, s))
    }

    /// Keeps the slots for which `keep` holds, renumbered in order; `moved` learns each
    /// kept slot's old and new number. Works in place (a kept slot only moves to a lower
    /// number), so it needs no second table; emptied chunks are freed.
    pub(crate) fn retain(
        &mut self,
        mut keep: impl FnMut(&Slot) -> bool,
        mut moved: impl FnMut(u32, u32),
    ) {
        let mut to = 0u32;
        for from in 0..self.len as u32 {
            let s = *self.get(from);
            if keep(&s) {
                *self.get_mut(to) = s;
                moved(from, to);
                to += 1;
            }
        }
        self.len = to as usize;
        let chunks = self.len.div_ceil(CHUNK);
        self.chunks.truncate(chunks);
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(self.len - (chunks - 1) * CHUNK);
            // Trimmed only when mostly empty: it fills up again.
            if last.len() < CHUNK / 4 {
                last.shrink_to_fit();
            }
        }
    }
}

/// The table of distinct shapes.
#[derive(Debug, Default)]
pub(crate) struct Shapes {
    shapes: Vec<Shape>,
    ids: HashMap<Shape, u32>,
}

impl Shapes {
    /// The id of `shape`, adding it if new.
    pub(crate) fn intern(&mut self, shape: Shape) -> u32 {
        if let Some(&id) = self.ids.get(&shape) {
            return id;
        }
        let id = self.shapes.len() as u32;
        self.shapes.push(shape);
        self.ids.insert(shape, id);
        id
    }

    /// A table of `shapes`, each getting its position as id; `None` if one is listed
    /// twice.
    pub(crate) fn from_shapes(shapes: Vec<Shape>) -> Option<Shapes> {
        let mut ids = HashMap::with_capacity(shapes.len());
        for (id, s) in shapes.iter().enumerate() {
            if ids.insert(*s, id as u32).is_some() {
                return None;
            }
        }
        Some(Shapes { shapes, ids })
    }

    /// Every shape, by id.
    pub(crate) fn all(&self) -> &[Shape] {
        &self.shapes
    }

    /// The id of `shape`, if it was interned.
    pub(crate) fn lookup(&self, shape: &Shape) -> Option<u32> {
        self.ids.get(shape).copied()
    }

    /// The shape of an id.
    pub(crate) fn get(&self, id: u32) -> &Shape {
        &self.shapes[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(start: u32) -> Slot {
        Slot {
            start,
            end: 0,
            a: 0,
            b: 0,
            shape: 0,
            wid: 0,
            remote: 0,
            day: 0,
        }
    }

    #[test]
    fn a_slot_takes_28_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 28);
    }

    #[test]
    fn slots_span_chunks_and_renumber_when_some_are_removed() {
        let mut slots = Slots::default();
        for i in 0..(CHUNK as u32 + 10) {
            assert_eq!(slots.push(slot(i)), i);
        }
        assert_eq!(slots.get(CHUNK as u32 + 3).start, CHUNK as u32 + 3);
        let mut moves = Vec::new();
        slots.retain(|s| s.start % 2 == 1, |old, new| moves.push((old, new)));
        assert_eq!(slots.len(), CHUNK / 2 + 5);
        assert_eq!(moves[0], (1, 0));
        assert_eq!(slots.get(1).start, 3);
        assert_eq!(slots.iter().count(), slots.len());
        slots.retain(|s| s.start < 100, |_, _| {});
        for i in 0..CHUNK as u32 {
            slots.push(slot(i));
        }
        assert!(slots.chunks.iter().all(|c| c.capacity() <= CHUNK));
    }
}

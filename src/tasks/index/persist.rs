//! The index in the snapshot file's binary form (see `snapshot.rs` for the file around
//! it): the remotes, strings, shapes, slots, side table and per-remote orderings as they
//! are in memory, little-endian, so that opening reads them instead of decoding every
//! line of every data file. Decoding checks every id and ordering it reads, so a
//! snapshot that passed its checksum but was written by a broken program is refused, not
//! trusted; what can be derived (lookup tables, fences, the running set) is rebuilt.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use super::{Extra, Index, FENCE};
use crate::tasks::intern::Interner;
use crate::tasks::slots::{Kind, Shape, Shapes, Slot, NO_STATUS, RUNNING};

/// Bytes of one slot.
const SLOT_BYTES: usize = 28;
/// Slots decoded per read.
const SLOTS_PER_READ: usize = 4096;

/// A snapshot that cannot be what the index wrote.
pub(crate) type Invalid = String;

fn put_u32(out: &mut impl Write, v: u32) -> io::Result<()> {
    out.write_all(&v.to_le_bytes())
}

fn put_u64(out: &mut impl Write, v: u64) -> io::Result<()> {
    out.write_all(&v.to_le_bytes())
}

fn put_len(out: &mut impl Write, n: usize) -> io::Result<()> {
    put_u32(out, u32::try_from(n).map_err(io::Error::other)?)
}

fn put_str(out: &mut impl Write, s: &str) -> io::Result<()> {
    put_len(out, s.len())?;
    out.write_all(s.as_bytes())
}

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Pve => 0,
        Kind::Pbs => 1,
        Kind::Raw => 2,
        Kind::RawPbs => 3,
    }
}

/// Reads the snapshot's fields, bounded: no length read can make it allocate more than
/// the bytes that are left of the file.
pub(crate) struct Input<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Input<R> {
    /// Reads at most `len` bytes from `inner`.
    pub(crate) fn new(inner: R, len: u64) -> Input<R> {
        Input { inner, left: len }
    }

    /// What it reads from.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// Bytes not read yet.
    pub(crate) fn left(&self) -> u64 {
        self.left
    }

    pub(crate) fn bytes(&mut self, buf: &mut [u8]) -> Result<(), Invalid> {
        if (buf.len() as u64) > self.left {
            return Err("cut off".into());
        }
        self.inner
            .read_exact(buf)
            .map_err(|e| format!("read failed: {e}"))?;
        self.left -= buf.len() as u64;
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Invalid> {
        let mut b = [0; 1];
        self.bytes(&mut b)?;
        Ok(b[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Invalid> {
        let mut b = [0; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Invalid> {
        let mut b = [0; 8];
        self.bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A count of items of at least `item_bytes` each, refused if the rest of the file
    /// cannot hold them.
    pub(crate) fn count(&mut self, item_bytes: u64) -> Result<usize, Invalid> {
        let n = self.u32()?;
        if u64::from(n) * item_bytes.max(1) > self.left {
            return Err(format!("a count of {n} exceeds the file"));
        }
        Ok(n as usize)
    }

    pub(crate) fn string(&mut self) -> Result<Box<str>, Invalid> {
        let n = self.count(1)?;
        let mut b = vec![0; n];
        self.bytes(&mut b)?;
        String::from_utf8(b)
            .map(String::into_boxed_str)
            .map_err(|_| "a string is not UTF-8".into())
    }
}

impl Index {
    /// Writes the index in the snapshot form.
    pub(crate) fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        put_len(out, self.remotes.len())?;
        for r in &self.remotes {
            put_str(out, r.as_str())?;
        }
        let strings = self.strings.all();
        put_len(out, strings.len())?;
        for s in strings {
            put_str(out, s)?;
        }
        let shapes = self.shapes.all();
        put_len(out, shapes.len())?;
        for s in shapes {
            for v in [s.node, s.wtype, s.user, s.status] {
                put_u32(out, v)?;
            }
            out.write_all(&[kind_byte(s.kind)])?;
            put_u32(out, s.pid)?;
            put_u64(out, s.pstart)?;
        }
        put_u64(out, self.slots.len() as u64)?;
        let mut buf = Vec::with_capacity(SLOTS_PER_READ * SLOT_BYTES);
        for (i, s) in self.slots.iter() {
            for v in [s.start, s.end, s.a, s.b, s.shape, s.wid] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            buf.extend_from_slice(&s.remote.to_le_bytes());
            buf.extend_from_slice(&s.day.to_le_bytes());
            if (i as usize + 1).is_multiple_of(SLOTS_PER_READ) {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        out.write_all(&buf)?;
        let mut extra: Vec<(&u32, &Extra)> = self.extra.iter().collect();
        extra.sort_unstable_by_key(|(i, _)| **i);
        put_len(out, extra.len())?;
        for (&i, e) in extra {
            put_u32(out, i)?;
            let flags = u8::from(e.upid.is_some())
                | u8::from(e.start.is_some()) << 1
                | u8::from(e.end.is_some()) << 2
                | u8::from(e.pstart.is_some()) << 3;
            out.write_all(&[flags])?;
            if let Some(upid) = &e.upid {
                put_str(out, upid)?;
            }
            for t in [e.start, e.end].into_iter().flatten() {
                put_u64(out, t as u64)?;
            }
            if let Some(p) = e.pstart {
                put_u64(out, p)?;
            }
        }
        for list in &self.per_remote {
            put_len(out, list.len())?;
            buf.clear();
            for &i in list {
                buf.extend_from_slice(&i.to_le_bytes());
                if buf.len() >= SLOTS_PER_READ * 4 {
                    out.write_all(&buf)?;
                    buf.clear();
                }
            }
            out.write_all(&buf)?;
        }
        Ok(())
    }

    /// Reads an index [`Index::encode`] wrote, checking that every id points into its
    /// table and every remote's list is ordered and holds exactly that remote's slots.
    pub(crate) fn decode(input: &mut Input<impl Read>) -> Result<Index, Invalid> {
        let mut index = Index::default();
        for _ in 0..input.count(4)? {
            let name = input.string()?;
            if index.remote_ids.contains_key(&name) || index.intern_remote(&name).is_none() {
                return Err(format!("remote {name} is listed twice or one too many"));
            }
        }
        let mut strings = Vec::new();
        for _ in 0..input.count(4)? {
            strings.push(input.string()?);
        }
        index.strings =
            Interner::from_strings(strings).ok_or("a string is listed twice".to_string())?;
        let n_strings = index.strings.all().len() as u32;
        let string_ok = |id: u32| id < n_strings;
        let mut shapes = Vec::new();
        for _ in 0..input.count(33)? {
            let [node, wtype, user, status] = [(); 4].map(|()| input.u32());
            let shape = Shape {
                node: node?,
                wtype: wtype?,
                user: user?,
                status: status?,
                kind: match input.u8()? {
                    0 => Kind::Pve,
                    1 => Kind::Pbs,
                    2 => Kind::Raw,
                    3 => Kind::RawPbs,
                    k => return Err(format!("unknown UPID kind {k}")),
                },
                pid: input.u32()?,
                pstart: input.u64()?,
            };
            let status_ok = string_ok(shape.status) || [RUNNING, NO_STATUS].contains(&shape.status);
            if ![shape.node, shape.wtype, shape.user]
                .into_iter()
                .all(string_ok)
                || !status_ok
            {
                return Err("a shape names a string that is not there".into());
            }
            shapes.push(shape);
        }
        index.shapes = Shapes::from_shapes(shapes).ok_or("a shape is listed twice".to_string())?;
        let n_shapes = index.shapes.all().len() as u32;
        let n_remotes = index.remotes.len() as u16;
        let n_slots = input.u64()?;
        if n_slots.saturating_mul(SLOT_BYTES as u64) > input.left() || n_slots > u64::from(u32::MAX)
        {
            return Err(format!("a count of {n_slots} slots exceeds the file"));
        }
        let mut buf = vec![0u8; SLOTS_PER_READ * SLOT_BYTES];
        let mut left = n_slots as usize;
        while left > 0 {
            let k = left.min(SLOTS_PER_READ);
            input.bytes(&mut buf[..k * SLOT_BYTES])?;
            for b in buf[..k * SLOT_BYTES].chunks_exact(SLOT_BYTES) {
                let u = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                let slot = Slot {
                    start: u(0),
                    end: u(4),
                    a: u(8),
                    b: u(12),
                    shape: u(16),
                    wid: u(20),
                    remote: u16::from_le_bytes([b[24], b[25]]),
                    day: u16::from_le_bytes([b[26], b[27]]),
                };
                if slot.shape >= n_shapes || !string_ok(slot.wid) || slot.remote >= n_remotes {
                    return Err("a slot names a shape, string or remote that is not there".into());
                }
                index.slots.push(slot);
            }
            left -= k;
        }
        for _ in 0..input.count(5)? {
            let i = input.u32()?;
            if u64::from(i) >= n_slots || index.extra.contains_key(&i) {
                return Err(format!(
                    "the side table names slot {i} twice or past the end"
                ));
            }
            let flags = input.u8()?;
            let bit = |b: u8| flags & (1 << b) != 0;
            let upid = if bit(0) { Some(input.string()?) } else { None };
            if upid.as_deref() == Some("") {
                return Err(format!("the side table gives slot {i} an empty UPID"));
            }
            let extra = Extra {
                upid,
                start: if bit(1) {
                    Some(input.u64()? as i64)
                } else {
                    None
                },
                end: if bit(2) {
                    Some(input.u64()? as i64)
                } else {
                    None
                },
                pstart: if bit(3) { Some(input.u64()?) } else { None },
            };
            index.extra.insert(i, extra);
        }
        let mut listed = 0usize;
        for r in 0..index.remotes.len() {
            let n = input.count(4)?;
            let mut list = Vec::with_capacity(n);
            let mut bytes = vec![0u8; n.min(SLOTS_PER_READ) * 4];
            let mut left = n;
            while left > 0 {
                let k = left.min(SLOTS_PER_READ);
                input.bytes(&mut bytes[..k * 4])?;
                list.extend(
                    bytes[..k * 4]
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
                left -= k;
            }
            let mut previous: Option<(u32, u32)> = None;
            for &i in &list {
                if u64::from(i) >= n_slots || index.slots.get(i).remote as usize != r {
                    return Err(format!(
                        "remote {r}'s list holds slot {i} of another remote"
                    ));
                }
                let key = (index.slots.get(i).start, i);
                if previous.is_some_and(|p| p >= key) {
                    return Err(format!("remote {r}'s list is out of order"));
                }
                previous = Some(key);
            }
            listed += list.len();
            index.per_remote[r] = list;
        }
        if listed as u64 != n_slots {
            return Err(format!(
                "the remotes' lists hold {listed} of {n_slots} slots"
            ));
        }
        index.derive()?;
        Ok(index)
    }

    /// Decodes an index that is all of `bytes` (nothing may follow it).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn decode_all(bytes: &[u8]) -> Result<Index, Invalid> {
        let mut input = Input::new(bytes, bytes.len() as u64);
        let index = Index::decode(&mut input)?;
        match input.left() {
            0 => Ok(index),
            n => Err(format!("{n} bytes follow the index")),
        }
    }

    /// Rebuilds what the snapshot leaves out: the fences, the running set and the table
    /// of UPIDs kept as text (which every raw slot must have).
    fn derive(&mut self) -> Result<(), Invalid> {
        for remote in 0..self.per_remote.len() {
            let list = &self.per_remote[remote];
            self.fences[remote] = list
                .iter()
                .step_by(FENCE)
                .map(|&i| self.slots.get(i).start)
                .collect();
        }
        let mut raw: HashMap<Box<str>, Vec<(u16, u32)>> = HashMap::new();
        for (i, s) in self.slots.iter() {
            let shape = self.shapes.get(s.shape);
            if shape.running() {
                self.running.insert((s.start, i));
            }
            if matches!(shape.kind, Kind::Raw | Kind::RawPbs) {
                let upid = self.extra.get(&i).and_then(|e| e.upid.as_ref());
                let upid = upid.ok_or_else(|| format!("slot {i} has lost its UPID text"))?;
                raw.entry(upid.clone()).or_default().push((s.remote, i));
            }
        }
        self.raw = raw;
        Ok(())
    }
}

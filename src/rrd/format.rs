//! The on-disk layout (described in `docs/rrd-format.md`): a checksummed static
//! header with the definitions, a checksummed live block with the update state, and
//! the ring buffers as raw little-endian `f64`s. Encoding and decoding only; the file
//! handling lives in `file`.

use std::collections::BTreeMap;

use super::consolidate::CdpPrep;
use super::database::{Changes, PdpPrep, Ring, Rrd};
use super::def::{Cf, DsDef, DsType, RraDef};
use super::value::RawValue;
use crate::durable::crc32;

/// The first eight bytes of every file.
pub const MAGIC: [u8; 8] = *b"FPRRD\r\n\x1a";
/// The layout version this code reads and writes.
pub const VERSION: u32 = 1;
/// Size of the fixed part of the header.
const FIXED_LEN: usize = 64;
/// Size of one data-source definition.
const DS_DEF_LEN: usize = 48;
/// Size of one archive definition.
const RRA_DEF_LEN: usize = 32;
/// Size of one data source's live state.
const PDP_LEN: usize = 40;
/// Size of one (archive, data source) live state.
const CDP_LEN: usize = 16;

/// Where the parts of a file lie, derived from the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the static header including its checksum and padding.
    pub static_len: u64,
    /// Offset of the live block.
    pub live_offset: u64,
    /// Bytes of the live block including its checksum.
    pub live_len: u64,
    /// Offset of the first ring buffer.
    pub data_offset: u64,
    /// Total bytes of the file.
    pub file_len: u64,
}

impl Layout {
    /// The layout of a file with these definitions.
    pub fn of(ds_count: usize, rras: &[RraDef]) -> Layout {
        let static_len = round8(FIXED_LEN + ds_count * DS_DEF_LEN + rras.len() * RRA_DEF_LEN + 4);
        let live_len =
            round8(8 + 8 + ds_count * PDP_LEN + rras.len() * 8 + rras.len() * ds_count * CDP_LEN);
        let data_offset = static_len + live_len;
        let data_len: u64 = rras.iter().map(|r| r.rows * ds_count as u64 * 8).sum();
        Layout {
            static_len: static_len as u64,
            live_offset: static_len as u64,
            live_len: live_len as u64,
            data_offset: data_offset as u64,
            file_len: data_offset as u64 + data_len,
        }
    }

    /// File offset of `row` of archive `rra`.
    pub fn row_offset(&self, rrd: &Rrd, rra: usize, row: u64) -> u64 {
        let ds_count = rrd.ds.len() as u64;
        let before: u64 = rrd.rras[..rra].iter().map(|r| r.rows * ds_count * 8).sum();
        self.data_offset + before + row * ds_count * 8
    }
}

fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The whole file's bytes.
pub fn encode(rrd: &Rrd) -> Vec<u8> {
    let layout = Layout::of(rrd.ds.len(), &rrd.rras);
    let mut out = encode_static(rrd, &layout);
    out.extend_from_slice(&encode_live(rrd, &layout));
    for ring in &rrd.rings {
        for v in &ring.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn encode_static(rrd: &Rrd, layout: &Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(layout.static_len as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(rrd.ds.len() as u32).to_le_bytes());
    out.extend_from_slice(&(rrd.rras.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for n in [
        rrd.step,
        layout.live_offset,
        layout.live_len,
        layout.data_offset,
        layout.file_len,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for ds in &rrd.ds {
        let mut name = [0u8; 20];
        name[..ds.name.len()].copy_from_slice(ds.name.as_bytes());
        out.extend_from_slice(&name);
        out.extend_from_slice(&[ds_type_code(ds.kind), 0, 0, 0]);
        out.extend_from_slice(&ds.heartbeat.to_le_bytes());
        out.extend_from_slice(&ds.min.unwrap_or(f64::NAN).to_le_bytes());
        out.extend_from_slice(&ds.max.unwrap_or(f64::NAN).to_le_bytes());
    }
    for rra in &rrd.rras {
        out.extend_from_slice(&[cf_code(rra.cf), 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&rra.xff.to_le_bytes());
        out.extend_from_slice(&rra.steps.to_le_bytes());
        out.extend_from_slice(&rra.rows.to_le_bytes());
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.resize(layout.static_len as usize, 0);
    out
}

/// The live block's bytes: checksum, last update, PDP and CDP state, row pointers.
pub fn encode_live(rrd: &Rrd, layout: &Layout) -> Vec<u8> {
    let mut body = Vec::with_capacity(layout.live_len as usize);
    body.extend_from_slice(&rrd.last_update.to_le_bytes());
    for prep in &rrd.pdp {
        let (tag, negative, bits) = match prep.last_raw {
            RawValue::Unknown => (0u8, 0u8, 0u128),
            RawValue::Integer {
                negative,
                magnitude,
            } => (1, u8::from(negative), magnitude),
            RawValue::Float(v) => (2, 0, u128::from(v.to_bits())),
        };
        body.extend_from_slice(&[tag, negative, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&bits.to_le_bytes());
        body.extend_from_slice(&prep.value.to_le_bytes());
        body.extend_from_slice(&prep.unknown_sec.to_le_bytes());
    }
    for ring in &rrd.rings {
        body.extend_from_slice(&ring.cur_row.to_le_bytes());
    }
    for prep in &rrd.cdp {
        body.extend_from_slice(&prep.value.to_le_bytes());
        body.extend_from_slice(&prep.unknown_pdps.to_le_bytes());
    }
    body.resize(layout.live_len as usize - 8, 0);
    let mut out = Vec::with_capacity(layout.live_len as usize);
    out.extend_from_slice(&crc32(&body).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn ds_type_code(kind: DsType) -> u8 {
    match kind {
        DsType::Gauge => 1,
        DsType::Counter => 2,
        DsType::Derive => 3,
        DsType::Absolute => 4,
    }
}

fn cf_code(cf: Cf) -> u8 {
    match cf {
        Cf::Average => 1,
        Cf::Min => 2,
        Cf::Max => 3,
        Cf::Last => 4,
    }
}

/// Reads little-endian fields, failing with a description instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| "the file is truncated".to_string())?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }

    fn u128(&mut self) -> Result<u128, String> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16)?);
        Ok(u128::from_le_bytes(a))
    }
}

fn optional(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// Decodes a whole file; the error says what check failed.
pub fn decode(bytes: &[u8]) -> Result<Rrd, String> {
    decode_parts(bytes, bytes.len() as u64, true)
}

/// Decodes the header and live block of a file of `file_len` bytes from its first
/// bytes (at least up to the ring buffers); the rings are left unloaded (empty).
pub fn decode_head(head: &[u8], file_len: u64) -> Result<Rrd, String> {
    decode_parts(head, file_len, false)
}

/// Fills the rings of a database decoded by [`decode_head`] from the bytes of the
/// ring buffers (the file from `data_offset` to its end).
pub fn decode_rings(rrd: &mut Rrd, data: &[u8]) -> Result<(), String> {
    let ds_count = rrd.ds.len();
    let expected: usize = rrd
        .rras
        .iter()
        .map(|r| r.rows as usize * ds_count * 8)
        .sum();
    if data.len() != expected {
        return Err(format!(
            "the ring buffers are {} bytes, expected {expected}",
            data.len()
        ));
    }
    let mut values = data
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")));
    for (ring, rra) in rrd.rings.iter_mut().zip(&rrd.rras) {
        ring.values = values.by_ref().take(rra.rows as usize * ds_count).collect();
        for (row, row_values) in std::mem::take(&mut ring.unloaded_rows) {
            let start = row as usize * ds_count;
            ring.values[start..start + ds_count].copy_from_slice(&row_values);
        }
    }
    Ok(())
}

fn decode_parts(bytes: &[u8], file_len: u64, with_rings: bool) -> Result<Rrd, String> {
    if bytes.len() < FIXED_LEN || bytes[..8] != MAGIC {
        return Err("not a fleetpoll RRD file (bad magic)".to_string());
    }
    let mut r = Reader { bytes, pos: 8 };
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!(
            "layout version {version} is not supported (this build reads version {VERSION})"
        ));
    }
    let ds_count = r.u32()? as usize;
    let rra_count = r.u32()? as usize;
    r.u32()?;
    let step = r.u64()?;
    let stored = [r.u64()?, r.u64()?, r.u64()?, r.u64()?];
    let defs_len = ds_count
        .checked_mul(DS_DEF_LEN)
        .and_then(|d| rra_count.checked_mul(RRA_DEF_LEN).map(|r| d + r))
        .filter(|&n| FIXED_LEN + n + 4 <= bytes.len())
        .ok_or_else(|| "the header is corrupt (impossible counts)".to_string())?;
    let crc_at = FIXED_LEN + defs_len;
    let mut crc_reader = Reader { bytes, pos: crc_at };
    if crc_reader.u32()? != crc32(&bytes[..crc_at]) {
        return Err("the header checksum does not match (the header is corrupt)".to_string());
    }
    let mut ds = Vec::with_capacity(ds_count);
    for _ in 0..ds_count {
        let name = r.take(20)?;
        let len = name.iter().position(|&b| b == 0).unwrap_or(20);
        let name = String::from_utf8(name[..len].to_vec())
            .map_err(|_| "a data-source name is not UTF-8".to_string())?;
        let kind = match r.u8()? {
            1 => DsType::Gauge,
            2 => DsType::Counter,
            3 => DsType::Derive,
            4 => DsType::Absolute,
            other => return Err(format!("unknown data-source type code {other}")),
        };
        r.take(3)?;
        ds.push(DsDef {
            name,
            kind,
            heartbeat: r.u64()?,
            min: optional(r.f64()?),
            max: optional(r.f64()?),
        });
    }
    let mut rras = Vec::with_capacity(rra_count);
    for _ in 0..rra_count {
        let cf = match r.u8()? {
            1 => Cf::Average,
            2 => Cf::Min,
            3 => Cf::Max,
            4 => Cf::Last,
            other => return Err(format!("unknown consolidation function code {other}")),
        };
        r.take(7)?;
        rras.push(RraDef {
            cf,
            xff: r.f64()?,
            steps: r.u64()?,
            rows: r.u64()?,
        });
    }
    let layout = Layout::of(ds_count, &rras);
    let expected = [
        layout.live_offset,
        layout.live_len,
        layout.data_offset,
        layout.file_len,
    ];
    if stored != expected || step == 0 {
        return Err("the header is inconsistent with its definitions".to_string());
    }
    if file_len != layout.file_len {
        return Err(format!(
            "the file is {file_len} bytes long but its header describes {} bytes",
            layout.file_len
        ));
    }
    let live = bytes
        .get(layout.live_offset as usize..layout.data_offset as usize)
        .ok_or_else(|| "the file is truncated".to_string())?;
    let mut lr = Reader {
        bytes: live,
        pos: 0,
    };
    let live_crc = lr.u32()?;
    lr.u32()?;
    if live_crc != crc32(&live[8..]) {
        return Err("the live-state checksum does not match (torn or corrupt write)".to_string());
    }
    let last_update = lr.u64()? as i64;
    let mut pdp = Vec::with_capacity(ds_count);
    for _ in 0..ds_count {
        let tag = lr.u8()?;
        let negative = lr.u8()? != 0;
        lr.take(6)?;
        let bits = lr.u128()?;
        let last_raw = match tag {
            0 => RawValue::Unknown,
            1 => RawValue::Integer {
                negative,
                magnitude: bits,
            },
            2 => RawValue::Float(f64::from_bits(bits as u64)),
            other => return Err(format!("unknown raw value tag {other}")),
        };
        pdp.push(PdpPrep {
            last_raw,
            value: lr.f64()?,
            unknown_sec: lr.u64()?,
        });
    }
    let mut cur_rows = Vec::with_capacity(rra_count);
    for rra in &rras {
        let cur_row = lr.u64()?;
        if cur_row >= rra.rows {
            return Err("a row pointer lies outside its archive".to_string());
        }
        cur_rows.push(cur_row);
    }
    let mut cdp = Vec::with_capacity(rra_count * ds_count);
    for _ in 0..rra_count * ds_count {
        cdp.push(CdpPrep {
            value: lr.f64()?,
            unknown_pdps: lr.u64()?,
        });
    }
    let mut dr = Reader {
        bytes,
        pos: layout.data_offset as usize,
    };
    let mut rings = Vec::with_capacity(rra_count);
    for (rra, cur_row) in rras.iter().zip(cur_rows) {
        let n = if with_rings {
            rra.rows as usize * ds_count
        } else {
            0
        };
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(dr.f64()?);
        }
        rings.push(Ring {
            cur_row,
            values,
            unloaded_rows: BTreeMap::new(),
        });
    }
    Ok(Rrd {
        step,
        changes: Changes {
            rows: vec![Vec::new(); rra_count],
        },
        ds,
        rras,
        last_update,
        pdp,
        cdp,
        rings,
    })
}

/// Where the ring buffers start, from the fixed part of a header (64 bytes), after
/// checking the magic and version.
pub fn data_offset_of(fixed: &[u8]) -> Result<u64, String> {
    if fixed.len() < FIXED_LEN || fixed[..8] != MAGIC {
        return Err("not a fleetpoll RRD file (bad magic)".to_string());
    }
    let mut r = Reader {
        bytes: fixed,
        pos: 48,
    };
    let data_offset = r.u64()?;
    if data_offset > 1 << 30 {
        return Err("the header is corrupt (impossible offsets)".to_string());
    }
    Ok(data_offset)
}

/// The last update time from the bytes before the ring buffers, verifying the
/// header and live-block checksums.
pub fn last_update_of(head: &[u8]) -> Result<i64, String> {
    let mut r = Reader {
        bytes: head,
        pos: 8,
    };
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!(
            "layout version {version} is not supported (this build reads version {VERSION})"
        ));
    }
    let ds_count = r.u32()? as usize;
    let rra_count = r.u32()? as usize;
    let crc_at = FIXED_LEN + ds_count * DS_DEF_LEN + rra_count * RRA_DEF_LEN;
    let mut c = Reader {
        bytes: head,
        pos: crc_at,
    };
    if c.u32()? != crc32(&head[..crc_at]) {
        return Err("the header checksum does not match (the header is corrupt)".to_string());
    }
    let mut o = Reader {
        bytes: head,
        pos: 32,
    };
    let live_offset = o.u64()? as usize;
    let live_len = o.u64()? as usize;
    let live = head
        .get(live_offset..live_offset + live_len)
        .ok_or_else(|| "the file is truncated".to_string())?;
    let mut lr = Reader {
        bytes: live,
        pos: 0,
    };
    if lr.u32()? != crc32(&live[8..]) {
        return Err("the live-state checksum does not match (torn or corrupt write)".to_string());
    }
    lr.u32()?;
    Ok(lr.u64()? as i64)
}

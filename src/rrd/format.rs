//! The on-disk layout (described in `docs/rrd-format.md`): a checksummed static
//! header with the definitions, a checksummed live block with the update state, a
//! table of one CRC-32 per block of rows (version 2), and the ring buffers as raw
//! little-endian `f64`s. Encoding and decoding only; the file handling lives in `file`.
//! Version 1 files (no row checksums) are decoded too, to be upgraded on open.

use std::collections::BTreeMap;

use super::consolidate::CdpPrep;
use super::database::{check_shape, Changes, PdpPrep, Ring, Rrd, MAX_TIME};
use super::def::{Cf, DsDef, DsType, RraDef};
use super::value::RawValue;
use crate::durable::{crc32, crc32_f64s};

/// The first eight bytes of every file.
pub const MAGIC: [u8; 8] = *b"FPRRD\r\n\x1a";
/// The layout version this code writes.
pub const VERSION: u32 = 2;
/// The first layout version, without row checksums: still read, to be upgraded.
pub const VERSION_1: u32 = 1;
/// A block of rows (one CRC-32 each) holds about this many bytes: a changed row costs
/// one read of at most this much to re-checksum its block when the rings are not in
/// memory, and the checksums cost 4 bytes per block (0.1 %).
const BLOCK_BYTES: u64 = 4096;
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

/// Where the parts of a file lie, derived from the version and the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The layout version ([`VERSION`], or [`VERSION_1`] for a file still to upgrade).
    pub version: u32,
    /// Bytes of the static header including its checksum and padding.
    pub static_len: u64,
    /// Offset of the live block.
    pub live_offset: u64,
    /// Bytes of the live block including its checksum.
    pub live_len: u64,
    /// Offset of the block-checksum table (right after the live block).
    pub crc_offset: u64,
    /// Rows per checksummed block; 0 in version 1 (no table).
    pub rows_per_block: u64,
    /// Offset of the first ring buffer.
    pub data_offset: u64,
    /// Total bytes of the file.
    pub file_len: u64,
}

impl Layout {
    /// The layout of a file with these definitions, in the current version.
    pub fn of(ds_count: usize, rras: &[RraDef]) -> Layout {
        Layout::of_version(VERSION, ds_count, rras)
    }

    /// The layout of a file of `version` with these definitions.
    pub fn of_version(version: u32, ds_count: usize, rras: &[RraDef]) -> Layout {
        let static_len = round8(FIXED_LEN + ds_count * DS_DEF_LEN + rras.len() * RRA_DEF_LEN + 4);
        let live_len =
            round8(8 + 8 + ds_count * PDP_LEN + rras.len() * 8 + rras.len() * ds_count * CDP_LEN);
        let rows_per_block = if version == VERSION_1 {
            0
        } else {
            (BLOCK_BYTES / (8 * ds_count.max(1) as u64)).max(1)
        };
        let crc_offset = (static_len + live_len) as u64;
        let blocks: u64 = rras.iter().map(|r| blocks_of(r.rows, rows_per_block)).sum();
        let data_offset = crc_offset + round8(blocks as usize * 4) as u64;
        let data_len: u64 = rras.iter().map(|r| r.rows * ds_count as u64 * 8).sum();
        Layout {
            version,
            static_len: static_len as u64,
            live_offset: static_len as u64,
            live_len: live_len as u64,
            crc_offset,
            rows_per_block,
            data_offset,
            file_len: data_offset + data_len,
        }
    }

    /// File offset of `row` of archive `rra`.
    pub fn row_offset(&self, rrd: &Rrd, rra: usize, row: u64) -> u64 {
        let ds_count = rrd.ds.len() as u64;
        let before: u64 = rrd.rras[..rra].iter().map(|r| r.rows * ds_count * 8).sum();
        self.data_offset + before + row * ds_count * 8
    }

    /// Index in the checksum table of the first block of archive `rra`.
    pub fn first_block(&self, rras: &[RraDef], rra: usize) -> usize {
        rras[..rra]
            .iter()
            .map(|r| blocks_of(r.rows, self.rows_per_block) as usize)
            .sum()
    }

    /// The rows `start..end` of block `block` of an archive of `rows` rows.
    pub fn block_rows(&self, rows: u64, block: u64) -> std::ops::Range<u64> {
        let start = block * self.rows_per_block;
        start..(start + self.rows_per_block).min(rows)
    }
}

/// How many blocks of `rows_per_block` rows an archive of `rows` rows has (none
/// without row checksums).
fn blocks_of(rows: u64, rows_per_block: u64) -> u64 {
    if rows_per_block == 0 {
        0
    } else {
        rows.div_ceil(rows_per_block)
    }
}

/// The checksum of one block's values, as little-endian `f64`s.
pub fn block_crc(values: &[f64]) -> u32 {
    crc32_f64s(values)
}

/// The checksum of every block of a database whose rings are loaded, in table order.
pub fn block_crcs(rrd: &Rrd, layout: &Layout) -> Vec<u32> {
    let ds_count = rrd.ds.len();
    let mut out = Vec::new();
    for (ring, rra) in rrd.rings.iter().zip(&rrd.rras) {
        for block in 0..blocks_of(rra.rows, layout.rows_per_block) {
            let rows = layout.block_rows(rra.rows, block);
            let values = &ring.values[rows.start as usize * ds_count..rows.end as usize * ds_count];
            out.push(block_crc(values));
        }
    }
    out
}

fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The whole file's bytes (the rings must be loaded).
pub fn encode(rrd: &Rrd) -> Vec<u8> {
    encode_as(rrd, &Layout::of(rrd.ds.len(), &rrd.rras))
}

/// The whole file's bytes in `layout` (a version-1 layout only in tests, to make files
/// as older builds wrote them).
pub(crate) fn encode_as(rrd: &Rrd, layout: &Layout) -> Vec<u8> {
    let layout = *layout;
    let mut out = encode_static(rrd, &layout);
    out.extend_from_slice(&encode_live(rrd, &layout));
    for crc in block_crcs(rrd, &layout) {
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out.resize(layout.data_offset as usize, 0);
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
    out.extend_from_slice(&layout.version.to_le_bytes());
    out.extend_from_slice(&(rrd.ds.len() as u32).to_le_bytes());
    out.extend_from_slice(&(rrd.rras.len() as u32).to_le_bytes());
    out.extend_from_slice(&(layout.rows_per_block as u32).to_le_bytes());
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

/// A file's contents as decoded.
#[derive(Debug)]
pub struct Decoded {
    /// The database (its rings empty when only the head was decoded).
    pub rrd: Rrd,
    /// Where the file's parts lie, and its version.
    pub layout: Layout,
    /// The stored checksum of every block of rows, in table order (empty in version 1).
    pub block_crcs: Vec<u32>,
}

/// Decodes a whole file, verifying every checksum; the error says what check failed.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let mut decoded = decode_parts(bytes, bytes.len() as u64)?;
    let data = &bytes[decoded.layout.data_offset as usize..];
    decode_rings(&mut decoded.rrd, &decoded.layout, &decoded.block_crcs, data)?;
    Ok(decoded)
}

/// Decodes the header, live block and checksum table of a file of `file_len` bytes
/// from its first bytes (at least up to the ring buffers); the rings are left
/// unloaded (empty).
pub fn decode_head(head: &[u8], file_len: u64) -> Result<Decoded, String> {
    decode_parts(head, file_len)
}

/// Fills the rings of a database decoded by [`decode_head`] from the bytes of the
/// ring buffers (the file from `data_offset` to its end), verifying each block of
/// rows against its stored checksum.
pub fn decode_rings(
    rrd: &mut Rrd,
    layout: &Layout,
    block_crcs: &[u32],
    data: &[u8],
) -> Result<(), String> {
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
    if layout.rows_per_block > 0 {
        let mut at = 0;
        let mut crcs = block_crcs.iter();
        for (k, rra) in rrd.rras.iter().enumerate() {
            for block in 0..blocks_of(rra.rows, layout.rows_per_block) {
                let rows = layout.block_rows(rra.rows, block);
                let len = (rows.end - rows.start) as usize * ds_count * 8;
                let stored = crcs.next().copied();
                if stored != Some(crc32(&data[at..at + len])) {
                    return Err(row_damage(k, rra, rows));
                }
                at += len;
            }
        }
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

/// What a block of rows failing its checksum is reported as.
pub(crate) fn row_damage(rra_index: usize, rra: &RraDef, rows: std::ops::Range<u64>) -> String {
    format!(
        "rows {}-{} of archive {rra_index} ({} of {} PDPs a row) fail their checksum \
         (a stored value was changed on disk)",
        rows.start,
        rows.end.saturating_sub(1),
        rra.cf.as_str(),
        rra.steps
    )
}

/// Why the first bytes of a file are not the fixed part of one of ours.
fn check_fixed(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_string());
    }
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return Err("not a fleetpoll RRD file (bad magic)".to_string());
    }
    if bytes.len() < FIXED_LEN {
        return Err(format!(
            "the file is truncated ({} bytes, shorter than a header)",
            bytes.len()
        ));
    }
    Ok(())
}

fn decode_parts(bytes: &[u8], file_len: u64) -> Result<Decoded, String> {
    check_fixed(bytes)?;
    let mut r = Reader { bytes, pos: 8 };
    let version = r.u32()?;
    if version != VERSION && version != VERSION_1 {
        return Err(format!(
            "layout version {version} is not supported (this build reads versions \
             {VERSION_1} and {VERSION})"
        ));
    }
    let ds_count = r.u32()? as usize;
    let rra_count = r.u32()? as usize;
    let stored_rows_per_block = u64::from(r.u32()?);
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
    // Checked before the layout is computed from these counts.
    check_shape(step, ds_count, &rras).map_err(|e| format!("the header is impossible: {e}"))?;
    let layout = Layout::of_version(version, ds_count, &rras);
    let expected = [
        layout.live_offset,
        layout.live_len,
        layout.data_offset,
        layout.file_len,
    ];
    let rows_per_block_ok = version == VERSION_1 || stored_rows_per_block == layout.rows_per_block;
    if stored != expected || step == 0 || !rows_per_block_ok {
        return Err("the header is inconsistent with its definitions".to_string());
    }
    if file_len != layout.file_len {
        return Err(format!(
            "the file is {file_len} bytes long but its header describes {} bytes",
            layout.file_len
        ));
    }
    let live = bytes
        .get(layout.live_offset as usize..layout.crc_offset as usize)
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
    if !(0..=MAX_TIME).contains(&last_update) {
        return Err(format!(
            "the last update ({last_update}) lies before 1970 or after year 9999"
        ));
    }
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
    let blocks = (layout.data_offset - layout.crc_offset) as usize / 4;
    let table = bytes
        .get(layout.crc_offset as usize..layout.data_offset as usize)
        .ok_or_else(|| "the file is truncated".to_string())?;
    let used: usize = rras
        .iter()
        .map(|r| blocks_of(r.rows, layout.rows_per_block) as usize)
        .sum();
    let block_crcs = table
        .chunks_exact(4)
        .take(used.min(blocks))
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let rings = cur_rows
        .into_iter()
        .map(|cur_row| Ring {
            cur_row,
            values: Vec::new(),
            unloaded_rows: BTreeMap::new(),
        })
        .collect();
    let rrd = Rrd {
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
    };
    Ok(Decoded {
        rrd,
        layout,
        block_crcs,
    })
}

/// Where the ring buffers start, from the fixed part of a header (64 bytes), after
/// checking the magic.
pub fn data_offset_of(fixed: &[u8]) -> Result<u64, String> {
    check_fixed(fixed)?;
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

//! The index snapshot (`index.snapshot`): the in-memory index as the data files it was
//! built from make it, written by the writing handle after a rotation, after an apply
//! that left the active file [`SNAPSHOT_BEHIND_BYTES`] and at least its covered length
//! again past the last snapshot, and on open when none could be used. Opening reads it and then only the
//! active file's lines after it, instead of decoding every line of every file.
//!
//! It is derived data, never trusted blindly: it names every data file it covers with
//! its length and CRC-32 (the active file by the prefix it had), and is used only if
//! the directory holds exactly those archives, byte for byte, and an active file that
//! starts with that prefix; otherwise it is stale and the files are read. Its own bytes
//! carry a CRC-32 and every id in it is checked while decoding; one that fails is
//! reported as corrupt and the files are read. The writer then replaces it (atomically,
//! through [`crate::durable::replace_with`]).
//!
//! Layout: `FPTSNAP\n`, version `u32`; the body — a meta section (`u32` length, then the
//! active file's day as `i64`, the covered files as (name, length, CRC-32), then the
//! section's own CRC-32) and the index (`index/persist.rs`); a trailer of the body's
//! length (`u64`), its CRC-32 and `FPTSEND\n`. Little-endian throughout.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::cache::Inner;
use super::error::TaskCacheError;
use super::files::{list_archives, ACTIVE, SNAPSHOT};
use super::index::persist::Input;
use super::index::Index;
use crate::durable::{replace_with, Mode};

/// The first bytes of a snapshot.
const MAGIC: &[u8; 8] = b"FPTSNAP\n";
/// The last bytes of a snapshot.
const END: &[u8; 8] = b"FPTSEND\n";
/// Format version.
const VERSION: u32 = 1;
/// Magic and version.
const HEADER_BYTES: u64 = 12;
/// Body length, body CRC-32, end magic.
const TRAILER_BYTES: u64 = 20;

/// The writer snapshots again after an apply once the active file has grown this much
/// past the last snapshot (and by at least as much as the snapshot covers of it): what
/// an open decodes line by line stays below the larger of the two.
pub const SNAPSHOT_BEHIND_BYTES: u64 = 16 * 1024 * 1024;

/// A data file as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileMark {
    name: String,
    len: u64,
    crc: u32,
}

/// A usable snapshot.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) index: Index,
    /// The UTC day of the active file.
    pub(crate) active_day: i64,
    /// The active file's bytes it covers: its lines after them are read from the file.
    pub(crate) active_covered: u64,
}

/// What reading the snapshot found.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It matches the files: use it.
    Used(Box<Snapshot>),
    /// There is none.
    Missing,
    /// It was written for other files (or by another version): read the files.
    Stale(String),
    /// Its bytes are damaged: report it and read the files.
    Corrupt(String),
}

/// Counts and checksums what passes through.
struct Crc<T> {
    inner: T,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl<T> Crc<T> {
    fn new(inner: T) -> Crc<T> {
        Crc {
            inner,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        }
    }
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The length and CRC-32 of the first `len` bytes of a file (all of it for `None`).
fn mark_of(path: &Path, len: Option<u64>) -> io::Result<(u64, u32)> {
    let file = File::open(path)?;
    let len = match len {
        Some(n) => n,
        None => file.metadata()?.len(),
    };
    let mut reader = Crc::new(file.take(len));
    io::copy(&mut reader, &mut io::sink())?;
    if reader.len != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok((len, reader.hasher.finalize()))
}

/// The data files of `dir` as they are now: the archives oldest first, then the active
/// file.
fn marks_now(dir: &Path) -> Result<Vec<FileMark>, TaskCacheError> {
    let mut marks = Vec::new();
    let archives = list_archives(dir)?;
    let paths = archives
        .iter()
        .map(|a| a.path.clone())
        .chain([dir.join(ACTIVE)]);
    for path in paths {
        let (len, crc) = mark_of(&path, None).map_err(TaskCacheError::io(&path, "read"))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        marks.push(FileMark { name, len, crc });
    }
    Ok(marks)
}

/// Whether the directory holds the files `marks` describe; the active file's covered
/// length if so.
fn check_marks(dir: &Path, marks: &[FileMark]) -> Result<u64, String> {
    let Some((active, archived)) = marks.split_last() else {
        return Err("it names no file".into());
    };
    let archives = list_archives(dir).map_err(|e| e.to_string())?;
    let names: Vec<String> = archives
        .iter()
        .filter_map(|a| Some(a.path.file_name()?.to_string_lossy().into_owned()))
        .collect();
    let expected: Vec<&str> = archived.iter().map(|m| m.name.as_str()).collect();
    if names != expected || active.name != ACTIVE {
        return Err(format!(
            "it covers {expected:?}, the directory holds {names:?}"
        ));
    }
    for mark in archived {
        let now =
            mark_of(&dir.join(&mark.name), None).map_err(|e| format!("{}: {e}", mark.name))?;
        if now != (mark.len, mark.crc) {
            return Err(format!("{} changed since", mark.name));
        }
    }
    let path = dir.join(ACTIVE);
    let now = mark_of(&path, Some(active.len)).map_err(|e| format!("{ACTIVE}: {e}"))?;
    if now != (active.len, active.crc) {
        return Err(format!(
            "{ACTIVE} does not start with the {} bytes it covers",
            active.len
        ));
    }
    Ok(active.len)
}

/// The meta section: the active file's day and the data files covered.
fn encode_meta(active_day: i64, marks: &[FileMark]) -> Vec<u8> {
    let mut meta = active_day.to_le_bytes().to_vec();
    meta.extend_from_slice(&(marks.len() as u32).to_le_bytes());
    for m in marks {
        meta.extend_from_slice(&(m.name.len() as u32).to_le_bytes());
        meta.extend_from_slice(m.name.as_bytes());
        meta.extend_from_slice(&m.len.to_le_bytes());
        meta.extend_from_slice(&m.crc.to_le_bytes());
    }
    meta
}

/// Writes a whole snapshot to `out`: header, the body (`meta` and what `index` writes,
/// counted and checksummed on the way) and the trailer.
fn write_framed<W: Write>(
    out: &mut W,
    meta: &[u8],
    index: impl FnOnce(&mut Crc<BufWriter<&mut W>>) -> io::Result<()>,
) -> io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    let (len, crc) = {
        let mut body = Crc::new(BufWriter::with_capacity(1 << 20, &mut *out));
        body.write_all(&(meta.len() as u32).to_le_bytes())?;
        body.write_all(meta)?;
        body.write_all(&crc32fast::hash(meta).to_le_bytes())?;
        index(&mut body)?;
        body.flush()?;
        (body.len, body.hasher.clone().finalize())
    };
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&crc.to_le_bytes())?;
    out.write_all(END)
}

/// Writes the snapshot of `inner`, built from the files of `dir` as they are now (the
/// caller holds the writer, so they and memory agree: the journal is applied).
/// Returns the active file's length it covers.
pub(crate) fn write(dir: &Path, inner: &Inner) -> Result<u64, TaskCacheError> {
    let marks = marks_now(dir)?;
    let meta = encode_meta(inner.active_day, &marks);
    let path = dir.join(SNAPSHOT);
    replace_with(&path, Mode::WorldReadable, |file| {
        write_framed(file, &meta, |body| inner.index.encode(body))
    })?;
    Ok(marks.last().map_or(0, |m| m.len))
}

/// A snapshot file as [`write`] frames one, with every checksum right, around bytes
/// that need not be an index: `index`, after a meta section that covers the files of
/// `dir` as they are now, or with `meta` given, those bytes as the meta section and
/// `index` after them. The fuzz target behind it reaches the decoders the checksums
/// guard (a fuzzer seldom forges a CRC).
#[cfg(feature = "fuzzing")]
pub(crate) fn framed(
    dir: &Path,
    meta: Option<&[u8]>,
    index: &[u8],
) -> Result<Vec<u8>, TaskCacheError> {
    let meta = match meta {
        Some(m) => m.to_vec(),
        None => encode_meta(0, &marks_now(dir)?),
    };
    let mut out = Vec::new();
    write_framed(&mut out, &meta, |body| body.write_all(index))
        .expect("writing to memory does not fail");
    Ok(out)
}

/// Reads the snapshot of `dir` and checks it against the files.
pub(crate) fn read(dir: &Path) -> Outcome {
    let path = dir.join(SNAPSHOT);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Outcome::Missing,
        Err(e) => return Outcome::Corrupt(format!("it cannot be opened: {e}")),
    };
    match read_file(dir, &mut file) {
        Ok(snapshot) => Outcome::Used(snapshot),
        Err(outcome) => outcome,
    }
}

fn read_file(dir: &Path, file: &mut File) -> Result<Box<Snapshot>, Outcome> {
    let corrupt = |what: String| Outcome::Corrupt(what);
    let io_err = |e: io::Error| Outcome::Corrupt(format!("reading it failed: {e}"));
    let len = file.metadata().map_err(io_err)?.len();
    if len < HEADER_BYTES + TRAILER_BYTES {
        return Err(corrupt(format!("it is {len} bytes long, too short")));
    }
    let mut head = [0u8; HEADER_BYTES as usize];
    file.read_exact(&mut head).map_err(io_err)?;
    if &head[..8] != MAGIC {
        return Err(corrupt("it does not start as a snapshot".into()));
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != VERSION {
        return Err(Outcome::Stale(format!(
            "format version {version} is not {VERSION}"
        )));
    }
    let mut tail = [0u8; TRAILER_BYTES as usize];
    file.seek(SeekFrom::End(-(TRAILER_BYTES as i64)))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(io_err)?;
    let body_len = u64::from_le_bytes(tail[..8].try_into().unwrap_or_default());
    let body_crc = u32::from_le_bytes(tail[8..12].try_into().unwrap_or_default());
    if &tail[12..] != END || HEADER_BYTES.checked_add(body_len) != Some(len - TRAILER_BYTES) {
        return Err(corrupt("it is cut off or its trailer is damaged".into()));
    }
    file.seek(SeekFrom::Start(HEADER_BYTES)).map_err(io_err)?;
    let reader = Crc::new(BufReader::with_capacity(1 << 20, (&*file).take(body_len)));
    let mut input = Input::new(reader, body_len);
    let meta_len = input.count(1).map_err(corrupt)?;
    let mut meta = vec![0u8; meta_len];
    input.bytes(&mut meta).map_err(corrupt)?;
    let meta_crc = input.u32().map_err(corrupt)?;
    if crc32fast::hash(&meta) != meta_crc {
        return Err(corrupt("its list of files fails its checksum".into()));
    }
    let (active_day, marks) = decode_meta(&meta).map_err(corrupt)?;
    let active_covered = check_marks(dir, &marks).map_err(Outcome::Stale)?;
    let index = Index::decode(&mut input).map_err(corrupt)?;
    if input.left() != 0 {
        return Err(corrupt(format!("{} bytes follow the index", input.left())));
    }
    if input.into_inner().hasher.finalize() != body_crc {
        return Err(corrupt("it fails its checksum".into()));
    }
    Ok(Box::new(Snapshot {
        index,
        active_day,
        active_covered,
    }))
}

fn decode_meta(meta: &[u8]) -> Result<(i64, Vec<FileMark>), String> {
    let mut input = Input::new(meta, meta.len() as u64);
    let active_day = input.u64()? as i64;
    let mut marks = Vec::new();
    for _ in 0..input.count(16)? {
        let name = input.string()?.into_string();
        let len = input.u64()?;
        let crc = input.u32()?;
        marks.push(FileMark { name, len, crc });
    }
    if input.left() != 0 {
        return Err("its list of files has trailing bytes".into());
    }
    Ok((active_day, marks))
}

#[cfg(test)]
mod tests;

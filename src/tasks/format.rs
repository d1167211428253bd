//! The on-disk record format: JSON lines, one task state per line, written compactly
//! (the remote, the UPID, end time and status; the other fields come from the UPID and
//! are spelled out only when the remote reported something different). Archives are
//! the same lines, zstd-compressed once they are older than the newest two.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use fleetpoll_actors::{TaskRecord, UnixTime};
use serde::{Deserialize, Serialize};

use super::error::TaskCacheError;
use crate::remote::upid::Upid;

/// Format version written in every data file's first line.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// First line of the active file and of every archive.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    /// Format version.
    pub(crate) fleetpoll_task_cache: u32,
    /// The UTC day (`YYYY-MM-DD`) whose records the file holds.
    pub(crate) day: String,
}

/// One task state as a line of a data file or an element of a journal entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DiskTask<'a> {
    /// The remote.
    #[serde(borrow)]
    pub(crate) r: Cow<'a, str>,
    /// The UPID.
    #[serde(borrow)]
    pub(crate) u: Cow<'a, str>,
    /// End time; absent while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) e: Option<UnixTime>,
    /// Status text; absent while running.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) s: Option<Cow<'a, str>>,
    /// The record's own fields, only when they differ from what the UPID says (or the
    /// UPID does not parse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) x: Option<Fields>,
}

/// The fields of a [`TaskRecord`] that normally come from its UPID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fields {
    /// Node.
    pub(crate) node: String,
    /// Task type.
    pub(crate) task_type: String,
    /// Task object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) task_id: Option<String>,
    /// User.
    pub(crate) user: String,
    /// Start time.
    pub(crate) start_time: UnixTime,
}

impl Fields {
    /// What a parsed UPID says the fields are.
    pub(crate) fn from_upid(upid: &Upid) -> Fields {
        Fields {
            node: upid.node.clone(),
            task_type: upid.worker_type.clone(),
            task_id: (!upid.worker_id.is_empty()).then(|| upid.worker_id.clone()),
            user: upid.user.clone(),
            start_time: upid.starttime,
        }
    }

    /// The fields a record carries.
    pub(crate) fn of_record(t: &TaskRecord) -> Fields {
        Fields {
            node: t.node.clone(),
            task_type: t.task_type.clone(),
            task_id: t.task_id.clone(),
            user: t.user.clone(),
            start_time: t.start_time,
        }
    }
}

impl<'a> DiskTask<'a> {
    /// The compact form of a record of `remote`.
    pub(crate) fn from_record(remote: &'a str, t: &'a TaskRecord) -> DiskTask<'a> {
        let own = Fields::of_record(t);
        let x = match Upid::parse(&t.upid) {
            Ok(u) if Fields::from_upid(&u) == own => None,
            _ => Some(own),
        };
        DiskTask {
            r: Cow::Borrowed(remote),
            u: Cow::Borrowed(&t.upid),
            e: t.end_time,
            s: t.status.as_deref().map(Cow::Borrowed),
            x,
        }
    }
}

/// Why a data file could not be read to its end.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file could not be opened or read.
    Io(TaskCacheError),
    /// The content is not what this module writes.
    Corrupt(String),
}

/// The header line's text, checked.
fn parse_header(text: &str) -> Result<Header, ReadError> {
    let h: Header = serde_json::from_str(text)
        .map_err(|e| ReadError::Corrupt(format!("line 1 is not a task cache header: {e}")))?;
    if h.fleetpoll_task_cache != FORMAT_VERSION {
        return Err(ReadError::Corrupt(format!(
            "format version {} is not {FORMAT_VERSION}",
            h.fleetpoll_task_cache
        )));
    }
    Ok(h)
}

/// Reads a data file (plain or zstd) and hands its header and every record line to
/// `on_line`; an error of `on_line` is reported as corruption of that line. With `skip`
/// above 0 (a plain file whose first `skip` bytes are known, through the snapshot),
/// only the header is read of them and the lines after them are handed on.
pub(crate) fn read_data_file(
    path: &Path,
    compressed: bool,
    skip: u64,
    mut on_line: impl FnMut(&DiskTask<'_>) -> Result<(), String>,
) -> Result<Header, ReadError> {
    let io = |action| move |e| ReadError::Io(TaskCacheError::io(path, action)(e));
    let mut file = File::open(path).map_err(io("open"))?;
    let mut header = None;
    if skip > 0 && !compressed {
        let mut first = Vec::new();
        BufReader::new(&file)
            .take(skip)
            .read_until(b'\n', &mut first)
            .map_err(io("read"))?;
        let Some(text) = first.strip_suffix(b"\n") else {
            return Err(ReadError::Corrupt(format!(
                "the header line does not end within the first {skip} bytes"
            )));
        };
        let text = std::str::from_utf8(text)
            .map_err(|_| ReadError::Corrupt("line 1 is not UTF-8".into()))?;
        header = Some(parse_header(text)?);
        file.seek(SeekFrom::Start(skip)).map_err(io("seek"))?;
    }
    // Line numbers count from the skipped bytes on.
    let at = |number: u64| match skip {
        0 => format!("line {number}"),
        _ => format!("line {number} after byte {skip}"),
    };
    let reader: Box<dyn Read> = if compressed {
        Box::new(
            zstd::stream::read::Decoder::new(file)
                .map_err(|e| ReadError::Corrupt(format!("not a zstd stream: {e}")))?,
        )
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        // Bytes, not a `String`: a line that is not UTF-8 is damage to set aside like
        // any other bad line, not a read error that stops the cache from opening.
        let n = reader.read_until(b'\n', &mut line).map_err(|e| {
            if compressed {
                ReadError::Corrupt(format!("zstd decoding failed after {}: {e}", at(number)))
            } else {
                ReadError::Io(TaskCacheError::io(path, "read")(e))
            }
        })?;
        if n == 0 {
            break;
        }
        number += 1;
        if !line.ends_with(b"\n") {
            return Err(ReadError::Corrupt(format!(
                "{} is cut off (no newline at the end of the file)",
                at(number)
            )));
        }
        let text = std::str::from_utf8(&line[..line.len() - 1]).map_err(|e| {
            ReadError::Corrupt(format!(
                "{} is not UTF-8 (an invalid byte at column {})",
                at(number),
                e.valid_up_to() + 1
            ))
        })?;
        if header.is_none() {
            header = Some(parse_header(text)?);
            continue;
        }
        let task: DiskTask<'_> = serde_json::from_str(text)
            .map_err(|e| ReadError::Corrupt(format!("{}: {e}", at(number))))?;
        on_line(&task).map_err(|e| ReadError::Corrupt(format!("{}: {e}", at(number))))?;
    }
    header.ok_or_else(|| ReadError::Corrupt("the file is empty (no header line)".into()))
}

/// Appends one record line to `out`.
pub(crate) fn write_line(out: &mut impl Write, task: &DiskTask<'_>) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, task)?;
    out.write_all(b"\n")
}

/// The header line of a day's file.
pub(crate) fn header_line(day: i64) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&Header {
        fleetpoll_task_cache: FORMAT_VERSION,
        day: super::day::format_day(day),
    })
    .unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

//! Folding the task journal into the active file ([`TaskCache::apply`]): the pending
//! merges are written to `active.jsonl`, synced, the state file (cutoffs) written last,
//! then the journal emptied.

use std::io::{BufWriter, Write};

use super::cache::{read, TaskCache, Writer};
use super::error::TaskCacheError;
use super::files::{FileLock, LockKind, ACTIVE, IO_LOCK};
use super::format::{header_line, write_line, DiskTask};
use crate::durable::{open_append, sync_dir};

/// The journal is folded into the active file once it is this large.
pub const JOURNAL_APPLY_BYTES: u64 = 5 * 1024 * 1024;

/// Folds the journal into the active file, writes the state file, and empties the
/// journal ([`TaskCache::apply`]); the caller holds the writer.
pub(super) fn apply_locked(cache: &TaskCache, writer: &mut Writer) -> Result<(), TaskCacheError> {
    if writer.pending.is_empty() && writer.journal.is_empty() {
        return Ok(());
    }
    let _io = FileLock::acquire(&cache.dir.join(IO_LOCK), LockKind::Exclusive)?;
    let path = cache.dir.join(ACTIVE);
    let active_day = read(&cache.inner).active_day;
    let file = open_append(&path)?;
    let before = file
        .metadata()
        .map_err(TaskCacheError::io(&path, "stat"))?
        .len();
    let mut pending = std::mem::take(&mut writer.pending);
    pending.sort_unstable();
    pending.dedup();
    let written = (|| {
        let mut out = BufWriter::new(&file);
        if before == 0 {
            // A rotation that failed after renaming the old file left none.
            out.write_all(&header_line(active_day))
                .map_err(TaskCacheError::io(&path, "append"))?;
        }
        {
            let inner = read(&cache.inner);
            for &i in &pending {
                let (remote, record) = inner.index.disk_line(i);
                write_line(&mut out, &DiskTask::from_record(&remote, &record))
                    .map_err(TaskCacheError::io(&path, "append"))?;
            }
        }
        out.flush().map_err(TaskCacheError::io(&path, "append"))?;
        drop(out);
        crate::durable::sync_data(&file).map_err(TaskCacheError::io(&path, "fsync"))
    })();
    let written = written.and_then(|()| {
        if before == 0 {
            Ok(sync_dir(&cache.dir)?)
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        // A cut-off line would make the whole file look corrupt on the next open.
        let _ = file.set_len(before);
        writer.pending = pending;
        return Err(e);
    }
    cache.save_state()?;
    Ok(writer.journal.truncate(0)?)
}

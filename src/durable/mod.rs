//! Durable files, written once for both stores: the checksummed record framing, the
//! synced append-only journal built on it, atomic file replacement, directory syncs
//! and directory locks.
//!
//! # Layout
//!
//! - `checksum`: [`crc32`] and [`crc32_f64s`], the IEEE CRC-32 of frames, of the RRD
//!   headers and of blocks of RRD rows.
//! - `frame`: a record's frame (`len: u32 LE`, `crc32(payload): u32 LE`, `payload`),
//!   [`encode_frame`] and [`parse_frames`] (intact records up to the first bad frame).
//! - `journal`: [`Journal`], an append-only file of frames synced once per append,
//!   [`Replay`], what reading one found, and [`open_append`].
//! - `replace`: [`write_atomic`] and [`replace_with`] (temp file, sync, rename, sync of
//!   the directory), [`sync_dir`], [`create_dir_all_synced`].
//! - `aside`: [`move_aside`] and [`aside_path`], damaged files kept beside the
//!   original under a name never used before.
//! - `fs_sync`: [`SyncFs`], the seam a store's `syncfs(2)` goes through, and
//!   [`WrittenFilesystems`], the file systems written since their last sync.
//! - `seam`: [`Durability`], the seam every sync of the stores goes through
//!   ([`sync_data`], [`sync_all`], [`sync_dir_file`], [`sync_fs`]): the kernel's calls
//!   unless a test installed a power-loss model ([`install_durability`]).
//! - `lock`: [`FileLock`], an advisory shared or exclusive lock on a lock file.
//! - `error`: [`DurableError`], which the stores' own errors convert from.

mod aside;
mod checksum;
mod error;
mod frame;
mod fs_sync;
mod journal;
mod lock;
mod replace;
mod seam;

pub use aside::{aside_path, move_aside};
pub use checksum::{crc32, crc32_f64s};
pub use error::DurableError;
pub use frame::{
    begin_frame, encode_frame, end_frame, framed_len, parse_frames, BadFrame, FrameStart, Frames,
    TooLarge, HEADER_LEN, MAX_RECORD,
};
pub use fs_sync::{sync_filesystems, KernelSyncFs, SyncFs, WrittenFilesystems};
pub use journal::{open_append, Journal, Replay};
pub use lock::{FileLock, LockKind};
pub use replace::{
    create_dir_all_synced, replace_with, sync_dir, sync_parent, temp_path, write_atomic, Mode,
};
pub use seam::{
    install_durability, sync_all, sync_data, sync_dir_file, sync_fs, Durability, Kernel,
};

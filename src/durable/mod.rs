//! Durable files, written once for both stores: the checksummed record framing, the
//! synced append-only journal built on it, atomic file replacement and directory syncs.
//!
//! # Layout
//!
//! - `checksum`: [`crc32`], the IEEE CRC-32 of frames and of the RRD headers.
//! - `frame`: a record's frame (`len: u32 LE`, `crc32(payload): u32 LE`, `payload`),
//!   [`encode_frame`] and [`parse_frames`] (intact records up to the first bad frame).
//! - `journal`: [`Journal`], an append-only file of frames synced once per append,
//!   [`Replay`], what reading one found, and [`open_append`].
//! - `replace`: [`write_atomic`] and [`replace_with`] (temp file, sync, rename, sync of
//!   the directory), [`sync_dir`].
//! - `error`: [`DurableError`], which the stores' own errors convert from.

mod checksum;
mod error;
mod frame;
mod journal;
mod replace;

pub use checksum::crc32;
pub use error::DurableError;
pub use frame::{
    begin_frame, encode_frame, end_frame, framed_len, parse_frames, BadFrame, FrameStart, Frames,
    TooLarge, HEADER_LEN, MAX_RECORD,
};
pub use journal::{open_append, Journal, Replay};
pub use replace::{replace_with, sync_dir, sync_parent, temp_path, write_atomic, Mode};

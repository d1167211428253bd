//! A record's frame: `len: u32 LE`, `crc32(payload): u32 LE`, `payload: len bytes`.
//! Frames follow each other with nothing between them; reading stops at the first one
//! that is cut off, implausibly long or fails its checksum, since everything after a
//! torn write is suspect.

use super::checksum::crc32;

/// Bytes of a frame before its payload.
pub const HEADER_LEN: usize = 8;

/// The largest payload accepted, written or read (a guard against a corrupt length).
pub const MAX_RECORD: u32 = 256 << 20;

/// A payload longer than [`MAX_RECORD`] was refused.
#[derive(Debug, thiserror::Error)]
#[error("journal record too large")]
pub struct TooLarge;

impl From<TooLarge> for std::io::Error {
    fn from(e: TooLarge) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// Where a frame begun with [`begin_frame`] starts in its buffer.
#[derive(Clone, Copy, Debug)]
pub struct FrameStart(usize);

/// Starts a frame at the end of `buf`: its header, filled in by [`end_frame`] once the
/// payload has been appended after it.
pub fn begin_frame(buf: &mut Vec<u8>) -> FrameStart {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    FrameStart(start)
}

/// Ends the frame begun at `start`: everything after its header is the payload. A
/// payload that is too large is removed from `buf` with its header.
pub fn end_frame(buf: &mut Vec<u8>, start: FrameStart) -> Result<(), TooLarge> {
    let payload_at = start.0 + HEADER_LEN;
    let Some(len) = u32::try_from(buf.len() - payload_at)
        .ok()
        .filter(|&n| n <= MAX_RECORD)
    else {
        buf.truncate(start.0);
        return Err(TooLarge);
    };
    let crc = crc32(&buf[payload_at..]);
    buf[start.0..start.0 + 4].copy_from_slice(&len.to_le_bytes());
    buf[start.0 + 4..payload_at].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Bytes the frame of a `payload_len`-byte payload takes.
pub fn framed_len(payload_len: usize) -> u64 {
    (HEADER_LEN + payload_len) as u64
}

/// Appends the frame of `payload` to `buf`.
pub fn encode_frame(buf: &mut Vec<u8>, payload: &[u8]) -> Result<(), TooLarge> {
    let start = begin_frame(buf);
    buf.extend_from_slice(payload);
    end_frame(buf, start)
}

/// Why reading frames stopped before the end of the bytes. The messages are the ones
/// the task cache reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    /// Fewer bytes than a header are left.
    #[error("the record header is cut off ({have} of {HEADER_LEN} bytes)")]
    HeaderCutOff {
        /// Bytes left.
        have: usize,
    },
    /// The length field exceeds [`MAX_RECORD`].
    #[error("the record length {len} is implausible")]
    Implausible {
        /// The length field.
        len: u32,
    },
    /// Fewer bytes than the length field says are left.
    #[error("the record is cut off ({have} of {len} payload bytes)")]
    PayloadCutOff {
        /// Payload bytes left.
        have: usize,
        /// The length field.
        len: u32,
    },
    /// The payload does not match its checksum.
    #[error("the record's CRC32 does not match")]
    Checksum,
}

/// The intact frames at the start of some bytes.
#[derive(Debug)]
pub struct Frames<'a> {
    /// The payloads of the intact frames, in order.
    pub records: Vec<&'a [u8]>,
    /// How many bytes the intact frames span.
    pub intact_len: usize,
    /// Why reading stopped before the end, if it did.
    pub stop: Option<BadFrame>,
}

/// The intact frames at the start of `bytes`, up to the first bad one.
pub fn parse_frames(bytes: &[u8]) -> Frames<'_> {
    let mut records = Vec::new();
    let mut at = 0;
    let stop = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break None;
        }
        let Some((header, rest)) = rest.split_first_chunk::<HEADER_LEN>() else {
            break Some(BadFrame::HeaderCutOff { have: rest.len() });
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            break Some(BadFrame::Implausible { len });
        }
        let Some(payload) = rest.get(..len as usize) else {
            break Some(BadFrame::PayloadCutOff {
                have: rest.len(),
                len,
            });
        };
        if crc32(payload) != crc {
            break Some(BadFrame::Checksum);
        }
        records.push(payload);
        at += HEADER_LEN + payload.len();
    };
    Frames {
        records,
        intact_len: at,
        stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            encode_frame(&mut buf, p).unwrap();
        }
        buf
    }

    #[test]
    fn a_frame_is_its_length_then_its_checksum_then_its_payload() {
        let buf = framed(&[b"123456789"]);
        assert_eq!(&buf[..4], &9u32.to_le_bytes());
        assert_eq!(&buf[4..8], &0xCBF4_3926u32.to_le_bytes());
        assert_eq!(&buf[8..], b"123456789");
    }

    #[test]
    fn intact_frames_parse_back_in_order() {
        let buf = framed(&[b"one", b"", b"three"]);
        let frames = parse_frames(&buf);
        assert_eq!(frames.records, [&b"one"[..], b"", b"three"]);
        assert_eq!(frames.intact_len, buf.len());
        assert_eq!(frames.stop, None);
    }

    #[test]
    fn parsing_stops_at_a_cut_off_header_or_payload() {
        let buf = framed(&[b"kept", b"torn-record"]);
        let kept = HEADER_LEN + 4;
        let frames = parse_frames(&buf[..kept + 3]);
        assert_eq!(frames.records, [b"kept"]);
        assert_eq!(frames.intact_len, kept);
        assert_eq!(frames.stop, Some(BadFrame::HeaderCutOff { have: 3 }));
        let frames = parse_frames(&buf[..buf.len() - 3]);
        assert_eq!(frames.records, [b"kept"]);
        assert_eq!(
            frames.stop,
            Some(BadFrame::PayloadCutOff { have: 8, len: 11 })
        );
        assert!(frames.stop.unwrap().to_string().contains("cut off"));
    }

    #[test]
    fn parsing_stops_at_a_checksum_mismatch_and_at_an_implausible_length() {
        let mut buf = framed(&[b"good", b"flipped", b"lost"]);
        buf[HEADER_LEN + 4 + HEADER_LEN + 2] ^= 1;
        let frames = parse_frames(&buf);
        assert_eq!(frames.records, [b"good"]);
        assert_eq!(frames.stop, Some(BadFrame::Checksum));
        let mut buf = framed(&[b"good", b"long"]);
        buf[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&(MAX_RECORD + 1).to_le_bytes());
        let frames = parse_frames(&buf);
        assert_eq!(frames.records, [b"good"]);
        assert_eq!(
            frames.stop,
            Some(BadFrame::Implausible {
                len: MAX_RECORD + 1
            })
        );
    }
}

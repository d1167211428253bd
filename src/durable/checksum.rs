//! CRC-32 (IEEE 802.3, the zlib/PNG checksum) that detects torn or corrupt frames, RRD
//! headers and blocks of RRD rows, computed by the `crc32fast` crate.

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The CRC-32 of `values` as little-endian `f64`s (as the RRD rings store them): the
/// same as [`crc32`] of their bytes, without copying them.
pub fn crc32_f64s(values: &[f64]) -> u32 {
    // Through a page-sized buffer: fed 8 bytes at a time, the hasher takes its slow
    // path for short inputs (a fifth of the CPU time of creating RRD files went there).
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = [0u8; 4096];
    for chunk in values.chunks(buf.len() / 8) {
        for (out, v) in buf.chunks_exact_mut(8).zip(chunk) {
            out.copy_from_slice(&v.to_le_bytes());
        }
        hasher.update(&buf[..chunk.len() * 8]);
    }
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn the_crc32_of_f64s_is_that_of_their_little_endian_bytes() {
        let mut values = vec![1.5, f64::NAN, -0.0, 1e300];
        values.extend((0..1000).map(f64::from));
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(crc32_f64s(&values), crc32(&bytes));
    }
}

//! The MD5 compression function (RFC 1321, section 3.4), and the padding
//! that finishes a hash from a saved intermediate state.
//!
//! Why this exists: Dovecot's `{CRAM-MD5}` scheme stores the MD5 states
//! *after* one 64-byte block has been absorbed, and we must resume hashing
//! from such a state. The `md-5` crate keeps its compression function
//! private, so there is no supported way to resume from a midstate with it.
//! MD5 is used here only inside HMAC (as CRAM-MD5 requires), where its
//! collision weakness does not apply.

/// The MD5 initial state (RFC 1321, section 3.3).
pub(crate) const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Per-round left-rotation amounts.
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, //
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, //
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, //
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

/// `floor(abs(sin(i + 1)) * 2^32)`, RFC 1321's table T.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Absorbs one 64-byte block into `state`.
pub(crate) fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (word, chunk) in m.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let rotated = a
            .wrapping_add(f)
            .wrapping_add(K[i])
            .wrapping_add(m[g])
            .rotate_left(S[i]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(rotated);
    }
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

/// Finishes an MD5 hash whose first `absorbed` bytes (a multiple of 64)
/// are already folded into `state`, by absorbing `message` and the padding.
/// The length in the padding counts the absorbed bytes too.
pub(crate) fn finish(mut state: [u32; 4], absorbed: u64, message: &[u8]) -> [u8; 16] {
    let mut blocks = message.chunks_exact(64);
    for block in &mut blocks {
        let block: &[u8; 64] = block.try_into().expect("chunks_exact yields 64 bytes");
        compress(&mut state, block);
    }
    let rest = blocks.remainder();
    let bit_len = absorbed.wrapping_add(message.len() as u64).wrapping_mul(8);

    // The tail plus 0x80 plus the 8-byte length fits in one block when the
    // tail is under 56 bytes, otherwise it spills into a second block.
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    tail[tail_len - 8..tail_len].copy_from_slice(&bit_len.to_le_bytes());
    for block in tail[..tail_len].chunks_exact(64) {
        let block: &[u8; 64] = block.try_into().expect("chunks_exact yields 64 bytes");
        compress(&mut state, block);
    }

    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    #[test]
    fn finish_from_iv_matches_md5_crate() {
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let message: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let ours = finish(IV, 0, &message);
            let theirs: [u8; 16] = Md5::digest(&message).into();
            assert_eq!(ours, theirs, "length {len}");
        }
    }

    #[test]
    fn finish_from_midstate_matches_md5_crate() {
        let first: [u8; 64] = [0xab; 64];
        let mut state = IV;
        compress(&mut state, &first);
        for len in [0usize, 16, 55, 56, 200] {
            let message = vec![b'x'; len];
            let mut whole = first.to_vec();
            whole.extend_from_slice(&message);
            let theirs: [u8; 16] = Md5::digest(&whole).into();
            assert_eq!(finish(state, 64, &message), theirs, "length {len}");
        }
    }

    #[test]
    fn rfc1321_test_suite_abc() {
        assert_eq!(
            hex::encode(finish(IV, 0, b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }
}

//! MD5 resumed from a saved intermediate state, through the `md-5` crate's
//! block API.
//!
//! Why this exists: Dovecot's `{CRAM-MD5}` scheme stores the MD5 states
//! *after* one 64-byte block has been absorbed, and we must resume hashing
//! from such a state. `md-5` exposes its compression function
//! ([`compress`]) and lets a hasher be rebuilt from a serialized core
//! state (the four words and the count of blocks absorbed); nothing here
//! reimplements MD5. MD5 is used only inside HMAC (as CRAM-MD5 requires),
//! where its collision weakness does not apply.

use md5::block_api::Md5Core;
use md5::digest::block_api::CoreProxy;
use md5::digest::common::hazmat::{SerializableState, SerializedState};
use md5::digest::Digest;
use zeroize::Zeroize;

/// The MD5 initial state (RFC 1321, section 3.3).
pub(crate) const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Folds one 64-byte block into `state`.
pub(crate) fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    md5::block_api::compress(state, std::slice::from_ref(block));
}

/// Finishes an MD5 hash whose first `blocks` 64-byte blocks are already
/// folded into `state`, by absorbing `message` and the padding (whose
/// length counts the absorbed blocks too).
pub(crate) fn finish(state: [u32; 4], blocks: u64, message: &[u8]) -> [u8; 16] {
    let mut serialized = SerializedState::<Md5Core>::default();
    for (chunk, word) in serialized.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    serialized[16..].copy_from_slice(&blocks.to_le_bytes());
    // Invariant: every 24 bytes are a valid MD5 core state (four words and
    // a block count); `deserialize` has no failing case for MD5.
    let core = Md5Core::deserialize(&serialized).expect("any 24 bytes are an MD5 state");
    serialized.as_mut_slice().zeroize();
    let mut hasher = md5::Md5::compose(core, Default::default());
    hasher.update(message);
    hasher.finalize().into()
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
            assert_eq!(finish(state, 1, &message), theirs, "length {len}");
        }
    }

    #[test]
    fn rfc1321_test_suite() {
        for (message, digest) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ] {
            assert_eq!(hex::encode(finish(IV, 0, message.as_bytes())), digest);
        }
    }
}

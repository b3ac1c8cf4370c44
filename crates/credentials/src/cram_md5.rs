//! CRAM-MD5 keys stored as HMAC-MD5 midstates, compatible with Dovecot's
//! `{CRAM-MD5}` password scheme.
//!
//! CRAM-MD5 (RFC 2195) needs `HMAC-MD5(password, challenge)`. Storing the
//! plain-text password for that would be the worst option; instead we store
//! the two MD5 states HMAC reaches after absorbing `key XOR ipad` and
//! `key XOR opad`. They are password-equivalent for CRAM-MD5 (whoever holds
//! them can answer any challenge) but do not reveal the password itself, and
//! they are what Dovecot stores, so user databases can be shared.
//!
//! Stored layout (Dovecot's): `{CRAM-MD5}` followed by 64 lowercase hex
//! digits encoding 32 bytes: the four state words of the *outer* context as
//! little-endian `u32`s, then the four words of the *inner* context.

mod md5_block;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::{SchemeError, Verification};

/// The HMAC-MD5 block size in bytes.
const BLOCK: usize = 64;
const PREFIX: &str = "{CRAM-MD5}";

/// The HMAC-MD5 inner and outer MD5 states after absorbing (key XOR ipad)
/// and (key XOR opad). `Debug` redacts; memory is wiped on drop; equality
/// is constant time.
#[derive(Clone)]
pub struct CramMd5Keys {
    inner: [u32; 4],
    outer: [u32; 4],
}

impl CramMd5Keys {
    /// Derives the keys from a password. Passwords longer than 64 bytes are
    /// MD5-hashed first, as RFC 2104 prescribes for long HMAC keys.
    pub fn from_password(password: &[u8]) -> Self {
        let mut key = Zeroizing::new([0u8; BLOCK]);
        if password.len() > BLOCK {
            let mut digest: [u8; 16] = Md5::digest(password).into();
            key[..16].copy_from_slice(&digest);
            digest.zeroize();
        } else {
            key[..password.len()].copy_from_slice(password);
        }
        let mut pad = Zeroizing::new([0u8; BLOCK]);
        let mut state_after = |xor: u8| {
            for (p, k) in pad.iter_mut().zip(key.iter()) {
                *p = k ^ xor;
            }
            let mut state = md5_block::IV;
            md5_block::compress(&mut state, &pad);
            state
        };
        let inner = state_after(0x36);
        let outer = state_after(0x5c);
        CramMd5Keys { inner, outer }
    }

    /// Checks a client's CRAM-MD5 digest: recomputes
    /// `HMAC-MD5(password, challenge)` from the stored states and compares it
    /// with `digest` in constant time.
    pub fn verify(&self, challenge: &[u8], digest: &[u8; 16]) -> Verification {
        let expected = Zeroizing::new(self.digest(challenge));
        if bool::from(expected.ct_eq(digest)) {
            Verification::Match
        } else {
            Verification::Mismatch
        }
    }

    /// `HMAC-MD5(password, message)`, resumed from the midstates: what a
    /// client with the password answers to `message` (`auth test` uses it
    /// to play the client).
    pub fn digest(&self, message: &[u8]) -> [u8; 16] {
        // Each state has absorbed one block: the key XOR the pad.
        let inner = Zeroizing::new(md5_block::finish(self.inner, 1, message));
        md5_block::finish(self.outer, 1, &inner[..])
    }

    /// The Dovecot form: `{CRAM-MD5}` and 64 lowercase hex digits.
    pub fn to_stored(&self) -> String {
        let mut bytes = Zeroizing::new([0u8; 32]);
        let words = self.outer.iter().chain(self.inner.iter());
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        format!("{PREFIX}{}", hex::encode(&bytes[..]))
    }

    /// Parses the stored form, with or without the `{CRAM-MD5}` prefix
    /// (the prefix is matched case-insensitively).
    pub fn from_stored(s: &str) -> Result<Self, SchemeError> {
        let hex_part = match s.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => &s[PREFIX.len()..],
            _ if s.starts_with('{') => {
                return Err(SchemeError::Malformed(
                    "CRAM-MD5 keys must start with {CRAM-MD5} or be bare hex".into(),
                ))
            }
            _ => s,
        };
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_part.trim(), &mut bytes[..])
            .map_err(|_| SchemeError::Malformed("CRAM-MD5 keys must be 64 hex digits".into()))?;
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let keys = CramMd5Keys {
            outer: [words[0], words[1], words[2], words[3]],
            inner: [words[4], words[5], words[6], words[7]],
        };
        words.zeroize();
        Ok(keys)
    }
}

impl PartialEq for CramMd5Keys {
    fn eq(&self, other: &Self) -> bool {
        let inner = self.inner.ct_eq(&other.inner);
        let outer = self.outer.ct_eq(&other.outer);
        (inner & outer).into()
    }
}

impl Eq for CramMd5Keys {}

impl Drop for CramMd5Keys {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl std::fmt::Debug for CramMd5Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CramMd5Keys(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    fn reference(password: &[u8], challenge: &[u8]) -> [u8; 16] {
        let mut mac = Hmac::<md5_reference::Md5>::new_from_slice(password)
            .expect("HMAC takes any key length");
        mac.update(challenge);
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn rfc2195_example() {
        let keys = CramMd5Keys::from_password(b"tanstaaftanstaaf");
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        let digest: [u8; 16] = hex::decode("b913a602c7eda7a495b4e6e7334d3890")
            .expect("literal hex")
            .try_into()
            .expect("16 bytes");
        assert_eq!(keys.verify(challenge, &digest), Verification::Match);
    }

    #[test]
    fn matches_hmac_crate_for_many_passwords() {
        let long = vec![b'p'; 200];
        let block = vec![b'q'; 64];
        let block_plus_one = vec![b'r'; 65];
        let passwords: [&[u8]; 6] = [b"", b"a", b"secret", &block, &block_plus_one, &long];
        let challenges: [&[u8]; 3] = [b"", b"<1.2@host>", &[b'c'; 150]];
        for password in passwords {
            let keys = CramMd5Keys::from_password(password);
            for challenge in challenges {
                let expected = reference(password, challenge);
                assert_eq!(keys.digest(challenge), expected, "len {}", password.len());
                assert_eq!(keys.verify(challenge, &expected), Verification::Match);
                let mut wrong = expected;
                wrong[15] ^= 1;
                assert_eq!(keys.verify(challenge, &wrong), Verification::Mismatch);
            }
        }
    }

    #[test]
    fn matches_dovecot_output() {
        // `doveadm pw -s CRAM-MD5 -p password`, as quoted in public test
        // suites (e.g. postfixadmin's).
        assert_eq!(
            CramMd5Keys::from_password(b"password").to_stored(),
            "{CRAM-MD5}9186d855e11eba527a7a52ca82b313e180d62234f0acc9051b527243d41e2740"
        );
    }

    #[test]
    fn stored_form_round_trips() {
        let keys = CramMd5Keys::from_password(b"secret");
        let stored = keys.to_stored();
        assert!(stored.starts_with("{CRAM-MD5}"));
        assert_eq!(stored.len(), PREFIX.len() + 64);
        assert_eq!(
            stored,
            stored.to_ascii_lowercase().replace("{cram-md5}", PREFIX)
        );
        assert_eq!(CramMd5Keys::from_stored(&stored).expect("valid"), keys);
        assert_eq!(
            CramMd5Keys::from_stored(&stored[PREFIX.len()..]).expect("valid"),
            keys
        );
        assert_eq!(
            CramMd5Keys::from_stored(&stored.to_ascii_uppercase()).expect("valid"),
            keys
        );
    }

    #[test]
    fn stored_layout_is_outer_then_inner_little_endian() {
        let keys = CramMd5Keys::from_password(b"secret");
        let stored = keys.to_stored();
        let first_word = u32::from_le_bytes(
            hex::decode(&stored[PREFIX.len()..PREFIX.len() + 8])
                .expect("hex")
                .try_into()
                .expect("4 bytes"),
        );
        assert_eq!(first_word, keys.outer[0]);
        let fifth_word = u32::from_le_bytes(
            hex::decode(&stored[PREFIX.len() + 32..PREFIX.len() + 40])
                .expect("hex")
                .try_into()
                .expect("4 bytes"),
        );
        assert_eq!(fifth_word, keys.inner[0]);
    }

    #[test]
    fn malformed_stored_forms_are_rejected() {
        for bad in [
            "",
            "{CRAM-MD5}",
            "{CRAM-MD5}abcd",
            "{PLAIN}x",
            &"z".repeat(64),
        ] {
            assert!(CramMd5Keys::from_stored(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_redacts() {
        let keys = CramMd5Keys::from_password(b"secret");
        assert_eq!(format!("{keys:?}"), "CramMd5Keys(***)");
    }
}

//! The verified-credential cache: remembers, for a short time, that a
//! password was verified against a stored hash, so the deliberately slow
//! hash (argon2id, bcrypt, SHA-crypt) is paid once per user per TTL rather
//! than once per login.
//!
//! What is cached is a tag, `HMAC-SHA256(process key, user, stored hash,
//! password)`, never the password. The key is random per process, so a tag
//! is worthless outside it. The stored hash is part of the tag, so a
//! `portcullis user passwd` (even from another process) invalidates the
//! entry at the next login: the store is still read on every login, only
//! the hashing is skipped. The cache is keyed by the user alone, never by
//! the client address, so it cannot make one client look authenticated to
//! another; and only successes are cached, so a guesser pays full price for
//! every wrong password.

use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use portcullis_credentials::StoredPassword;
use portcullis_sasl::Secret;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type Tag = [u8; 32];

/// A bounded, expiring map from user name to the tag of the last verified
/// (stored hash, password) pair.
pub(crate) struct VerifiedCache {
    key: [u8; 32],
    entries: Cache<String, Tag>,
}

impl VerifiedCache {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        VerifiedCache {
            key: rand::random(),
            entries: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(capacity)
                .build(),
        }
    }

    /// Whether `password` was verified against exactly `stored` for `user`
    /// within the TTL.
    pub(crate) fn contains(&self, user: &str, stored: &StoredPassword, password: &Secret) -> bool {
        let Some(cached) = self.entries.get(user) else {
            return false;
        };
        bool::from(cached.ct_eq(&self.tag(user, stored, password)))
    }

    /// Records a successful slow verification.
    pub(crate) fn insert(&self, user: &str, stored: &StoredPassword, password: &Secret) {
        self.entries
            .insert(user.to_string(), self.tag(user, stored, password));
    }

    fn tag(&self, user: &str, stored: &StoredPassword, password: &Secret) -> Tag {
        // Invariant: HMAC takes keys of any length.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        for field in [
            user.as_bytes(),
            stored.as_str().as_bytes(),
            password.expose(),
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_only_for_the_same_user_hash_and_password() {
        let cache = VerifiedCache::new(Duration::from_secs(60), 100);
        let stored = StoredPassword::new("$argon2id$a".into());
        let password = Secret::from("pw");
        assert!(!cache.contains("u", &stored, &password));
        cache.insert("u", &stored, &password);
        assert!(cache.contains("u", &stored, &password));
        assert!(!cache.contains("u", &stored, &Secret::from("other")));
        assert!(!cache.contains("v", &stored, &password));
        assert!(!cache.contains("u", &StoredPassword::new("$argon2id$b".into()), &password));
    }
}

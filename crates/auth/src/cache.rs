//! The verified-credential cache: remembers, for a short time, that a
//! password was verified against a stored hash, so the deliberately slow
//! hash (argon2id, bcrypt, SHA-crypt) is paid once per user per TTL rather
//! than once per login.
//!
//! What is cached is a tag, `HMAC-SHA256(process key, user, stored hash,
//! password)`, never the password; the tag is the key of the map. A lookup
//! by tag needs no constant-time compare: nobody without the process key
//! can make a tag, so how long a lookup takes tells nothing. The key is random per process, so a tag
//! is worthless outside it. The stored hash is part of the tag, so a
//! `portcullis user passwd` (even from another process) invalidates the
//! entry once the store's new version is seen (see `records.rs`). The cache is keyed by the user alone, never by
//! the client address, so it cannot make one client look authenticated to
//! another; and only successes are cached, so a guesser pays full price for
//! every wrong password.

use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use portcullis_credentials::StoredPassword;
use portcullis_sasl::Secret;
use sha2::Sha256;

type Tag = [u8; 32];

/// Why a slow verification did not produce a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotVerified {
    /// The password is wrong, or the stored hash unusable: the reason.
    Rejected(crate::RejectReason),
    /// No verification slot was free within the wait.
    Busy(crate::slots::NoSlot),
}

/// A bounded, expiring set of tags of verified (user, stored hash,
/// password) triples. Concurrent logins with the same triple wait for one
/// verification instead of each paying for it (a herd of a user's devices
/// reconnecting at once costs one hash).
pub(crate) struct VerifiedCache {
    /// HMAC-SHA-256 with the random per-process key already absorbed:
    /// each tag clones it instead of hashing the key's two blocks again.
    keyed: Hmac<Sha256>,
    entries: Cache<Tag, ()>,
}

/// Where a verification's answer came from, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Cache,
    Verified,
}

impl VerifiedCache {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        VerifiedCache {
            // Invariant: HMAC takes keys of any length.
            keyed: Hmac::<Sha256>::new_from_slice(&rand::random::<[u8; 32]>())
                .expect("HMAC accepts any key length"),
            entries: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(capacity)
                .build(),
        }
    }

    /// Answers from the cache, or runs `slow` once for every concurrent
    /// caller with the same triple and remembers a match.
    pub(crate) fn verify(
        &self,
        user: &str,
        stored: &StoredPassword,
        password: &Secret,
        slow: impl FnOnce() -> Result<(), NotVerified>,
    ) -> (Result<(), NotVerified>, Source) {
        let mut source = Source::Cache;
        let result = self
            .entries
            .try_get_with(self.tag(user, stored, password), || {
                source = Source::Verified;
                slow()
            });
        (result.map_err(|shared| *shared), source)
    }

    /// Whether this exact triple was verified lately, without verifying.
    pub(crate) fn contains(&self, user: &str, stored: &StoredPassword, password: &Secret) -> bool {
        self.entries.contains_key(&self.tag(user, stored, password))
    }

    fn tag(&self, user: &str, stored: &StoredPassword, password: &Secret) -> Tag {
        let mut mac = self.keyed.clone();
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
    use crate::RejectReason;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn cache() -> VerifiedCache {
        VerifiedCache::new(Duration::from_secs(60), 100)
    }

    #[test]
    fn only_matches_are_remembered_and_only_for_the_same_triple() {
        let cache = cache();
        let stored = StoredPassword::new("$argon2id$a".into());
        let pw = Secret::from("pw");
        let ok = || Ok(());
        let wrong = || Err(NotVerified::Rejected(RejectReason::WrongPassword));
        assert_eq!(cache.verify("u", &stored, &pw, wrong).1, Source::Verified);
        assert_eq!(
            cache.verify("u", &stored, &pw, ok),
            (Ok(()), Source::Verified)
        );
        assert_eq!(
            cache.verify("u", &stored, &pw, wrong),
            (Ok(()), Source::Cache)
        );
        assert_eq!(
            cache.verify("u", &stored, &Secret::from("x"), wrong).1,
            Source::Verified
        );
        assert_eq!(cache.verify("v", &stored, &pw, wrong).1, Source::Verified);
        let rehashed = StoredPassword::new("$argon2id$b".into());
        assert_eq!(cache.verify("u", &rehashed, &pw, wrong).1, Source::Verified);
    }

    #[test]
    fn concurrent_logins_share_one_verification() {
        let cache = Arc::new(cache());
        let runs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, runs) = (cache.clone(), runs.clone());
                std::thread::spawn(move || {
                    let stored = StoredPassword::new("$argon2id$a".into());
                    cache.verify("u", &stored, &Secret::from("pw"), || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok(())
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().0, Ok(()));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

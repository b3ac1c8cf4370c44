//! User records kept between logins, valid until the store changes.
//!
//! With the verified-credential cache, a repeated login skips the slow
//! hash, but it still read the user's record from the store on the
//! blocking pool, twice (once to verify, once to see whether SCRAM secrets
//! are missing). This cache keeps the record, tagged with the store's
//! version (`CredentialStore::version`: SQLite's `data_version`, which
//! changes whenever anyone commits, this process or `portcullis user` in
//! another; except the login history, which the store writes on the
//! connection that reads the version, so that it does not count). A background poll reads the version every
//! [`VERSION_POLL`]; a record tagged with an older version is never
//! returned. So a `user passwd` or `user del` takes effect within one poll,
//! and a login whose record and password are both cached is decided on
//! the async worker without any hop to the blocking pool.
//!
//! A store that cannot tell its version (PostgreSQL, where other writers
//! are not visible) is read at every login, as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use portcullis_credentials::UserRecord;

/// How often the server asks the store for its version.
pub const VERSION_POLL: Duration = Duration::from_millis(100);

/// The version is unknown: nothing is served from the cache.
const UNKNOWN: u64 = u64::MAX;

pub(crate) struct RecordCache {
    version: AtomicU64,
    entries: Cache<String, (u64, Arc<UserRecord>)>,
}

impl RecordCache {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        RecordCache {
            version: AtomicU64::new(UNKNOWN),
            entries: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(capacity)
                .build(),
        }
    }

    /// The store version records are valid for, if known.
    pub(crate) fn version(&self) -> Option<u64> {
        Some(self.version.load(Ordering::Acquire)).filter(|&v| v != UNKNOWN)
    }

    /// Records the store's current version; a change drops every record.
    pub(crate) fn set_version(&self, version: Option<u64>) {
        let version = version.filter(|&v| v != UNKNOWN).unwrap_or(UNKNOWN);
        if self.version.swap(version, Ordering::AcqRel) != version {
            self.entries.invalidate_all();
        }
    }

    /// The record of `user`, if one read at the current version is kept.
    pub(crate) fn get(&self, user: &str) -> Option<Arc<UserRecord>> {
        let current = self.version()?;
        self.entries
            .get(user)
            .filter(|(version, _)| *version == current)
            .map(|(_, record)| record)
    }

    /// Keeps `record`, read from the store when its version was `version`
    /// (taken before the read, so a change during the read makes the
    /// entry stale rather than wrongly fresh).
    pub(crate) fn insert(&self, user: &str, version: u64, record: Arc<UserRecord>) {
        self.entries.insert(user.to_owned(), (version, record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_credentials::ScramKeys;

    fn record(name: &str) -> Arc<UserRecord> {
        Arc::new(UserRecord {
            name: name.into(),
            password: None,
            cram_md5: None,
            scram: ScramKeys::default(),
            may_act_as: Vec::new(),
            state: Default::default(),
        })
    }

    #[test]
    fn records_are_served_only_at_the_version_they_were_read() {
        let cache = RecordCache::new(Duration::from_secs(60), 10);
        cache.insert("alice", 1, record("alice"));
        assert!(cache.get("alice").is_none(), "version unknown");
        cache.set_version(Some(1));
        cache.insert("alice", 1, record("alice"));
        assert_eq!(cache.get("alice").unwrap().name, "alice");
        cache.set_version(Some(2));
        assert!(cache.get("alice").is_none(), "the store changed");
        cache.insert("bob", 1, record("bob"));
        assert!(cache.get("bob").is_none(), "read before the change");
        cache.set_version(None);
        cache.insert("carol", 2, record("carol"));
        assert!(cache.get("carol").is_none(), "version unknown again");
    }
}

//! Replacing a weak stored hash at a successful login. Imported users keep
//! whatever their old server stored (`{PLAIN}`, SHA-crypt, bcrypt): cheap
//! to attack offline if the database leaks, and the slowest or fastest
//! scheme in use decides how long every refusal must take. The moment we
//! hold the right password is the only moment we can fix that without a
//! password reset: hash it with argon2id and swap it in, if the stored
//! value is still the one we verified (a password changed meanwhile wins).
//!
//! Only stores we own can be written: the SQLite store and our own
//! PostgreSQL table. The TOML file and a PostgreSQL `password_query` are
//! read-only to us; their users keep their scheme until the operator
//! re-hashes them.

use portcullis_credentials::{scheme, HashUpgrade, StoredPassword};
use portcullis_sasl::Credentials;

use crate::Authenticator;

impl Authenticator {
    /// After an accepted password login: re-hash a weak stored hash with
    /// argon2id. Costs one argon2id hash, once per user, within a hash slot
    /// (none free: next time). Failures are logged, never the client's.
    pub(crate) fn upgrade_hash(&self, credentials: &Credentials) {
        let Credentials::Password {
            authcid, password, ..
        } = credentials
        else {
            return;
        };
        let Ok(Some(record)) = self.lookup_record(authcid) else {
            return;
        };
        let Some(old) = record
            .password
            .as_ref()
            .filter(|p| scheme::needs_upgrade(p))
        else {
            return;
        };
        let Some(_slot) = self.verifications.try_take() else {
            return;
        };
        let new = StoredPassword::new(scheme::hash_password(password));
        match self.store.upgrade_password_hash(authcid, old, &new) {
            Ok(HashUpgrade::Saved) => {
                tracing::info!(user = %authcid, "replaced a weak password hash with argon2id");
                // Drop the cached record with the old hash now, not at the
                // next poll.
                self.refresh_store_version();
            }
            Ok(HashUpgrade::ReadOnly | HashUpgrade::Superseded) => {}
            Err(error) => {
                tracing::warn!(user = %authcid, %error, "could not re-hash the password");
            }
        }
    }
}

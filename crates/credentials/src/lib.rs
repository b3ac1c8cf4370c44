//! User credentials for portcullis: where users live and how their
//! passwords are checked.
//!
//! What it is: a [`CredentialStore`] trait with two back ends (a SQLite
//! database the `portcullis user` CLI manages, and a read-only TOML file),
//! password verification for the hash formats mail servers commonly store
//! ([`scheme`]), and CRAM-MD5 keys stored as HMAC midstates ([`cram_md5`]).
//!
//! What it does not do: speak SMTP or SASL, decide policy (whether a user
//! may authenticate now, rate limits), or log. It never prints a password,
//! hash or key: those live in types whose `Debug` redacts.
//!
//! Key decisions:
//! - Stores are synchronous and may block (disk, hashing). The server calls
//!   them on its blocking pool, never on the async workers; the traits say
//!   so rather than pretending to be async.
//! - New passwords are always hashed with argon2id; older formats (bcrypt,
//!   SHA-crypt, Dovecot `{SCHEME}` prefixes, even `{PLAIN}`) are verified so
//!   existing user databases can be imported unchanged.
//! - Stores we own (SQLite, our PostgreSQL table) replace an older hash
//!   with argon2id at the next successful login; read-only ones (the TOML
//!   file, a PostgreSQL `password_query`) keep what they have.
//! - Unknown users cost the same time as wrong passwords
//!   ([`scheme::verify_dummy`]), so timing does not reveal who exists.

pub mod activity;
#[cfg(feature = "postgres")]
mod activity_postgres;
pub mod app_password;
pub mod cram_md5;
pub mod file;
#[cfg(feature = "ldap")]
pub mod ldap;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod scheme;
pub mod scram;
pub mod sqlite;

use std::path::PathBuf;

use zeroize::Zeroizing;

pub use app_password::{AppPassword, AppPasswordStore, NewAppPassword};
pub use cram_md5::CramMd5Keys;
pub use portcullis_sasl::Secret;
pub use scheme::SchemeError;
pub use scram::ScramKeys;

/// A user as a store knows it. `Debug` never prints secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The authentication identity (login name).
    pub name: String,
    /// The stored password hash, e.g. `$argon2id$...` or
    /// `{SHA512-CRYPT}$6$...`; `None` if the user cannot log in by password.
    pub password: Option<StoredPassword>,
    /// Precomputed HMAC-MD5 states for CRAM-MD5, if enabled for this user.
    pub cram_md5: Option<CramMd5Keys>,
    /// SCRAM secrets (salt, iterations, StoredKey, ServerKey) per hash.
    pub scram: ScramKeys,
    /// Authorization identities this user may use besides its own name
    /// (`"*"` = any).
    pub may_act_as: Vec<String>,
    /// Whether and how the account may log in.
    pub state: AccountState,
}

/// What an account allows besides its secrets. The default: enabled,
/// account password allowed, password age unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountState {
    /// A disabled account is refused even with the right password
    /// (`525 5.7.13`), and only then: a wrong one gets `535` as any.
    pub disabled: bool,
    /// Only app passwords log in; the account password is refused
    /// (`534 5.7.9`) so a phished one does not open the relay.
    pub require_app_password: bool,
    /// When the password was last set (Unix seconds), if the store knows.
    pub password_set_at: Option<i64>,
}

/// A switch `portcullis user disable|enable|require-app-password` turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountFlag {
    Disabled,
    RequireAppPassword,
}

/// A stored password hash (or, for `{PLAIN}`, the password itself).
/// `Debug` redacts; memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPassword(Zeroizing<String>);

impl StoredPassword {
    pub fn new(s: String) -> Self {
        StoredPassword(Zeroizing::new(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredPassword(***)")
    }
}

/// The outcome of checking a password or digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Match,
    Mismatch,
}

/// Back end for looking users up.
///
/// Cost: implementations may block (disk, network, locks). Callers run them
/// on the blocking pool, never on async workers.
pub trait CredentialStore: Send + Sync + 'static {
    /// The user called `name`, or `None` if there is none. Names are
    /// compared exactly (case-sensitive).
    fn lookup(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Whether any user has CRAM-MD5 keys (the server advertises CRAM-MD5
    /// only then).
    fn has_cram_md5_keys(&self) -> Result<bool, StoreError>;

    /// Whether any user has SCRAM secrets (the server advertises SCRAM only
    /// then: a client picks the strongest mechanism offered and gives up if
    /// it fails).
    fn has_scram_secrets(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// A number that changes whenever any user record may have changed
    /// (in this process or another), or `None` if the store cannot tell.
    /// Records of a store that can tell may be cached between changes;
    /// records of one that cannot are read at every login.
    fn version(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Stores SCRAM secrets derived at a successful password login, for a
    /// user who had none. Read-only stores answer [`ScramSave::ReadOnly`].
    fn save_scram_secrets(&self, name: &str, keys: &ScramKeys) -> Result<ScramSave, StoreError> {
        let _ = (name, keys);
        Ok(ScramSave::ReadOnly)
    }

    /// Replaces `name`'s stored hash `old` (the one just verified) by
    /// `new`, an argon2id hash of the same password, after a successful
    /// login. Only if the stored value is still `old`, so a password
    /// changed meanwhile is never overwritten. Read-only stores answer
    /// [`HashUpgrade::ReadOnly`].
    fn upgrade_password_hash(
        &self,
        name: &str,
        old: &StoredPassword,
        new: &StoredPassword,
    ) -> Result<HashUpgrade, StoreError> {
        let _ = (name, old, new);
        Ok(HashUpgrade::ReadOnly)
    }

    /// Checks `name`'s password in the back end itself, for stores that
    /// never show a hash (an LDAP bind as the user). `None`: verify the
    /// hash [`CredentialStore::lookup`] returned, as usual.
    fn verify_password(
        &self,
        name: &str,
        password: &Secret,
    ) -> Result<Option<Verification>, StoreError> {
        let _ = (name, password);
        Ok(None)
    }

    /// The store's app passwords, if it keeps any (SQLite and our
    /// PostgreSQL table do; read-only stores do not).
    fn app_passwords(&self) -> Option<&dyn AppPasswordStore> {
        None
    }
}

/// What [`CredentialStore::upgrade_password_hash`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashUpgrade {
    Saved,
    /// The store cannot be written (a TOML file, a `password_query`).
    ReadOnly,
    /// The stored hash is no longer the one verified (changed meanwhile,
    /// or the user is gone): nothing changed.
    Superseded,
}

/// What [`CredentialStore::save_scram_secrets`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramSave {
    Saved,
    /// The store cannot be written (a TOML file): nothing changed.
    ReadOnly,
}

/// Stores that the `portcullis user` CLI can change.
///
/// Cost: these hash passwords with argon2id (tens of milliseconds) and write
/// to disk; call them off the async workers.
pub trait UserAdmin: CredentialStore {
    /// Creates the user with an argon2id hash and, when `with_cram_md5`,
    /// CRAM-MD5 keys. `Err(StoreError::UserExists)` if present.
    fn add_user(
        &self,
        name: &str,
        password: &Secret,
        with_cram_md5: bool,
    ) -> Result<(), StoreError>;

    /// Replaces the password. CRAM-MD5 keys are replaced when
    /// `with_cram_md5`, and removed otherwise (old keys would keep the old
    /// password working). `Err(StoreError::UnknownUser)` if absent.
    fn set_password(
        &self,
        name: &str,
        password: &Secret,
        with_cram_md5: bool,
    ) -> Result<(), StoreError>;

    /// `Err(StoreError::UnknownUser)` if absent.
    fn delete_user(&self, name: &str) -> Result<(), StoreError>;

    /// All user names, sorted.
    fn list_users(&self) -> Result<Vec<String>, StoreError>;

    /// Replaces the identities `name` may act as. Identities must be
    /// non-empty and contain no `,` or control characters.
    fn set_may_act_as(&self, name: &str, identities: &[String]) -> Result<(), StoreError>;

    /// Turns an account switch on or off. `Err(StoreError::UnknownUser)`
    /// if absent.
    fn set_flag(&self, name: &str, flag: AccountFlag, on: bool) -> Result<(), StoreError>;

    /// The app passwords of this store, to manage them.
    fn app_password_admin(&self) -> &dyn AppPasswordStore;
}

/// Why a store operation failed. Messages name users and files, never
/// passwords or hashes.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The back end is down or failed (I/O, SQL, lock). Temporary from the
    /// client's point of view: the server answers 454.
    #[error("credential store unavailable: {0}")]
    Unavailable(String),
    /// `add_user` for a name that is already taken.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// An admin operation named a user that does not exist.
    #[error("no such user {0:?}")]
    UnknownUser(String),
    /// An admin operation named an app password the user does not have.
    #[error("no app password {0:?} for this user")]
    UnknownCredential(String),
    /// A stored record, or a name or identity given to an admin operation,
    /// is not acceptable.
    #[error("invalid record for user {user:?}: {reason}")]
    InvalidRecord { user: String, reason: String },
    /// A user file could not be parsed or validated: the operator's config
    /// is at fault.
    #[error("invalid user file {}: {reason}", path.display())]
    InvalidFile { path: PathBuf, reason: String },
}

/// Checks a user name or authorization identity: non-empty, at most 255
/// bytes, no control characters and no `,` (the SQLite store's separator).
pub(crate) fn check_identity(user: &str, identity: &str) -> Result<(), StoreError> {
    let reason = if identity.is_empty() {
        "empty name"
    } else if identity.len() > 255 {
        "name longer than 255 bytes"
    } else if identity.chars().any(|c| c.is_control()) {
        "name contains a control character"
    } else if identity.contains(',') {
        "name contains a comma"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidRecord {
        user: user.to_owned(),
        reason: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_debug_shows_no_secrets() {
        let record = UserRecord {
            name: "alice".into(),
            password: Some(StoredPassword::new("{PLAIN}hunter2".into())),
            cram_md5: Some(CramMd5Keys::from_password(b"hunter2")),
            scram: ScramKeys::from_password(&Secret::from("hunter2")).expect("derives"),
            may_act_as: vec![],
            state: AccountState::default(),
        };
        let debug = format!("{record:?}");
        assert!(debug.contains("alice"));
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains(&record.cram_md5.as_ref().expect("set").to_stored()[10..]));
        let stored = scram::to_stored(
            portcullis_sasl::ScramHash::Sha256,
            record.scram.sha256.as_ref().expect("set"),
        );
        assert!(!debug.contains(&stored[20..30]), "{debug}");
    }

    #[test]
    fn identities_are_checked() {
        assert!(check_identity("a", "bob@example.org").is_ok());
        for bad in ["", "a,b", "a\nb", &"x".repeat(256)] {
            assert!(check_identity("a", bad).is_err(), "{bad:?}");
        }
    }
}

//! A SQLite user database, managed with the `portcullis user` CLI.
//!
//! Schema (one table; `CREATE TABLE IF NOT EXISTS`, so a later version can
//! add columns, e.g. for SCRAM, with `ALTER TABLE`):
//!
//! ```sql
//! CREATE TABLE users (
//!     name       TEXT PRIMARY KEY NOT NULL,  -- authentication identity
//!     password   TEXT,                       -- stored form, see `scheme`
//!     cram_md5   TEXT,                       -- "{CRAM-MD5}" + 64 hex, or NULL
//!     may_act_as TEXT NOT NULL DEFAULT '',   -- comma-separated identities
//!     created_at INTEGER NOT NULL,           -- Unix seconds
//!     scram_sha1   TEXT,                     -- see `scram`: "{SCRAM-SHA-1}i,salt,…"
//!     scram_sha256 TEXT,                     -- "{SCRAM-SHA-256}i,salt,stored,server"
//!     disabled INTEGER NOT NULL DEFAULT 0,   -- 1: refused (525) even with the password
//!     require_app_password INTEGER NOT NULL DEFAULT 0,  -- 1: account password refused (534)
//!     password_set_at INTEGER                -- Unix seconds; NULL: created_at
//! );
//! CREATE TABLE app_passwords (               -- see `app_password`
//!     id TEXT PRIMARY KEY NOT NULL,          -- the token's id
//!     user_name TEXT NOT NULL,               -- users.name
//!     label TEXT NOT NULL,
//!     hash TEXT NOT NULL,                    -- "{HMAC-SHA256}" + hex
//!     created_at INTEGER NOT NULL,
//!     expires_at INTEGER,
//!     last_used_at INTEGER,
//!     last_used_from TEXT,
//!     networks TEXT NOT NULL DEFAULT '',     -- comma-separated CIDR
//!     senders TEXT NOT NULL DEFAULT ''       -- comma-separated addresses, @domains
//! );
//! ```
//!
//! The PostgreSQL store uses the same schema.
//!
//! The SCRAM columns came later: [`SqliteStore::open`] adds them to an
//! older database (`ALTER TABLE ADD COLUMN`), leaving them NULL: those
//! users get SCRAM secrets when they next log in with PLAIN or LOGIN, or
//! when their password is set.
//!
//! A login that verified a password stored in an older scheme (`{PLAIN}`,
//! SHA-crypt, bcrypt) replaces it with an argon2id hash of the same
//! password ([`CredentialStore::upgrade_password_hash`]), so imported
//! users end up on argon2id without a password reset.
//!
//! The connection sits behind a `std::sync::Mutex`: every call blocks, so
//! run it off the async workers. The database uses WAL mode so the CLI can
//! write while the server reads, with a busy timeout instead of immediate
//! `SQLITE_BUSY` failures. Password hashing happens before the lock is taken.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_sasl::Secret;
use rusqlite::{params, Connection, OptionalExtension};

use portcullis_sasl::ScramHash;

use crate::app_password::{
    check_scope, join_networks, split_list, split_networks, AppPassword, AppPasswordStore,
    NewAppPassword,
};
use crate::{
    check_identity, scheme, scram, AccountFlag, AccountState, CramMd5Keys, CredentialStore,
    HashUpgrade, ScramKeys, ScramSave, StoreError, StoredPassword, UserAdmin, UserRecord,
};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    password TEXT,
    cram_md5 TEXT,
    may_act_as TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS app_passwords (
    id TEXT PRIMARY KEY NOT NULL,
    user_name TEXT NOT NULL,
    label TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    last_used_from TEXT,
    networks TEXT NOT NULL DEFAULT '',
    senders TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS app_passwords_user ON app_passwords (user_name)";

/// Columns added after the first schema, with their type.
pub(crate) const ADDED_COLUMNS: [(&str, &str); 5] = [
    ("scram_sha1", "TEXT"),
    ("scram_sha256", "TEXT"),
    ("disabled", "INTEGER NOT NULL DEFAULT 0"),
    ("require_app_password", "INTEGER NOT NULL DEFAULT 0"),
    ("password_set_at", "INTEGER"),
];

/// The columns a look-up reads, in [`UserRow`] order.
pub(crate) const LOOKUP_COLUMNS: &str =
    "password, cram_md5, may_act_as, scram_sha1, scram_sha256, \
     disabled <> 0, require_app_password <> 0, COALESCE(password_set_at, created_at)";

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The same, for the history's writes (see `SqliteStore::open`).
const HISTORY_BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// A [`CredentialStore`] and [`UserAdmin`] over one SQLite file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Asks `PRAGMA data_version`, which changes when another connection
    /// (the lookup one, or the CLI's) commits; and writes the activity
    /// history in batches ([`ActivityStore::record_batch`]): a commit on
    /// this connection does not change the version it reads, so the
    /// history, written several times a second, does not make every
    /// cached user record stale (a server with many users would otherwise
    /// read each login's record from the database again).
    ///
    /// [`ActivityStore::record_batch`]: crate::activity::ActivityStore::record_batch
    pub(crate) version_conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database, creating the file (mode 0600 on Unix) and the
    /// schema if missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path)?;
        let conn = Connection::open(path).map_err(|e| sql_error(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sql_error(path, e))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get::<_, String>(0))
            .map_err(|e| sql_error(path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| sql_error(path, e))?;
        migrate(&conn).map_err(|e| sql_error(path, e))?;
        crate::activity::sqlite_schema(&conn).map_err(|e| sql_error(path, e))?;
        let version_conn = Connection::open(path).map_err(|e| sql_error(path, e))?;
        // Short: while it waits for another process's write lock (to
        // write the history), the version poll waits for it, and a
        // `user passwd` meanwhile would be noticed that much later. A
        // history batch that cannot get the lock in time is dropped (and
        // logged), not retried.
        version_conn
            .busy_timeout(HISTORY_BUSY_TIMEOUT)
            .map_err(|e| sql_error(path, e))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            version_conn: Mutex::new(version_conn),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection
        // half-changed (every write is a single statement), so a poisoned
        // lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Creates the database file readable only by its owner, since it holds
/// password hashes. An existing file is left as it is.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Adds the columns an older database lacks.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let mut statement = conn.prepare("SELECT name FROM pragma_table_info('users')")?;
    let present = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for (column, kind) in ADDED_COLUMNS {
        if !present.iter().any(|p| p == column) {
            conn.execute_batch(&format!("ALTER TABLE users ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

fn sql_error(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

fn db_error(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The stored forms for a new password: the hash, optional CRAM-MD5
/// keys, and SCRAM secrets (SHA-1, SHA-256) unless SASLprep refuses it.
pub(crate) struct NewCredentials {
    pub hash: String,
    pub cram: Option<String>,
    pub scram_sha1: Option<String>,
    pub scram_sha256: Option<String>,
}

pub(crate) fn credentials_for(password: &Secret, with_cram_md5: bool) -> NewCredentials {
    let hash = scheme::hash_password(password);
    let cram = with_cram_md5.then(|| CramMd5Keys::from_password(password.expose()).to_stored());
    let scram = ScramKeys::from_password(password).unwrap_or_default();
    let (scram_sha1, scram_sha256) = scram_columns(&scram);
    NewCredentials {
        hash,
        cram,
        scram_sha1,
        scram_sha256,
    }
}

pub(crate) fn scram_columns(keys: &ScramKeys) -> (Option<String>, Option<String>) {
    (
        keys.sha1
            .as_ref()
            .map(|s| scram::to_stored(ScramHash::Sha1, s)),
        keys.sha256
            .as_ref()
            .map(|s| scram::to_stored(ScramHash::Sha256, s)),
    )
}

/// Parses the SCRAM columns of `name`'s row.
pub(crate) fn scram_keys(
    name: &str,
    sha1: Option<String>,
    sha256: Option<String>,
) -> Result<ScramKeys, StoreError> {
    let parse = |hash, column: Option<String>| {
        column
            .filter(|s| !s.is_empty())
            .map(|s| scram::from_stored(hash, &s))
            .transpose()
            .map_err(|reason| StoreError::InvalidRecord {
                user: name.to_owned(),
                reason: reason.to_string(),
            })
    };
    Ok(ScramKeys {
        sha1: parse(ScramHash::Sha1, sha1)?,
        sha256: parse(ScramHash::Sha256, sha256)?,
    })
}

/// A user's row as SQLite and PostgreSQL return it.
pub(crate) struct UserRow {
    pub password: Option<String>,
    pub cram_md5: Option<String>,
    pub may_act_as: String,
    pub scram_sha1: Option<String>,
    pub scram_sha256: Option<String>,
    pub state: AccountState,
}

impl UserRow {
    pub(crate) fn into_record(self, name: &str) -> Result<UserRecord, StoreError> {
        let scram = scram_keys(name, self.scram_sha1, self.scram_sha256)?;
        let cram_md5 =
            match self.cram_md5.filter(|s| !s.is_empty()) {
                Some(stored) => Some(CramMd5Keys::from_stored(&stored).map_err(|e| {
                    StoreError::InvalidRecord {
                        user: name.to_owned(),
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
        Ok(UserRecord {
            name: name.to_owned(),
            password: self.password.map(StoredPassword::new),
            cram_md5,
            scram,
            may_act_as: self
                .may_act_as
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            state: self.state,
        })
    }
}

impl CredentialStore for SqliteStore {
    fn version(&self) -> Result<Option<u64>, StoreError> {
        let conn = self
            .version_conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let version: i64 = conn
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .map_err(|e| StoreError::Unavailable(format!("user database: {e}")))?;
        Ok(Some(version as u64))
    }

    fn lookup(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let conn = self.conn();
        // Every login runs this: keep it prepared rather than parse it each time.
        let row = conn
            .prepare_cached(&format!(
                "SELECT {LOOKUP_COLUMNS} FROM users WHERE name = ?1"
            ))
            .map_err(db_error)?
            .query_row([name], |row| {
                Ok(UserRow {
                    password: row.get(0)?,
                    cram_md5: row.get(1)?,
                    may_act_as: row.get(2)?,
                    scram_sha1: row.get(3)?,
                    scram_sha256: row.get(4)?,
                    state: AccountState {
                        disabled: row.get(5)?,
                        require_app_password: row.get(6)?,
                        password_set_at: row.get(7)?,
                    },
                })
            })
            .optional()
            .map_err(db_error)?;
        row.map(|row| row.into_record(name)).transpose()
    }

    fn app_passwords(&self) -> Option<&dyn AppPasswordStore> {
        Some(self)
    }

    fn has_cram_md5_keys(&self) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE cram_md5 IS NOT NULL AND cram_md5 <> '')",
                [],
                |row| row.get(0),
            )
            .map_err(db_error)
    }

    fn has_scram_secrets(&self) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE scram_sha256 <> '' OR scram_sha1 <> '')",
                [],
                |row| row.get(0),
            )
            .map_err(db_error)
    }

    fn save_scram_secrets(&self, name: &str, keys: &ScramKeys) -> Result<ScramSave, StoreError> {
        let (sha1, sha256) = scram_columns(keys);
        let updated = self
            .conn()
            .execute(
                "UPDATE users SET scram_sha1 = ?2, scram_sha256 = ?3 WHERE name = ?1",
                params![name, sha1, sha256],
            )
            .map_err(db_error)?;
        expect_one_row(updated, name).map(|()| ScramSave::Saved)
    }

    fn upgrade_password_hash(
        &self,
        name: &str,
        old: &StoredPassword,
        new: &StoredPassword,
    ) -> Result<HashUpgrade, StoreError> {
        let updated = self
            .conn()
            .execute(
                "UPDATE users SET password = ?3 WHERE name = ?1 AND password = ?2",
                params![name, old.as_str(), new.as_str()],
            )
            .map_err(db_error)?;
        Ok(match updated {
            0 => HashUpgrade::Superseded,
            _ => HashUpgrade::Saved,
        })
    }
}

impl UserAdmin for SqliteStore {
    fn add_user(
        &self,
        name: &str,
        password: &Secret,
        with_cram_md5: bool,
    ) -> Result<(), StoreError> {
        check_identity(name, name)?;
        let new = credentials_for(password, with_cram_md5);
        let inserted = self
            .conn()
            .execute(
                "INSERT INTO users (name, password, cram_md5, created_at, scram_sha1, scram_sha256,
                                    password_set_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![
                    name,
                    new.hash,
                    new.cram,
                    now_unix(),
                    new.scram_sha1,
                    new.scram_sha256
                ],
            )
            .map_err(db_error)?;
        match inserted {
            0 => Err(StoreError::UserExists(name.to_owned())),
            _ => Ok(()),
        }
    }

    fn set_password(
        &self,
        name: &str,
        password: &Secret,
        with_cram_md5: bool,
    ) -> Result<(), StoreError> {
        let new = credentials_for(password, with_cram_md5);
        let updated = self
            .conn()
            .execute(
                "UPDATE users SET password = ?2, cram_md5 = ?3, scram_sha1 = ?4, scram_sha256 = ?5,
                                  password_set_at = ?6
                 WHERE name = ?1",
                params![
                    name,
                    new.hash,
                    new.cram,
                    new.scram_sha1,
                    new.scram_sha256,
                    now_unix()
                ],
            )
            .map_err(db_error)?;
        expect_one_row(updated, name)
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM app_passwords WHERE user_name = ?1", [name])
            .map_err(db_error)?;
        let deleted = conn
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(db_error)?;
        expect_one_row(deleted, name)
    }

    fn set_flag(&self, name: &str, flag: AccountFlag, on: bool) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE users SET {} = ?2 WHERE name = ?1",
            flag_column(flag)
        );
        let updated = self
            .conn()
            .execute(&sql, params![name, on])
            .map_err(db_error)?;
        expect_one_row(updated, name)
    }

    fn app_password_admin(&self) -> &dyn AppPasswordStore {
        self
    }

    fn list_users(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT name FROM users ORDER BY name")
            .map_err(db_error)?;
        let names = statement
            .query_map([], |row| row.get(0))
            .map_err(db_error)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(db_error)?;
        Ok(names)
    }

    fn set_may_act_as(&self, name: &str, identities: &[String]) -> Result<(), StoreError> {
        for identity in identities {
            check_identity(name, identity)?;
        }
        let updated = self
            .conn()
            .execute(
                "UPDATE users SET may_act_as = ?2 WHERE name = ?1",
                params![name, identities.join(",")],
            )
            .map_err(db_error)?;
        expect_one_row(updated, name)
    }
}

/// The column behind an account switch (a fixed name, never user input).
pub(crate) fn flag_column(flag: AccountFlag) -> &'static str {
    match flag {
        AccountFlag::Disabled => "disabled",
        AccountFlag::RequireAppPassword => "require_app_password",
    }
}

/// Maps an UPDATE/DELETE row count to `UnknownUser` when nothing matched.
pub(crate) fn expect_one_row(changed: usize, name: &str) -> Result<(), StoreError> {
    match changed {
        0 => Err(StoreError::UnknownUser(name.to_owned())),
        _ => Ok(()),
    }
}

/// The columns of an app password, in [`app_password_row`] order.
pub(crate) const APP_COLUMNS: &str = "id, user_name, label, hash, created_at, expires_at, \
     last_used_at, last_used_from, networks, senders";

fn app_password_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AppPasswordRow> {
    Ok(AppPasswordRow {
        id: row.get(0)?,
        user: row.get(1)?,
        label: row.get(2)?,
        hash: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        last_used_at: row.get(6)?,
        last_used_from: row.get(7)?,
        networks: row.get(8)?,
        senders: row.get(9)?,
    })
}

/// An app password's columns as read, before the networks are parsed.
pub(crate) struct AppPasswordRow {
    pub id: String,
    pub user: String,
    pub label: String,
    pub hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_from: Option<String>,
    pub networks: String,
    pub senders: String,
}

impl AppPasswordRow {
    pub(crate) fn parse(self) -> Result<AppPassword, StoreError> {
        Ok(AppPassword {
            networks: split_networks(&self.id, &self.networks)?,
            senders: split_list(&self.senders).map(str::to_owned).collect(),
            id: self.id,
            user: self.user,
            label: self.label,
            hash: StoredPassword::new(self.hash),
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            last_used_from: self.last_used_from,
        })
    }
}

impl AppPasswordStore for SqliteStore {
    fn app_password(&self, id: &str) -> Result<Option<AppPassword>, StoreError> {
        let row = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {APP_COLUMNS} FROM app_passwords WHERE id = ?1"
            ))
            .map_err(db_error)?
            .query_row([id], app_password_row)
            .optional()
            .map_err(db_error)?;
        row.map(AppPasswordRow::parse).transpose()
    }

    fn app_password_used(&self, id: &str, at: i64, from: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE app_passwords SET last_used_at = ?2, last_used_from = ?3 WHERE id = ?1",
                params![id, at, from],
            )
            .map_err(db_error)?;
        Ok(())
    }

    fn add_app_password(
        &self,
        user: &str,
        id: &str,
        hash: &StoredPassword,
        new: &NewAppPassword,
    ) -> Result<(), StoreError> {
        check_scope(new)?;
        let conn = self.conn();
        let inserted = conn
            .execute(
                "INSERT INTO app_passwords (id, user_name, label, hash, created_at, expires_at,
                                            networks, senders)
                 SELECT ?1, name, ?3, ?4, ?5, ?6, ?7, ?8 FROM users WHERE name = ?2",
                params![
                    id,
                    user,
                    new.label,
                    hash.as_str(),
                    now_unix(),
                    new.expires_at,
                    join_networks(&new.networks),
                    new.senders.join(",")
                ],
            )
            .map_err(db_error)?;
        expect_one_row(inserted, user)
    }

    fn list_app_passwords(&self, user: &str) -> Result<Vec<AppPassword>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(&format!(
                "SELECT {APP_COLUMNS} FROM app_passwords WHERE user_name = ?1
                 ORDER BY created_at, id"
            ))
            .map_err(db_error)?;
        let rows = statement
            .query_map([user], app_password_row)
            .map_err(db_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error)?;
        rows.into_iter().map(AppPasswordRow::parse).collect()
    }

    fn revoke_app_password(&self, user: &str, id: &str) -> Result<(), StoreError> {
        let deleted = self
            .conn()
            .execute(
                "DELETE FROM app_passwords WHERE user_name = ?1 AND id = ?2",
                [user, id],
            )
            .map_err(db_error)?;
        match deleted {
            0 => Err(StoreError::UnknownCredential(id.to_owned())),
            _ => Ok(()),
        }
    }

    fn rotate_app_password(
        &self,
        user: &str,
        id: &str,
        hash: &StoredPassword,
    ) -> Result<(), StoreError> {
        let updated = self
            .conn()
            .execute(
                "UPDATE app_passwords SET hash = ?3 WHERE user_name = ?1 AND id = ?2",
                [user, id, hash.as_str()],
            )
            .map_err(db_error)?;
        match updated {
            0 => Err(StoreError::UnknownCredential(id.to_owned())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verification;

    fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("users.db")).expect("opens");
        (dir, store)
    }

    #[test]
    fn admin_operations() {
        let (_dir, store) = temp_store();
        let pw = Secret::from("pw1");
        store.add_user("bob", &pw, false).expect("added");
        store.add_user("alice", &pw, true).expect("added");
        assert!(matches!(
            store.add_user("bob", &pw, false),
            Err(StoreError::UserExists(n)) if n == "bob"
        ));
        assert_eq!(store.list_users().expect("lists"), ["alice", "bob"]);

        store
            .set_password("alice", &Secret::from("pw2"), false)
            .expect("changed");
        let alice = store.lookup("alice").expect("ok").expect("present");
        assert!(alice.cram_md5.is_none(), "old CRAM-MD5 keys must go");
        let stored = alice.password.expect("has password");
        let check = |p: &str| scheme::verify(&stored, &Secret::from(p)).expect("argon2id");
        assert_eq!(check("pw2"), Verification::Match);
        assert_eq!(check("pw1"), Verification::Mismatch);

        assert!(matches!(
            store.set_password("carol", &pw, false),
            Err(StoreError::UnknownUser(_))
        ));
        store.delete_user("bob").expect("deleted");
        assert!(matches!(
            store.delete_user("bob"),
            Err(StoreError::UnknownUser(_))
        ));
        assert!(store.lookup("bob").expect("ok").is_none());
        assert!(matches!(
            store.set_may_act_as("bob", &[]),
            Err(StoreError::UnknownUser(_))
        ));
        assert!(matches!(
            store.set_may_act_as("alice", &["a,b".into()]),
            Err(StoreError::InvalidRecord { .. })
        ));
        assert!(matches!(
            store.add_user("", &pw, false),
            Err(StoreError::InvalidRecord { .. })
        ));
    }

    #[test]
    fn passwords_come_with_scram_secrets_that_verify() {
        let (_dir, store) = temp_store();
        assert!(!store.has_scram_secrets().expect("ok"));
        store
            .add_user("ann", &Secret::from("pencil"), false)
            .expect("added");
        assert!(store.has_scram_secrets().expect("ok"));
        let ann = store.lookup("ann").expect("ok").expect("present");
        let stored = ann.scram.sha256.expect("SHA-256 secrets");
        let again = portcullis_sasl::ScramSecrets::derive(
            ScramHash::Sha256,
            b"pencil",
            stored.salt.clone(),
            stored.iterations,
        )
        .expect("derives");
        assert_eq!(stored, again);
        assert!(ann.scram.sha1.is_some());
        store
            .conn()
            .execute(
                "UPDATE users SET scram_sha1 = NULL, scram_sha256 = NULL",
                [],
            )
            .expect("ok");
        assert!(!store.has_scram_secrets().expect("ok"));
        let keys = ScramKeys::from_password(&Secret::from("pencil")).expect("derives");
        assert_eq!(
            store.save_scram_secrets("ann", &keys).expect("ok"),
            ScramSave::Saved
        );
        assert_eq!(
            store.lookup("ann").expect("ok").expect("present").scram,
            keys
        );
    }

    #[test]
    fn an_old_database_gains_the_scram_columns() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("users.db");
        let old = Connection::open(&path).expect("opens");
        old.execute_batch(
            "CREATE TABLE users (name TEXT PRIMARY KEY NOT NULL, password TEXT, cram_md5 TEXT,
             may_act_as TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
             INSERT INTO users (name, password, created_at) VALUES ('old', '{PLAIN}x', 0);",
        )
        .expect("old schema");
        drop(old);
        let store = SqliteStore::open(&path).expect("migrates");
        let record = store.lookup("old").expect("ok").expect("present");
        assert!(record.scram.is_empty());
        SqliteStore::open(&path).expect("migrating twice is harmless");
    }

    #[test]
    fn reopening_keeps_users() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("users.db");
        SqliteStore::open(&path)
            .expect("opens")
            .add_user("dave", &Secret::from("x"), false)
            .expect("added");
        let store = SqliteStore::open(&path).expect("reopens");
        assert_eq!(store.list_users().expect("lists"), ["dave"]);
    }

    #[cfg(unix)]
    #[test]
    fn new_database_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("users.db");
        SqliteStore::open(&path).expect("opens");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn corrupt_cram_md5_is_an_invalid_record() {
        let (_dir, store) = temp_store();
        store
            .add_user("eve", &Secret::from("x"), false)
            .expect("added");
        store
            .conn()
            .execute("UPDATE users SET cram_md5 = 'zz' WHERE name = 'eve'", [])
            .expect("updated");
        assert!(matches!(
            store.lookup("eve"),
            Err(StoreError::InvalidRecord { user, .. }) if user == "eve"
        ));
    }
}

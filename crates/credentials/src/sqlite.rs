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
//!     scram_sha256 TEXT                      -- "{SCRAM-SHA-256}i,salt,stored,server"
//! );
//! ```
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

use crate::{
    check_identity, scheme, scram, CramMd5Keys, CredentialStore, HashUpgrade, ScramKeys, ScramSave,
    StoreError, StoredPassword, UserAdmin, UserRecord,
};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    password TEXT,
    cram_md5 TEXT,
    may_act_as TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
)";

/// Columns added after the first schema, with their type.
const ADDED_COLUMNS: [(&str, &str); 2] = [("scram_sha1", "TEXT"), ("scram_sha256", "TEXT")];

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`CredentialStore`] and [`UserAdmin`] over one SQLite file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Only asks `PRAGMA data_version`, which changes when another
    /// connection (the lookup one, or the CLI's) commits.
    version_conn: Mutex<Connection>,
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
        version_conn
            .busy_timeout(BUSY_TIMEOUT)
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
            .prepare_cached(
                "SELECT password, cram_md5, may_act_as, scram_sha1, scram_sha256
                 FROM users WHERE name = ?1",
            )
            .map_err(db_error)?
            .query_row([name], |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    (
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, Option<String>>(4)?,
                    ),
                ))
            })
            .optional()
            .map_err(db_error)?;
        let Some((password, cram_md5, may_act_as, (sha1, sha256))) = row else {
            return Ok(None);
        };
        let scram = scram_keys(name, sha1, sha256)?;
        let cram_md5 =
            match cram_md5.filter(|s| !s.is_empty()) {
                Some(stored) => Some(CramMd5Keys::from_stored(&stored).map_err(|e| {
                    StoreError::InvalidRecord {
                        user: name.to_owned(),
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
        Ok(Some(UserRecord {
            name: name.to_owned(),
            password: password.map(StoredPassword::new),
            cram_md5,
            scram,
            may_act_as: may_act_as
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }))
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
                "INSERT INTO users (name, password, cram_md5, created_at, scram_sha1, scram_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
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
                "UPDATE users SET password = ?2, cram_md5 = ?3, scram_sha1 = ?4, scram_sha256 = ?5
                 WHERE name = ?1",
                params![name, new.hash, new.cram, new.scram_sha1, new.scram_sha256],
            )
            .map_err(db_error)?;
        expect_one_row(updated, name)
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let deleted = self
            .conn()
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(db_error)?;
        expect_one_row(deleted, name)
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

/// Maps an UPDATE/DELETE row count to `UnknownUser` when nothing matched.
pub(crate) fn expect_one_row(changed: usize, name: &str) -> Result<(), StoreError> {
    match changed {
        0 => Err(StoreError::UnknownUser(name.to_owned())),
        _ => Ok(()),
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

//! A PostgreSQL user store, for several portcullis instances sharing one
//! user database.
//!
//! Look-ups run a configurable query, as Dovecot's `password_query` does,
//! so an existing user table can be used as it is: `%u` stands for the
//! login name (sent as a bind parameter, never spliced into the SQL). The
//! query must return a `password` column; `may_act_as` (comma-separated or
//! a text array), `cram_md5`, `scram_sha1` and `scram_sha256` are read when
//! present. Without a query, our own table (the SQLite store's schema) is
//! used and created if missing; `portcullis user` manages only that table.
//!
//! Every call blocks (a network round trip): run it off the async workers.
//! Connections are pooled (up to [`MAX_IDLE`] kept idle); one that fails is
//! dropped and the call reports [`StoreError::Unavailable`], which the
//! server answers with `454 4.7.0`, never `235`.

use std::sync::Mutex;
use std::time::Duration;

use portcullis_sasl::Secret;
use postgres::{Client, NoTls, Row};

use crate::sqlite::{credentials_for, expect_one_row, now_unix, scram_keys};
use crate::{
    check_identity, CramMd5Keys, CredentialStore, HashUpgrade, ScramKeys, ScramSave, StoreError,
    StoredPassword, UserAdmin, UserRecord,
};

/// Idle connections kept for reuse.
pub const MAX_IDLE: usize = 8;
/// How long connecting may take before the store counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Our own table, when no `password_query` is configured.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    password TEXT,
    cram_md5 TEXT,
    may_act_as TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    scram_sha1 TEXT,
    scram_sha256 TEXT
)";

const DEFAULT_QUERY: &str =
    "SELECT password, cram_md5, may_act_as, scram_sha1, scram_sha256 FROM users WHERE name = $1";

/// A [`CredentialStore`] (and, on our own table, [`UserAdmin`]) over
/// PostgreSQL.
pub struct PostgresStore {
    config: postgres::Config,
    /// The look-up, `%u` already turned into `$1`.
    query: String,
    own_table: bool,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: not printed.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

fn db_error(e: postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("postgres: {e}"))
}

impl PostgresStore {
    /// Connects once (to fail early on a wrong URL or password) and, on our
    /// own table, creates it if missing.
    pub fn open(url: &str, password_query: Option<&str>) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("postgres URL: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let store = PostgresStore {
            config,
            query: password_query.unwrap_or(DEFAULT_QUERY).replace("%u", "$1"),
            own_table: password_query.is_none(),
            idle: Mutex::new(Vec::new()),
        };
        if store.own_table {
            store.with_client(|c| c.batch_execute(SCHEMA))?;
        } else {
            store.with_client(|_| Ok(()))?;
        }
        Ok(store)
    }

    /// Runs `f` on a pooled connection; a connection that failed is not
    /// returned to the pool.
    pub(crate) fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut client = match pooled {
            Some(client) if !client.is_closed() => client,
            _ => self.config.connect(NoTls).map_err(db_error)?,
        };
        let result = f(&mut client).map_err(db_error);
        if result.is_ok() && !client.is_closed() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(client);
            }
        }
        result
    }

    pub(crate) fn require_own_table(&self) -> Result<(), StoreError> {
        match self.own_table {
            true => Ok(()),
            false => Err(StoreError::Unavailable(
                "users are managed in your own table when password_query is set".into(),
            )),
        }
    }

    fn exists(&self, column: &str) -> Result<bool, StoreError> {
        if !self.own_table {
            // We cannot tell from a foreign query; offer only PLAIN/LOGIN.
            return Ok(false);
        }
        let sql = format!("SELECT EXISTS (SELECT 1 FROM users WHERE {column})");
        self.with_client(|c| c.query_one(sql.as_str(), &[]).map(|r| r.get(0)))
    }
}

/// A text column by name, if the query returned it.
fn text(row: &Row, column: &str) -> Option<String> {
    row.columns().iter().position(|c| c.name() == column)?;
    row.try_get::<_, Option<String>>(column).ok().flatten()
}

/// `may_act_as` as comma-separated text or as a text array.
fn identities(row: &Row) -> Vec<String> {
    if !row.columns().iter().any(|c| c.name() == "may_act_as") {
        return Vec::new();
    }
    if let Ok(Some(list)) = row.try_get::<_, Option<Vec<String>>>("may_act_as") {
        return list;
    }
    text(row, "may_act_as")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn record(name: &str, row: &Row) -> Result<UserRecord, StoreError> {
    let invalid = |reason: String| StoreError::InvalidRecord {
        user: name.to_owned(),
        reason,
    };
    let cram_md5 = match text(row, "cram_md5").filter(|s| !s.is_empty()) {
        Some(stored) => {
            Some(CramMd5Keys::from_stored(&stored).map_err(|e| invalid(e.to_string()))?)
        }
        None => None,
    };
    let scram: ScramKeys = scram_keys(name, text(row, "scram_sha1"), text(row, "scram_sha256"))?;
    Ok(UserRecord {
        name: name.to_owned(),
        password: text(row, "password").map(StoredPassword::new),
        cram_md5,
        scram,
        may_act_as: identities(row),
    })
}

impl CredentialStore for PostgresStore {
    fn lookup(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = self.with_client(|c| c.query_opt(self.query.as_str(), &[&name]))?;
        row.map(|row| record(name, &row)).transpose()
    }

    fn has_cram_md5_keys(&self) -> Result<bool, StoreError> {
        self.exists("cram_md5 IS NOT NULL AND cram_md5 <> ''")
    }

    fn has_scram_secrets(&self) -> Result<bool, StoreError> {
        self.exists("scram_sha256 <> '' OR scram_sha1 <> ''")
    }

    fn save_scram_secrets(&self, name: &str, keys: &ScramKeys) -> Result<ScramSave, StoreError> {
        if !self.own_table {
            return Ok(ScramSave::ReadOnly);
        }
        let (sha1, sha256) = crate::sqlite::scram_columns(keys);
        let updated = self.with_client(|c| {
            c.execute(
                "UPDATE users SET scram_sha1 = $2, scram_sha256 = $3 WHERE name = $1",
                &[&name, &sha1, &sha256],
            )
        })?;
        expect_one_row(updated as usize, name).map(|()| ScramSave::Saved)
    }

    /// Our own table only: a `password_query` store is someone else's
    /// table, read-only to us.
    fn upgrade_password_hash(
        &self,
        name: &str,
        old: &StoredPassword,
        new: &StoredPassword,
    ) -> Result<HashUpgrade, StoreError> {
        if !self.own_table {
            return Ok(HashUpgrade::ReadOnly);
        }
        let updated = self.with_client(|c| {
            c.execute(
                "UPDATE users SET password = $3 WHERE name = $1 AND password = $2",
                &[&name, &old.as_str(), &new.as_str()],
            )
        })?;
        Ok(match updated {
            0 => HashUpgrade::Superseded,
            _ => HashUpgrade::Saved,
        })
    }
}

impl UserAdmin for PostgresStore {
    fn add_user(
        &self,
        name: &str,
        password: &Secret,
        with_cram_md5: bool,
    ) -> Result<(), StoreError> {
        self.require_own_table()?;
        check_identity(name, name)?;
        let new = credentials_for(password, with_cram_md5);
        let inserted =
            self.with_client(|c| {
                c.execute(
                "INSERT INTO users (name, password, cram_md5, created_at, scram_sha1, scram_sha256)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
                &[&name, &new.hash, &new.cram, &now_unix(), &new.scram_sha1, &new.scram_sha256],
            )
            })?;
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
        self.require_own_table()?;
        let new = credentials_for(password, with_cram_md5);
        let updated =
            self.with_client(|c| {
                c.execute(
                "UPDATE users SET password = $2, cram_md5 = $3, scram_sha1 = $4, scram_sha256 = $5
                 WHERE name = $1",
                &[&name, &new.hash, &new.cram, &new.scram_sha1, &new.scram_sha256],
            )
            })?;
        expect_one_row(updated as usize, name)
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.require_own_table()?;
        let deleted =
            self.with_client(|c| c.execute("DELETE FROM users WHERE name = $1", &[&name]))?;
        expect_one_row(deleted as usize, name)
    }

    fn list_users(&self) -> Result<Vec<String>, StoreError> {
        self.require_own_table()?;
        let rows = self.with_client(|c| c.query("SELECT name FROM users ORDER BY name", &[]))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn set_may_act_as(&self, name: &str, identities: &[String]) -> Result<(), StoreError> {
        self.require_own_table()?;
        for identity in identities {
            check_identity(name, identity)?;
        }
        let joined = identities.join(",");
        let updated = self.with_client(|c| {
            c.execute(
                "UPDATE users SET may_act_as = $2 WHERE name = $1",
                &[&name, &joined],
            )
        })?;
        expect_one_row(updated as usize, name)
    }
}

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
//! A `password_query` may also return `disabled` and `require_app_password`
//! (booleans) and `password_set_at` (Unix seconds).
//!
//! Our own tables are the SQLite store's (see [`crate::sqlite`]), in
//! PostgreSQL types; columns added since are added at start
//! (`ADD COLUMN IF NOT EXISTS`), so an older database is migrated in place.
//! App passwords live in our own table only.
//!
//! Every call blocks (a network round trip): run it off the async workers.
//! Connections are pooled (up to [`MAX_IDLE`] kept idle); one that fails is
//! dropped and the call reports [`StoreError::Unavailable`], which the
//! server answers with `454 4.7.0`, never `235`.

use std::sync::Mutex;
use std::time::Duration;

use portcullis_sasl::Secret;
use postgres::{Client, NoTls, Row};

use crate::app_password::{
    check_scope, join_networks, AppPassword, AppPasswordStore, NewAppPassword,
};
use crate::sqlite::{
    credentials_for, expect_one_row, flag_column, now_unix, scram_keys, AppPasswordRow, APP_COLUMNS,
};
use crate::{
    check_identity, AccountFlag, AccountState, CramMd5Keys, CredentialStore, HashUpgrade,
    ScramKeys, ScramSave, StoreError, StoredPassword, UserAdmin, UserRecord,
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
);
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN IF NOT EXISTS require_app_password BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN IF NOT EXISTS password_set_at BIGINT;
CREATE TABLE IF NOT EXISTS app_passwords (
    id TEXT PRIMARY KEY NOT NULL,
    user_name TEXT NOT NULL,
    label TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    last_used_from TEXT,
    networks TEXT NOT NULL DEFAULT '',
    senders TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS app_passwords_user ON app_passwords (user_name)";

const DEFAULT_QUERY: &str =
    "SELECT password, cram_md5, may_act_as, scram_sha1, scram_sha256, disabled, \
     require_app_password, COALESCE(password_set_at, created_at) AS password_set_at \
     FROM users WHERE name = $1";

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
        state: AccountState {
            disabled: flag(row, "disabled"),
            require_app_password: flag(row, "require_app_password"),
            password_set_at: row
                .columns()
                .iter()
                .any(|c| c.name() == "password_set_at")
                .then(|| {
                    row.try_get::<_, Option<i64>>("password_set_at")
                        .ok()
                        .flatten()
                })
                .flatten(),
        },
    })
}

/// A boolean column by name; false when absent or NULL.
fn flag(row: &Row, column: &str) -> bool {
    row.columns().iter().any(|c| c.name() == column)
        && row
            .try_get::<_, Option<bool>>(column)
            .ok()
            .flatten()
            .unwrap_or(false)
}

fn app_password_row(row: &Row) -> AppPasswordRow {
    AppPasswordRow {
        id: row.get(0),
        user: row.get(1),
        label: row.get(2),
        hash: row.get(3),
        created_at: row.get(4),
        expires_at: row.get(5),
        last_used_at: row.get(6),
        last_used_from: row.get(7),
        networks: row.get(8),
        senders: row.get(9),
    }
}

impl AppPasswordStore for PostgresStore {
    fn app_password(&self, id: &str) -> Result<Option<AppPassword>, StoreError> {
        if !self.own_table {
            return Ok(None);
        }
        let sql = format!("SELECT {APP_COLUMNS} FROM app_passwords WHERE id = $1");
        let row = self.with_client(|c| c.query_opt(sql.as_str(), &[&id]))?;
        row.map(|r| app_password_row(&r).parse()).transpose()
    }

    fn app_password_used(&self, id: &str, at: i64, from: &str) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute(
                "UPDATE app_passwords SET last_used_at = $2, last_used_from = $3 WHERE id = $1",
                &[&id, &at, &from],
            )
        })?;
        Ok(())
    }

    fn add_app_password(
        &self,
        user: &str,
        id: &str,
        hash: &StoredPassword,
        new: &NewAppPassword,
    ) -> Result<(), StoreError> {
        self.require_own_table()?;
        check_scope(new)?;
        let (networks, senders) = (join_networks(&new.networks), new.senders.join(","));
        let inserted = self.with_client(|c| {
            c.execute(
                "INSERT INTO app_passwords (id, user_name, label, hash, created_at, expires_at,
                                            networks, senders)
                 SELECT $1, name, $3, $4, $5, $6, $7, $8 FROM users WHERE name = $2",
                &[
                    &id,
                    &user,
                    &new.label,
                    &hash.as_str(),
                    &now_unix(),
                    &new.expires_at,
                    &networks,
                    &senders,
                ],
            )
        })?;
        expect_one_row(inserted as usize, user)
    }

    fn list_app_passwords(&self, user: &str) -> Result<Vec<AppPassword>, StoreError> {
        self.require_own_table()?;
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM app_passwords WHERE user_name = $1 ORDER BY created_at, id"
        );
        let rows = self.with_client(|c| c.query(sql.as_str(), &[&user]))?;
        rows.iter().map(|r| app_password_row(r).parse()).collect()
    }

    fn revoke_app_password(&self, user: &str, id: &str) -> Result<(), StoreError> {
        self.require_own_table()?;
        let deleted = self.with_client(|c| {
            c.execute(
                "DELETE FROM app_passwords WHERE user_name = $1 AND id = $2",
                &[&user, &id],
            )
        })?;
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
        self.require_own_table()?;
        let updated = self.with_client(|c| {
            c.execute(
                "UPDATE app_passwords SET hash = $3 WHERE user_name = $1 AND id = $2",
                &[&user, &id, &hash.as_str()],
            )
        })?;
        match updated {
            0 => Err(StoreError::UnknownCredential(id.to_owned())),
            _ => Ok(()),
        }
    }
}

impl CredentialStore for PostgresStore {
    fn app_passwords(&self) -> Option<&dyn AppPasswordStore> {
        self.own_table.then_some(self as &dyn AppPasswordStore)
    }

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
                "INSERT INTO users (name, password, cram_md5, created_at, scram_sha1, scram_sha256,
                                    password_set_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $4) ON CONFLICT (name) DO NOTHING",
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
                "UPDATE users SET password = $2, cram_md5 = $3, scram_sha1 = $4, scram_sha256 = $5,
                                  password_set_at = $6
                 WHERE name = $1",
                &[&name, &new.hash, &new.cram, &new.scram_sha1, &new.scram_sha256, &now_unix()],
            )
            })?;
        expect_one_row(updated as usize, name)
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.require_own_table()?;
        let deleted = self.with_client(|c| {
            c.execute("DELETE FROM app_passwords WHERE user_name = $1", &[&name])?;
            c.execute("DELETE FROM users WHERE name = $1", &[&name])
        })?;
        expect_one_row(deleted as usize, name)
    }

    fn set_flag(&self, name: &str, flag: AccountFlag, on: bool) -> Result<(), StoreError> {
        self.require_own_table()?;
        let sql = format!(
            "UPDATE users SET {} = $2 WHERE name = $1",
            flag_column(flag)
        );
        let updated = self.with_client(|c| c.execute(sql.as_str(), &[&name, &on]))?;
        expect_one_row(updated as usize, name)
    }

    fn app_password_admin(&self) -> &dyn AppPasswordStore {
        self
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

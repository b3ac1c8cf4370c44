//! What the server knows of each identity beyond its credentials: the
//! login history (successes and failures, address, mechanism, time), a
//! suspension, and per-user sending limits.
//!
//! Kept in the user store's own database, in tables of their own created
//! by their own migration step ([`sqlite_schema`]), so that the credential
//! tables are untouched:
//!
//! ```sql
//! CREATE TABLE logins (user TEXT NOT NULL, at_ms INTEGER NOT NULL,
//!     address TEXT NOT NULL, mechanism TEXT NOT NULL, result TEXT NOT NULL,
//!     times INTEGER NOT NULL DEFAULT 1, last_ms INTEGER);
//! CREATE TABLE sent_hourly (user, hour, messages, recipients);
//! CREATE TABLE signals (user, at_ms, signal, answer, detail);
//! CREATE TABLE identity_state (user TEXT PRIMARY KEY NOT NULL,
//!     suspended_reason TEXT, suspended_at_ms INTEGER, limits TEXT);
//! ```
//!
//! Every call blocks (SQLite): run it off the async workers. The history
//! is pruned by age ([`ActivityStore::prune_logins`]), so it stays bounded.

use rusqlite::{params, Connection, OptionalExtension};

use crate::sqlite::SqliteStore;
use crate::StoreError;

/// One login attempt, or the repeats of one folded into a row (the
/// server writes the first login of a user, address, mechanism and result
/// in a minute at once, and the rest of that minute's as one row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    pub user: String,
    /// Unix milliseconds (of the first, for folded repeats).
    pub at_ms: u64,
    pub address: String,
    pub mechanism: String,
    /// `accepted`, `rejected`, `suspended`.
    pub result: String,
    /// How many logins the row stands for: 1, or the repeats folded.
    pub times: u64,
    /// Unix milliseconds of the last of them (`at_ms` for one login).
    pub last_ms: u64,
}

impl LoginRecord {
    /// One login.
    pub fn one(
        user: String,
        at_ms: u64,
        address: String,
        mechanism: String,
        result: String,
    ) -> Self {
        LoginRecord {
            user,
            at_ms,
            address,
            mechanism,
            result,
            times: 1,
            last_ms: at_ms,
        }
    }
}

/// A suspension: AUTH answers `535 5.7.8` until it is lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub reason: String,
    pub at_ms: u64,
}

/// A compromise signal that fired, as `user activity` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRecord {
    pub user: String,
    pub at_ms: u64,
    pub signal: String,
    pub answer: String,
    pub detail: String,
}

/// Messages and recipients one identity sent in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentHour {
    /// Unix hour (ms / 3 600 000).
    pub hour: u64,
    pub messages: u64,
    pub recipients: u64,
}

/// One entry of the history, as the server hands them over in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityEvent {
    Login(LoginRecord),
    /// `messages` messages with `recipients` in all, counted in the hour
    /// of `at_ms`.
    Sent {
        user: String,
        at_ms: u64,
        messages: u64,
        recipients: u64,
    },
    Signal(SignalRecord),
}

/// Per-identity state kept beside the credentials.
pub trait ActivityStore: Send + Sync + 'static {
    /// Writes `events` together: one transaction where the store has them
    /// (SQLite, PostgreSQL: either all are written or the error says none
    /// were), so a busy server pays one commit per batch, not one per
    /// login. This default writes them one by one and may stop halfway.
    fn record_batch(&self, events: &[ActivityEvent]) -> Result<(), StoreError> {
        for event in events {
            match event {
                ActivityEvent::Login(login) => self.record_login(login)?,
                ActivityEvent::Sent {
                    user,
                    at_ms,
                    messages,
                    recipients,
                } => self.record_sent_many(user, *at_ms, *messages, *recipients)?,
                ActivityEvent::Signal(signal) => self.record_signal(signal)?,
            }
        }
        Ok(())
    }
    /// Counts one message with `recipients` in the hour of `at_ms`.
    fn record_sent(&self, user: &str, at_ms: u64, recipients: u64) -> Result<(), StoreError>;
    /// Counts `messages` messages with `recipients` in all.
    fn record_sent_many(
        &self,
        user: &str,
        at_ms: u64,
        messages: u64,
        recipients: u64,
    ) -> Result<(), StoreError> {
        for i in 0..messages {
            // All the recipients on the first, none on the rest: the sums.
            self.record_sent(user, at_ms, if i == 0 { recipients } else { 0 })?;
        }
        Ok(())
    }
    /// The last `hours` hours with sending, newest first.
    fn sent(&self, user: &str, hours: usize) -> Result<Vec<SentHour>, StoreError>;
    fn record_signal(&self, signal: &SignalRecord) -> Result<(), StoreError>;
    /// The latest `limit` signals of `user`, newest first.
    fn signals(&self, user: &str, limit: usize) -> Result<Vec<SignalRecord>, StoreError>;
    fn record_login(&self, login: &LoginRecord) -> Result<(), StoreError>;
    /// The latest `limit` logins of `user`, newest first.
    fn logins(&self, user: &str, limit: usize) -> Result<Vec<LoginRecord>, StoreError>;
    /// Drops logins older than `before_ms`; how many.
    fn prune_logins(&self, before_ms: u64) -> Result<usize, StoreError>;
    /// Suspends (`Some`) or resumes (`None`) `user`.
    fn set_suspension(&self, user: &str, suspension: Option<&Suspension>)
        -> Result<(), StoreError>;
    /// Every suspended user.
    fn suspensions(&self) -> Result<Vec<(String, Suspension)>, StoreError>;
    /// Sets (`Some`) or clears the user's sending limits, as
    /// `messages=500/h,1000/d;recipients=2000/d`.
    fn set_limits(&self, user: &str, limits: Option<&str>) -> Result<(), StoreError>;
    fn limits(&self, user: &str) -> Result<Option<String>, StoreError>;
}

/// The activity tables, created if missing (a step of their own, apart
/// from the credential schema and its column additions).
pub(crate) fn sqlite_schema(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS logins (
            user TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            address TEXT NOT NULL,
            mechanism TEXT NOT NULL,
            result TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS logins_user_at ON logins (user, at_ms);
        CREATE INDEX IF NOT EXISTS logins_at ON logins (at_ms);
        CREATE TABLE IF NOT EXISTS sent_hourly (
            user TEXT NOT NULL,
            hour INTEGER NOT NULL,
            messages INTEGER NOT NULL,
            recipients INTEGER NOT NULL,
            PRIMARY KEY (user, hour)
        );
        CREATE TABLE IF NOT EXISTS signals (
            user TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            signal TEXT NOT NULL,
            answer TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS signals_user_at ON signals (user, at_ms);
        CREATE TABLE IF NOT EXISTS identity_state (
            user TEXT PRIMARY KEY NOT NULL,
            suspended_reason TEXT,
            suspended_at_ms INTEGER,
            limits TEXT
        );",
    )?;
    // The columns of folded repeats, added to a table made before them
    // (its rows are single logins: `times` 1, no `last_ms`). In one
    // write transaction, each column checked on its own: a failure leaves
    // neither added, and a second process opening the file at the same
    // moment waits, then finds them there.
    // (Nothing is written, and no lock taken, once both are there.)
    const COLUMNS: [(&str, &str); 2] = [
        ("times", "INTEGER NOT NULL DEFAULT 1"),
        ("last_ms", "INTEGER"),
    ];
    let present = |column: &str| {
        conn.prepare("SELECT 1 FROM pragma_table_info('logins') WHERE name = ?1")?
            .exists([column])
    };
    if present(COLUMNS[0].0)? && present(COLUMNS[1].0)? {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let added = (|| {
        for (column, definition) in COLUMNS {
            if !present(column)? {
                conn.execute_batch(&format!(
                    "ALTER TABLE logins ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        Ok(())
    })();
    match added {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("activity: {e}"))
}

/// Logins deleted in one statement when the history is pruned.
const PRUNE_CHUNK: usize = 5000;

const SQLITE_SENT: &str =
    "INSERT INTO sent_hourly (user, hour, messages, recipients) VALUES (?1, ?2, ?4, ?3)
     ON CONFLICT(user, hour) DO UPDATE SET messages = messages + ?4, recipients = recipients + ?3";
const SQLITE_SIGNAL: &str =
    "INSERT INTO signals (user, at_ms, signal, answer, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
/// [`SQLITE_LOGIN`]'s parameters.
fn login_params(l: &LoginRecord) -> impl rusqlite::Params + '_ {
    (
        &l.user,
        l.at_ms as i64,
        &l.address,
        &l.mechanism,
        &l.result,
        l.times as i64,
        l.last_ms as i64,
    )
}

const SQLITE_LOGIN: &str =
    "INSERT INTO logins (user, at_ms, address, mechanism, result, times, last_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

impl ActivityStore for SqliteStore {
    fn record_batch(&self, events: &[ActivityEvent]) -> Result<(), StoreError> {
        // On the version connection: see `SqliteStore::version_conn`.
        let mut conn = self
            .version_conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = conn.transaction().map_err(unavailable)?;
        for event in events {
            let written = match event {
                ActivityEvent::Login(l) => tx
                    .prepare_cached(SQLITE_LOGIN)
                    .and_then(|mut s| s.execute(login_params(l))),
                ActivityEvent::Sent {
                    user,
                    at_ms,
                    messages,
                    recipients,
                } => tx.prepare_cached(SQLITE_SENT).and_then(|mut s| {
                    s.execute(params![
                        user,
                        (at_ms / 3_600_000) as i64,
                        *recipients as i64,
                        *messages as i64
                    ])
                }),
                ActivityEvent::Signal(g) => tx.prepare_cached(SQLITE_SIGNAL).and_then(|mut s| {
                    s.execute(params![
                        g.user,
                        g.at_ms as i64,
                        g.signal,
                        g.answer,
                        g.detail
                    ])
                }),
            };
            written.map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)
    }

    fn record_sent(&self, user: &str, at_ms: u64, recipients: u64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                SQLITE_SENT,
                params![user, (at_ms / 3_600_000) as i64, recipients as i64, 1i64],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    fn sent(&self, user: &str, hours: usize) -> Result<Vec<SentHour>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT hour, messages, recipients FROM sent_hourly WHERE user = ?1
                 ORDER BY hour DESC LIMIT ?2",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map(params![user, hours as i64], |row| {
                Ok(SentHour {
                    hour: row.get::<_, i64>(0)? as u64,
                    messages: row.get::<_, i64>(1)? as u64,
                    recipients: row.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    fn record_signal(&self, s: &SignalRecord) -> Result<(), StoreError> {
        self.conn()
            .execute(
                SQLITE_SIGNAL,
                params![s.user, s.at_ms as i64, s.signal, s.answer, s.detail],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    fn signals(&self, user: &str, limit: usize) -> Result<Vec<SignalRecord>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT user, at_ms, signal, answer, detail FROM signals WHERE user = ?1
                 ORDER BY at_ms DESC LIMIT ?2",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map(params![user, limit as i64], |row| {
                Ok(SignalRecord {
                    user: row.get(0)?,
                    at_ms: row.get::<_, i64>(1)? as u64,
                    signal: row.get(2)?,
                    answer: row.get(3)?,
                    detail: row.get(4)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    fn record_login(&self, l: &LoginRecord) -> Result<(), StoreError> {
        self.conn()
            .execute(SQLITE_LOGIN, login_params(l))
            .map(|_| ())
            .map_err(unavailable)
    }

    fn logins(&self, user: &str, limit: usize) -> Result<Vec<LoginRecord>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT user, at_ms, address, mechanism, result, times,
                        coalesce(last_ms, at_ms) FROM logins
                 WHERE user = ?1 ORDER BY at_ms DESC, rowid DESC LIMIT ?2",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map(params![user, limit as i64], |row| {
                Ok(LoginRecord {
                    user: row.get(0)?,
                    at_ms: row.get::<_, i64>(1)? as u64,
                    address: row.get(2)?,
                    mechanism: row.get(3)?,
                    result: row.get(4)?,
                    times: row.get::<_, i64>(5)? as u64,
                    last_ms: row.get::<_, i64>(6)? as u64,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    fn prune_logins(&self, before_ms: u64) -> Result<usize, StoreError> {
        // On the history's connection (no change of the version user
        // records are cached under), and in chunks with the lock let go
        // between them: an hour of a busy server's logins is a long
        // delete, and the version poll waits for this connection.
        let version_conn = || {
            self.version_conn
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        let before = before_ms as i64;
        {
            let conn = version_conn();
            conn.execute("DELETE FROM signals WHERE at_ms < ?1", params![before])
                .map_err(unavailable)?;
            conn.execute(
                "DELETE FROM sent_hourly WHERE hour < ?1",
                params![before / 3_600_000],
            )
            .map_err(unavailable)?;
        }
        let mut pruned = 0;
        loop {
            let deleted = version_conn()
                .execute(
                    "DELETE FROM logins WHERE rowid IN
                     (SELECT rowid FROM logins WHERE at_ms < ?1 LIMIT ?2)",
                    params![before, PRUNE_CHUNK as i64],
                )
                .map_err(unavailable)?;
            pruned += deleted;
            if deleted < PRUNE_CHUNK {
                return Ok(pruned);
            }
        }
    }

    fn set_suspension(&self, user: &str, s: Option<&Suspension>) -> Result<(), StoreError> {
        let (reason, at) = match s {
            Some(s) => (Some(s.reason.as_str()), Some(s.at_ms as i64)),
            None => (None, None),
        };
        self.conn()
            .execute(
                "INSERT INTO identity_state (user, suspended_reason, suspended_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(user) DO UPDATE SET suspended_reason = ?2, suspended_at_ms = ?3",
                params![user, reason, at],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    fn suspensions(&self) -> Result<Vec<(String, Suspension)>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT user, suspended_reason, suspended_at_ms FROM identity_state
                 WHERE suspended_reason IS NOT NULL ORDER BY user",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Suspension {
                        reason: row.get(1)?,
                        at_ms: row.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                    },
                ))
            })
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    fn set_limits(&self, user: &str, limits: Option<&str>) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO identity_state (user, limits) VALUES (?1, ?2)
                 ON CONFLICT(user) DO UPDATE SET limits = ?2",
                params![user, limits],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    fn limits(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT limits FROM identity_state WHERE user = ?1",
                params![user],
                |row| row.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(user: &str, at_ms: u64, result: &str) -> LoginRecord {
        LoginRecord::one(
            user.into(),
            at_ms,
            "192.0.2.1".into(),
            "PLAIN".into(),
            result.into(),
        )
    }

    /// A database made by `sql` (an older schema), then opened as a store.
    fn store_over(sql: &str) -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("users.sqlite");
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        let store = SqliteStore::open(&path).expect("opens");
        (dir, path, store)
    }

    #[test]
    fn a_history_from_before_folding_gets_the_new_columns() {
        let (_dir, path, store) = store_over(
            "CREATE TABLE logins (user TEXT NOT NULL, at_ms INTEGER NOT NULL,
                address TEXT NOT NULL, mechanism TEXT NOT NULL, result TEXT NOT NULL);
             INSERT INTO logins VALUES ('alice', 1000, '192.0.2.1', 'PLAIN', 'accepted');",
        );
        let mut folded = login("alice", 2000, "accepted");
        folded.times = 7;
        folded.last_ms = 2500;
        store
            .record_batch(&[ActivityEvent::Login(folded.clone())])
            .unwrap();
        assert_eq!(
            store.logins("alice", 10).unwrap(),
            vec![folded, login("alice", 1000, "accepted")]
        );
        drop(store);
        // Opening again does not add them twice.
        SqliteStore::open(&path).expect("opens again");
    }

    #[test]
    fn a_half_added_pair_of_columns_is_completed() {
        let (_dir, _path, store) = store_over(
            "CREATE TABLE logins (user TEXT NOT NULL, at_ms INTEGER NOT NULL,
                address TEXT NOT NULL, mechanism TEXT NOT NULL, result TEXT NOT NULL,
                times INTEGER NOT NULL DEFAULT 1);",
        );
        store
            .record_login(&login("alice", 1000, "accepted"))
            .unwrap();
        assert_eq!(store.logins("alice", 10).unwrap().len(), 1);
    }

    #[test]
    fn history_suspension_and_limits_round_trip_and_prune() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("users.sqlite")).expect("opens");
        store
            .record_login(&login("alice", 1000, "accepted"))
            .unwrap();
        store
            .record_login(&login("alice", 2000, "rejected"))
            .unwrap();
        store.record_login(&login("bob", 1500, "accepted")).unwrap();
        let history = store.logins("alice", 10).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].result, "rejected", "newest first");
        assert_eq!(store.prune_logins(1600).unwrap(), 2);
        assert_eq!(store.logins("alice", 10).unwrap().len(), 1);

        assert!(store.suspensions().unwrap().is_empty());
        let s = Suspension {
            reason: "leaked".into(),
            at_ms: 5,
        };
        store.set_suspension("alice", Some(&s)).unwrap();
        store.set_limits("alice", Some("messages=500/h")).unwrap();
        assert_eq!(store.suspensions().unwrap(), vec![("alice".into(), s)]);
        assert_eq!(
            store.limits("alice").unwrap().as_deref(),
            Some("messages=500/h")
        );
        store.set_suspension("alice", None).unwrap();
        assert!(store.suspensions().unwrap().is_empty());
        assert_eq!(
            store.limits("alice").unwrap().as_deref(),
            Some("messages=500/h"),
            "kept"
        );
        assert_eq!(store.limits("carol").unwrap(), None);

        store.record_sent("alice", 3_600_000, 2).unwrap();
        store.record_sent("alice", 3_600_001, 3).unwrap();
        store.record_sent("alice", 7_200_000, 1).unwrap();
        let sent = store.sent("alice", 24).unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (sent[1].hour, sent[1].messages, sent[1].recipients),
            (1, 2, 5)
        );
        let signal = SignalRecord {
            user: "alice".into(),
            at_ms: 9,
            signal: "many_networks".into(),
            answer: "defer".into(),
            detail: "4 over 3".into(),
        };
        store.record_signal(&signal).unwrap();
        assert_eq!(store.signals("alice", 5).unwrap(), vec![signal]);
    }

    #[test]
    fn the_history_does_not_change_the_version_user_records_are_cached_under() {
        use crate::{CredentialStore, UserAdmin};
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("users.sqlite")).expect("opens");
        let before = store.version().unwrap();
        store
            .record_batch(&[ActivityEvent::Login(login("alice", 1, "accepted"))])
            .unwrap();
        assert_eq!(store.version().unwrap(), before, "history written");
        assert_eq!(store.logins("alice", 5).unwrap().len(), 1);
        let pw = portcullis_sasl::Secret::from("pw");
        store.add_user("bob", &pw, false).unwrap();
        assert_ne!(store.version().unwrap(), before, "a user added");
    }

    #[test]
    fn a_batch_is_written_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("users.sqlite")).expect("opens");
        let mut batch: Vec<ActivityEvent> = (0..500)
            .map(|i| ActivityEvent::Login(login("alice", i, "accepted")))
            .collect();
        batch.push(ActivityEvent::Sent {
            user: "alice".into(),
            at_ms: 3_600_000,
            messages: 1,
            recipients: 2,
        });
        batch.push(ActivityEvent::Sent {
            user: "alice".into(),
            at_ms: 3_600_001,
            messages: 1,
            recipients: 3,
        });
        batch.push(ActivityEvent::Signal(SignalRecord {
            user: "alice".into(),
            at_ms: 9,
            signal: "many_networks".into(),
            answer: "log".into(),
            detail: String::new(),
        }));
        store.record_batch(&batch).unwrap();
        assert_eq!(store.logins("alice", 1000).unwrap().len(), 500);
        let sent = store.sent("alice", 24).unwrap();
        assert_eq!((sent[0].messages, sent[0].recipients), (2, 5));
        assert_eq!(store.signals("alice", 5).unwrap().len(), 1);
    }
}

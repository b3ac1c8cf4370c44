//! [`ActivityStore`] on PostgreSQL (our own `users` table only): the same
//! tables as SQLite's, created by [`PostgresStore::open_activity`], apart
//! from the credential schema.

use postgres::Row;

use crate::activity::{
    ActivityEvent, ActivityStore, LoginRecord, SentHour, SignalRecord, Suspension,
};
use crate::postgres::PostgresStore;
use crate::StoreError;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS logins (
        \"user\" TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        address TEXT NOT NULL,
        mechanism TEXT NOT NULL,
        result TEXT NOT NULL
    );
    ALTER TABLE logins ADD COLUMN IF NOT EXISTS times BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE logins ADD COLUMN IF NOT EXISTS last_ms BIGINT;
    CREATE INDEX IF NOT EXISTS logins_user_at ON logins (\"user\", at_ms);
    CREATE INDEX IF NOT EXISTS logins_at ON logins (at_ms);
    CREATE TABLE IF NOT EXISTS sent_hourly (
        \"user\" TEXT NOT NULL,
        hour BIGINT NOT NULL,
        messages BIGINT NOT NULL,
        recipients BIGINT NOT NULL,
        PRIMARY KEY (\"user\", hour)
    );
    CREATE TABLE IF NOT EXISTS signals (
        \"user\" TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        signal TEXT NOT NULL,
        answer TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS signals_user_at ON signals (\"user\", at_ms);
    CREATE TABLE IF NOT EXISTS identity_state (
        \"user\" TEXT PRIMARY KEY NOT NULL,
        suspended_reason TEXT,
        suspended_at_ms BIGINT,
        limits TEXT
    )";

impl PostgresStore {
    /// Creates the activity tables if missing. Refused on a store that
    /// reads the operator's own table (`password_query`): that database is
    /// not ours to add tables to.
    pub fn open_activity(&self) -> Result<(), StoreError> {
        self.require_own_table()?;
        self.with_client(|c| c.batch_execute(SCHEMA))
    }
}

fn login(row: &Row) -> LoginRecord {
    LoginRecord {
        user: row.get(0),
        at_ms: row.get::<_, i64>(1) as u64,
        address: row.get(2),
        mechanism: row.get(3),
        result: row.get(4),
        times: row.get::<_, i64>(5) as u64,
        last_ms: row.get::<_, i64>(6) as u64,
    }
}

impl ActivityStore for PostgresStore {
    fn record_batch(&self, events: &[ActivityEvent]) -> Result<(), StoreError> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            for event in events {
                match event {
                    ActivityEvent::Login(l) => tx.execute(
                        "INSERT INTO logins (\"user\", at_ms, address, mechanism, result, times, last_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[&l.user, &(l.at_ms as i64), &l.address, &l.mechanism, &l.result, &(l.times as i64), &(l.last_ms as i64)],
                    )?,
                    ActivityEvent::Sent {
                        user,
                        at_ms,
                        messages,
                        recipients,
                    } => tx.execute(
                        "INSERT INTO sent_hourly (\"user\", hour, messages, recipients) VALUES ($1, $2, $4, $3)
                         ON CONFLICT (\"user\", hour) DO UPDATE SET messages = sent_hourly.messages + $4,
                         recipients = sent_hourly.recipients + $3",
                        &[user, &((at_ms / 3_600_000) as i64), &(*recipients as i64), &(*messages as i64)],
                    )?,
                    ActivityEvent::Signal(s) => tx.execute(
                        "INSERT INTO signals (\"user\", at_ms, signal, answer, detail) VALUES ($1, $2, $3, $4, $5)",
                        &[&s.user, &(s.at_ms as i64), &s.signal, &s.answer, &s.detail],
                    )?,
                };
            }
            tx.commit()
        })
    }

    fn record_sent(&self, user: &str, at_ms: u64, recipients: u64) -> Result<(), StoreError> {
        let hour = (at_ms / 3_600_000) as i64;
        self.with_client(|c| {
            c.execute(
                "INSERT INTO sent_hourly (\"user\", hour, messages, recipients) VALUES ($1, $2, 1, $3)
                 ON CONFLICT (\"user\", hour) DO UPDATE SET messages = sent_hourly.messages + 1,
                 recipients = sent_hourly.recipients + $3",
                &[&user, &hour, &(recipients as i64)],
            )
        })
        .map(|_| ())
    }

    fn sent(&self, user: &str, hours: usize) -> Result<Vec<SentHour>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(
                "SELECT hour, messages, recipients FROM sent_hourly WHERE \"user\" = $1
                 ORDER BY hour DESC LIMIT $2",
                &[&user, &(hours as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| SentHour {
                hour: r.get::<_, i64>(0) as u64,
                messages: r.get::<_, i64>(1) as u64,
                recipients: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    fn record_signal(&self, s: &SignalRecord) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO signals (\"user\", at_ms, signal, answer, detail) VALUES ($1, $2, $3, $4, $5)",
                &[&s.user, &(s.at_ms as i64), &s.signal, &s.answer, &s.detail],
            )
        })
        .map(|_| ())
    }

    fn signals(&self, user: &str, limit: usize) -> Result<Vec<SignalRecord>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(
                "SELECT \"user\", at_ms, signal, answer, detail FROM signals WHERE \"user\" = $1
                 ORDER BY at_ms DESC LIMIT $2",
                &[&user, &(limit as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| SignalRecord {
                user: r.get(0),
                at_ms: r.get::<_, i64>(1) as u64,
                signal: r.get(2),
                answer: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }

    fn record_login(&self, l: &LoginRecord) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO logins (\"user\", at_ms, address, mechanism, result, times, last_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&l.user, &(l.at_ms as i64), &l.address, &l.mechanism, &l.result, &(l.times as i64), &(l.last_ms as i64)],
            )
        })
        .map(|_| ())
    }

    fn logins(&self, user: &str, limit: usize) -> Result<Vec<LoginRecord>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(
                "SELECT \"user\", at_ms, address, mechanism, result, times, coalesce(last_ms, at_ms) FROM logins
                 WHERE \"user\" = $1 ORDER BY at_ms DESC LIMIT $2",
                &[&user, &(limit as i64)],
            )
        })?;
        Ok(rows.iter().map(login).collect())
    }

    fn prune_logins(&self, before_ms: u64) -> Result<usize, StoreError> {
        let before = before_ms as i64;
        self.with_client(|c| {
            c.execute("DELETE FROM signals WHERE at_ms < $1", &[&before])?;
            c.execute(
                "DELETE FROM sent_hourly WHERE hour < $1",
                &[&(before / 3_600_000)],
            )?;
            c.execute("DELETE FROM logins WHERE at_ms < $1", &[&before])
        })
        .map(|n| n as usize)
    }

    fn set_suspension(&self, user: &str, s: Option<&Suspension>) -> Result<(), StoreError> {
        let reason = s.map(|s| s.reason.clone());
        let at = s.map(|s| s.at_ms as i64);
        self.with_client(|c| {
            c.execute(
                "INSERT INTO identity_state (\"user\", suspended_reason, suspended_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (\"user\") DO UPDATE SET suspended_reason = $2, suspended_at_ms = $3",
                &[&user, &reason, &at],
            )
        })
        .map(|_| ())
    }

    fn suspensions(&self) -> Result<Vec<(String, Suspension)>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(
                "SELECT \"user\", suspended_reason, suspended_at_ms FROM identity_state
                 WHERE suspended_reason IS NOT NULL ORDER BY \"user\"",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                let at: Option<i64> = r.get(2);
                (
                    r.get(0),
                    Suspension {
                        reason: r.get(1),
                        at_ms: at.unwrap_or(0) as u64,
                    },
                )
            })
            .collect())
    }

    fn set_limits(&self, user: &str, limits: Option<&str>) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO identity_state (\"user\", limits) VALUES ($1, $2)
                 ON CONFLICT (\"user\") DO UPDATE SET limits = $2",
                &[&user, &limits],
            )
        })
        .map(|_| ())
    }

    fn limits(&self, user: &str) -> Result<Option<String>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(
                "SELECT limits FROM identity_state WHERE \"user\" = $1",
                &[&user],
            )
        })?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<String>>(0)))
    }
}

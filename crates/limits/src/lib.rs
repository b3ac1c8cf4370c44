//! Brute-force defence: how many failures each client address, network and
//! user has had lately, and what follows from that — a delay before the
//! failure reply, a cool-down for a user under attack, a ban for an address.
//!
//! The decisions are pure: the clock goes in as a [`Timestamp`] and the
//! counts come from a [`LimitsBackend`], so the whole policy runs on
//! virtual time in tests. The backend is the only part that may leave the
//! process: [`MemoryBackend`] keeps everything in this process; a shared
//! backend (Redis) lets several instances behind one load balancer see the
//! same counts and bans.
//!
//! What this crate does not do: sleep, close connections or write replies.
//! The server asks it ([`Limiter::admit`], [`Limiter::admit_attempt`],
//! [`Limiter::auth_failed`], [`Limiter::auth_succeeded`]) and carries out
//! the verdict.
//!
//! Two decisions worth knowing:
//! - Only failures are delayed. A correct password is answered at once,
//!   however many failures others caused against the same user.
//! - Passwords are never stored. To recognise a client that repeats the
//!   same wrong password (a phone with a stale password), we keep an HMAC
//!   of it under a key that lives only in this process.

mod bans;
mod config;
mod delay;
mod limiter;
mod memory;
mod net;
#[cfg(feature = "redis")]
mod redis;
pub mod sending;
pub mod signals;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use bans::{Ban, BanFile};
pub use config::LimitsConfig;
pub use delay::failure_delay;
pub use limiter::{
    Admission, Attempt, AttemptSlot, AuthGate, ConnectionSlot, FailureVerdict, Limiter,
};
pub use memory::MemoryBackend;
pub use net::{ip_text, network_of, push_ip, CidrError, IpNet};
#[cfg(feature = "redis")]
pub use redis::RedisBackend;

/// Wall-clock time in milliseconds since the Unix epoch. Wall clock, not
/// monotonic, because bans and counts are shared with other processes
/// (the CLI, other instances) through files and Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current time; only drivers call this, never the decisions.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    pub fn millis(self) -> u64 {
        self.0
    }

    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.as_millis() as u64))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        Timestamp(
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        )
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }
}

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// The shared backend (e.g. Redis) did not answer. Callers fail open
    /// for counting: they go on with local counts.
    #[error("limits backend unavailable: {0}")]
    Unavailable(String),
    /// The ban file could not be read or written.
    #[error("ban file {path}: {source}")]
    BanFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The ban file is not valid JSON.
    #[error("ban file {path}: {message}")]
    BanFileSyntax {
        path: std::path::PathBuf,
        message: String,
    },
}

/// A boxed future, so that [`LimitsBackend`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One sliding-window counter: a key and the window it counts over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub window: Duration,
}

/// Where counts, marks and bans live. Every method takes `now` so that a
/// memory backend runs on virtual time.
///
/// Cost: [`MemoryBackend`] does no I/O (a mutex, held briefly); a shared
/// backend makes one network round trip per call. Calls never block the
/// thread: they return futures.
pub trait LimitsBackend: Send + Sync + 'static {
    /// Counts one event under each counter and returns each count over its
    /// window, this event included.
    fn hit<'a>(
        &'a self,
        counters: &'a [Counter],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<u64>, LimitsError>>;
    /// Checks every quota and, only if none would be passed, adds each
    /// quota's amount, atomically (one round trip for a shared backend).
    fn consume<'a>(
        &'a self,
        quotas: &'a [sending::Quota],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<sending::Consumed, LimitsError>>;
    /// Each counter's count over its window, without counting.
    fn peek<'a>(
        &'a self,
        counters: &'a [Counter],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<u64>, LimitsError>>;
    /// Sets a flag that reads true until `until`.
    fn mark<'a>(
        &'a self,
        key: &'a str,
        until: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), LimitsError>>;
    /// Whether a flag set by [`LimitsBackend::mark`] is still up.
    fn marked<'a>(
        &'a self,
        key: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, LimitsError>>;
    /// Records a ban, replacing any earlier one on the same address.
    fn ban(&self, ban: Ban) -> BoxFuture<'_, Result<(), LimitsError>>;
    /// Lifts the ban on `ip`; whether there was one.
    fn unban(&self, ip: std::net::IpAddr) -> BoxFuture<'_, Result<bool, LimitsError>>;
    /// The ban on `ip`, if one is in force at `now`.
    fn banned(
        &self,
        ip: std::net::IpAddr,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<Ban>, LimitsError>>;
    /// Every ban in force at `now`.
    fn bans(&self, now: Timestamp) -> BoxFuture<'_, Result<Vec<Ban>, LimitsError>>;
}

#[cfg(test)]
mod tests;

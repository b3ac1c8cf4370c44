//! Counts, marks and bans in this process only: the default backend, and
//! the fallback when a shared one is down.
//!
//! Windows are approximately sliding, as in Cloudflare's rate limiter: a
//! count for the current fixed bucket and one for the previous bucket,
//! weighted by how much of the previous bucket still lies inside the
//! window. Two integers per key, and the same arithmetic works in Redis
//! (one key per bucket), so both backends count alike.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::sending::{Consumed, Quota};
use crate::{Ban, BoxFuture, Counter, LimitsBackend, LimitsError, Timestamp};

/// Prune expired entries every this many operations.
const PRUNE_EVERY: u64 = 4096;

/// One key's two buckets.
#[derive(Debug, Clone, Copy, Default)]
struct Buckets {
    bucket: u64,
    current: u64,
    previous: u64,
}

/// The sliding estimate from the current and previous bucket counts.
pub(crate) fn estimate(current: u64, previous: u64, window: Duration, now: Timestamp) -> u64 {
    let w = (window.as_millis() as u64).max(1);
    let remaining = w - now.millis() % w;
    // Rounded up: a failure still partly inside the window still counts.
    current + (previous * remaining).div_ceil(w)
}

/// The bucket `now` falls in.
pub(crate) fn bucket_of(window: Duration, now: Timestamp) -> u64 {
    now.millis() / (window.as_millis() as u64).max(1)
}

#[derive(Debug, Default)]
struct State {
    counters: HashMap<String, (Duration, Buckets)>,
    marks: HashMap<String, Timestamp>,
    bans: HashMap<IpAddr, Ban>,
    operations: u64,
}

impl State {
    fn roll(&mut self, counter: &Counter, now: Timestamp) -> &mut Buckets {
        let bucket = bucket_of(counter.window, now);
        let entry = self
            .counters
            .entry(counter.key.clone())
            .or_insert((counter.window, Buckets::default()));
        let b = &mut entry.1;
        if b.bucket != bucket {
            b.previous = if b.bucket + 1 == bucket { b.current } else { 0 };
            b.current = 0;
            b.bucket = bucket;
        }
        b
    }

    fn prune(&mut self, now: Timestamp) {
        self.operations += 1;
        if self.operations % PRUNE_EVERY != 0 {
            return;
        }
        self.counters
            .retain(|_, (window, b)| b.bucket + 1 >= bucket_of(*window, now));
        self.marks.retain(|_, until| *until > now);
        self.bans.retain(|_, ban| ban.in_force(now));
    }
}

/// Everything in a mutex in this process. No I/O; never held across an
/// await.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind; they
        // are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces every ban with `bans` (the server's ban-file reload).
    pub fn replace_bans(&self, bans: Vec<Ban>) {
        let mut state = self.lock();
        state.bans = bans.into_iter().map(|b| (b.ip, b)).collect();
    }

    pub(crate) fn hit_now(&self, counters: &[Counter], now: Timestamp) -> Vec<u64> {
        let mut state = self.lock();
        state.prune(now);
        counters
            .iter()
            .map(|c| {
                let b = state.roll(c, now);
                b.current += 1;
                estimate(b.current, b.previous, c.window, now)
            })
            .collect()
    }

    pub(crate) fn consume_now(&self, quotas: &[Quota], now: Timestamp) -> Consumed {
        let mut state = self.lock();
        state.prune(now);
        let buckets: Vec<(u64, u64)> = quotas
            .iter()
            .map(|q| {
                let b = *state.roll(
                    &Counter {
                        key: q.key.clone(),
                        window: q.window,
                    },
                    now,
                );
                (b.current, b.previous)
            })
            .collect();
        let refused = crate::sending::decide(quotas, &buckets, now);
        let counts = quotas
            .iter()
            .map(|q| {
                let b = state.roll(
                    &Counter {
                        key: q.key.clone(),
                        window: q.window,
                    },
                    now,
                );
                if refused.is_none() {
                    b.current = b.current.saturating_add(q.amount);
                }
                estimate(b.current, b.previous, q.window, now)
            })
            .collect();
        Consumed { refused, counts }
    }

    pub(crate) fn peek_now(&self, counters: &[Counter], now: Timestamp) -> Vec<u64> {
        let mut state = self.lock();
        counters
            .iter()
            .map(|c| {
                let b = *state.roll(c, now);
                estimate(b.current, b.previous, c.window, now)
            })
            .collect()
    }

    pub(crate) fn mark_now(&self, key: &str, until: Timestamp) {
        self.lock().marks.insert(key.to_string(), until);
    }

    pub(crate) fn marked_now(&self, key: &str, now: Timestamp) -> bool {
        self.lock().marks.get(key).is_some_and(|until| *until > now)
    }

    pub(crate) fn ban_now(&self, ban: Ban) {
        self.lock().bans.insert(ban.ip, ban);
    }

    pub(crate) fn unban_now(&self, ip: IpAddr) -> bool {
        self.lock().bans.remove(&ip).is_some()
    }

    pub(crate) fn banned_now(&self, ip: IpAddr, now: Timestamp) -> Option<Ban> {
        self.lock()
            .bans
            .get(&ip)
            .filter(|b| b.in_force(now))
            .cloned()
    }

    pub(crate) fn bans_now(&self, now: Timestamp) -> Vec<Ban> {
        let mut bans: Vec<Ban> = self
            .lock()
            .bans
            .values()
            .filter(|b| b.in_force(now))
            .cloned()
            .collect();
        bans.sort_by_key(|b| b.created_ms);
        bans
    }
}

impl LimitsBackend for MemoryBackend {
    fn hit<'a>(
        &'a self,
        counters: &'a [Counter],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<u64>, LimitsError>> {
        let counts = self.hit_now(counters, now);
        Box::pin(async move { Ok(counts) })
    }

    fn consume<'a>(
        &'a self,
        quotas: &'a [Quota],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Consumed, LimitsError>> {
        let consumed = self.consume_now(quotas, now);
        Box::pin(async move { Ok(consumed) })
    }

    fn peek<'a>(
        &'a self,
        counters: &'a [Counter],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<u64>, LimitsError>> {
        let counts = self.peek_now(counters, now);
        Box::pin(async move { Ok(counts) })
    }

    fn mark<'a>(
        &'a self,
        key: &'a str,
        until: Timestamp,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<(), LimitsError>> {
        self.mark_now(key, until);
        Box::pin(async { Ok(()) })
    }

    fn marked<'a>(
        &'a self,
        key: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, LimitsError>> {
        let marked = self.marked_now(key, now);
        Box::pin(async move { Ok(marked) })
    }

    fn ban(&self, ban: Ban) -> BoxFuture<'_, Result<(), LimitsError>> {
        self.ban_now(ban);
        Box::pin(async { Ok(()) })
    }

    fn unban(&self, ip: IpAddr) -> BoxFuture<'_, Result<bool, LimitsError>> {
        let removed = self.unban_now(ip);
        Box::pin(async move { Ok(removed) })
    }

    fn banned(
        &self,
        ip: IpAddr,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<Ban>, LimitsError>> {
        let ban = self.banned_now(ip, now);
        Box::pin(async move { Ok(ban) })
    }

    fn bans(&self, now: Timestamp) -> BoxFuture<'_, Result<Vec<Ban>, LimitsError>> {
        let bans = self.bans_now(now);
        Box::pin(async move { Ok(bans) })
    }
}

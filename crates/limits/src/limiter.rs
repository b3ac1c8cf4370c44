//! The decisions: admit a connection or not, let an AUTH attempt through or
//! cool it down, and what a failure costs (delay, cool-down, ban).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::net::canonical;
use crate::{failure_delay, network_of, Ban, Counter, LimitsBackend, LimitsConfig, LimitsError};
use crate::{MemoryBackend, Timestamp};

/// Whether a new connection may go on to the greeting.
#[derive(Debug)]
pub enum Admission {
    /// Go on; keep the slot for the life of the connection.
    Admitted(ConnectionSlot),
    /// The address is banned: `421 4.7.0` at the greeting.
    Banned(Ban),
    /// Too many open connections from this address.
    TooManyConnections,
    /// Too many open connections from this address's /24 or /64.
    TooManyFromNetwork,
    /// Too many new connections from this address lately.
    TooFast,
}

/// Whether an AUTH attempt is checked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthGate {
    /// Check the credentials.
    Proceed,
    /// The user is cooling down after too many failures and this address
    /// has not logged in as them lately: `454 4.7.0`, no check.
    CoolDown,
}

/// Whether an AUTH attempt may be verified now (see
/// [`Limiter::admit_attempt`]).
#[derive(Debug)]
pub enum Attempt {
    /// Verify; keep the slot until the outcome has been counted
    /// ([`Limiter::auth_failed`] or [`Limiter::auth_succeeded`]).
    Proceed(AttemptSlot),
    /// The address is banned: `421`, no check.
    Banned(Ban),
    /// The user is cooling down: `454`, no check.
    CoolDown,
    /// The address would be banned, or the user cooled down, if every
    /// attempt now in flight for them failed: ask again once those are
    /// counted (a burst of right passwords then goes through; a burst of
    /// guesses meets the ban or cool-down), `454` if they never are.
    Saturated,
}

/// One AUTH attempt between its admission and the counting of its
/// outcome; counted as in flight for its address and user until dropped.
#[derive(Debug)]
pub struct AttemptSlot {
    in_flight: Arc<Mutex<HashMap<String, u64>>>,
    keys: Vec<String>,
}

impl AttemptSlot {
    /// Enters the attempt under `keys`; returns the slot and how many
    /// attempts were already in flight under each key.
    fn enter(in_flight: &Arc<Mutex<HashMap<String, u64>>>, keys: Vec<String>) -> (Self, Vec<u64>) {
        let mut map = in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let before = keys
            .iter()
            .map(|k| {
                let n = map.entry(k.clone()).or_insert(0);
                *n += 1;
                *n - 1
            })
            .collect();
        let slot = AttemptSlot {
            in_flight: in_flight.clone(),
            keys,
        };
        (slot, before)
    }
}

impl Drop for AttemptSlot {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

/// What one failed AUTH attempt costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureVerdict {
    /// Wait this long before the failure reply.
    pub delay: Duration,
    /// The same wrong password as a recent failure from this address: not
    /// counted again (a client with a stale password, not a guesser).
    pub stale: bool,
    /// Recent failures from the address, its network, for the user, and
    /// for the (address, user) pair, this one included.
    pub address_failures: u64,
    pub network_failures: u64,
    pub user_failures: u64,
    pub pair_failures: u64,
    /// This failure started (or extended) the user's cool-down.
    pub cooldown: bool,
    /// This failure got the address banned.
    pub banned: Option<Ban>,
}

/// One open connection, counted against its address and network until
/// dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    open: Arc<Mutex<HashMap<String, u32>>>,
    keys: [String; 2],
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if let Some(n) = open.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

/// The brute-force defence of one server. Cheap to share behind an `Arc`.
pub struct Limiter {
    config: LimitsConfig,
    backend: Arc<dyn LimitsBackend>,
    /// Counts used when `backend` fails (the same object when it is the
    /// memory backend).
    local: Arc<MemoryBackend>,
    /// Keys the HMAC of wrong passwords; never leaves the process.
    key: [u8; 32],
    /// Open connections by address (`ip:…`) and network (`net:…`).
    open: Arc<Mutex<HashMap<String, u32>>>,
    /// AUTH attempts admitted and not yet counted, by address and user.
    in_flight: Arc<Mutex<HashMap<String, u64>>>,
    /// Bumped whenever the bans this process knows of change, so that
    /// open sessions look their address up again only then.
    ban_generation: AtomicU64,
    degraded: AtomicBool,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter counting in this process only.
    pub fn in_memory(config: LimitsConfig) -> Limiter {
        let local = Arc::new(MemoryBackend::new());
        Limiter::new(config, local.clone(), local)
    }

    /// A limiter on a shared `backend`, falling back to `local` when it
    /// fails.
    pub fn new(
        config: LimitsConfig,
        backend: Arc<dyn LimitsBackend>,
        local: Arc<MemoryBackend>,
    ) -> Limiter {
        Limiter {
            config,
            backend,
            local,
            key: rand::random(),
            open: Arc::default(),
            in_flight: Arc::default(),
            ban_generation: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Whether the shared backend answered the last call (always true for
    /// local counting); false while counts are kept locally instead.
    pub fn shared_backend_up(&self) -> bool {
        !self.degraded.load(Ordering::Relaxed)
    }

    /// The local counts and bans (the ban file is loaded into these).
    pub fn local(&self) -> &Arc<MemoryBackend> {
        &self.local
    }

    /// Bans, connection rate and open connections (per address, then per
    /// network), in that order. The allow-list skips them all.
    pub async fn admit(&self, ip: IpAddr, now: Timestamp) -> Admission {
        let ip = canonical(ip);
        if !self.config.allowed(ip) {
            if let Some(ban) = self.banned(ip, now).await {
                return Admission::Banned(ban);
            }
            if self.config.max_connection_rate > 0 {
                let counter = [Counter {
                    key: ip_key("conn:", ip, None),
                    window: self.config.connection_rate_window,
                }];
                let rate = self.hit(&counter, now).await[0];
                if rate > self.config.max_connection_rate {
                    return Admission::TooFast;
                }
            }
        }
        let keys = [ip_key("ip:", ip, None), ["net:", &network_of(ip)].concat()];
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if !self.config.allowed(ip) {
            let count = |key: &String| open.get(key).copied().unwrap_or(0);
            let (per_address, per_network) = (
                self.config.max_connections_per_address,
                self.config.max_connections_per_network,
            );
            if per_address > 0 && count(&keys[0]) >= per_address {
                return Admission::TooManyConnections;
            }
            if per_network > 0 && count(&keys[1]) >= per_network {
                return Admission::TooManyFromNetwork;
            }
        }
        for key in &keys {
            *open.entry(key.clone()).or_insert(0) += 1;
        }
        Admission::Admitted(ConnectionSlot {
            open: self.open.clone(),
            keys,
        })
    }

    /// Whether to check an AUTH attempt for `user` from `ip` at all.
    pub async fn before_auth(&self, ip: IpAddr, user: &str, now: Timestamp) -> AuthGate {
        let ip = canonical(ip);
        let user = user.to_lowercase();
        // No user name (a script mechanism, a token without `a=`): there is
        // nobody to cool down, and "" must not become a user everyone shares.
        if user.is_empty()
            || self.config.allowed(ip)
            || !self.marked(&["cool:", &user].concat(), now).await
        {
            return AuthGate::Proceed;
        }
        if self.marked(&ip_key("ok:", ip, Some(&user)), now).await {
            return AuthGate::Proceed;
        }
        AuthGate::CoolDown
    }

    /// Whether to verify an AUTH attempt for `user` from `ip` now: checked
    /// immediately before each verification, not only at connect, so an
    /// open session of an address banned since gets no further guess.
    ///
    /// Attempts admitted and not yet counted are reserved: while others
    /// are in flight, an attempt is refused when the failures so far plus
    /// those in flight would already reach the ban or the user's cool-down. So parallel connections get
    /// no more verified guesses than `ban_after` per ban and
    /// `user_max_failures` per cool-down (within this process; with a
    /// shared backend each instance reserves its own). The allow-list
    /// skips every check.
    pub async fn admit_attempt(&self, ip: IpAddr, user: &str, now: Timestamp) -> Attempt {
        let ip = canonical(ip);
        let user = user.to_lowercase();
        if self.config.allowed(ip) {
            return Attempt::Proceed(AttemptSlot::enter(&self.in_flight, Vec::new()).0);
        }
        let mut keys = vec![ip_key("ip:", ip, None)];
        if !user.is_empty() {
            keys.push(["user:", &user].concat());
        }
        // Enter first, then read the ban, the cool-down and the counts: an
        // attempt counts its failure (and records the ban or cool-down it
        // causes) before it leaves, so this one sees either that attempt
        // in flight or what it recorded, never neither.
        let (slot, before) = AttemptSlot::enter(&self.in_flight, keys);
        if let Some(ban) = self.banned(ip, now).await {
            return Attempt::Banned(ban);
        }
        if self.before_auth(ip, &user, now).await == AuthGate::CoolDown {
            return Attempt::CoolDown;
        }
        if before.iter().all(|n| *n == 0) {
            // Nothing in flight: the ban and cool-down marks decide, as
            // they did for the attempt before this one.
            return Attempt::Proceed(slot);
        }
        let counters = failure_counters(ip, &user, self.config.failure_window);
        let counts = self.peek(&counters, now).await;
        if before[0] > 0 && counts[0] + before[0] >= self.config.ban_after {
            return Attempt::Saturated;
        }
        if !user.is_empty()
            && before[1] > 0
            && counts[2] + before[1] >= self.config.user_max_failures
            && !self.marked(&ip_key("ok:", ip, Some(&user)), now).await
        {
            return Attempt::Saturated;
        }
        Attempt::Proceed(slot)
    }

    /// Counts a failure and says what it costs. `password` is the clear
    /// password when the mechanism carried one (PLAIN, LOGIN): only its
    /// keyed hash is kept, to recognise the same wrong password repeated.
    pub async fn auth_failed(
        &self,
        ip: IpAddr,
        user: &str,
        password: Option<&[u8]>,
        now: Timestamp,
    ) -> FailureVerdict {
        let ip = canonical(ip);
        let user = user.to_lowercase();
        let window = self.config.failure_window;
        let counters = failure_counters(ip, &user, window);
        let stale = match password {
            Some(password) => {
                let key = format!("stale:{ip}:{}", self.password_mac(&user, password));
                let seen = self.marked(&key, now).await;
                self.mark(&key, now + window, now).await;
                seen
            }
            None => false,
        };
        let counts = if stale {
            self.peek(&counters, now).await
        } else {
            self.hit(&counters, now).await
        };
        let (address, network, user_count, pair) = (counts[0], counts[1], counts[2], counts[3]);
        let weighted = address.max(network.div_ceil(self.config.network_divisor.max(1)));
        let mut verdict = FailureVerdict {
            delay: failure_delay(
                weighted.max(1),
                self.config.delay_initial,
                self.config.delay_max,
            ),
            stale,
            address_failures: address,
            network_failures: network,
            user_failures: user_count,
            pair_failures: pair,
            cooldown: false,
            banned: None,
        };
        if stale {
            return verdict;
        }
        if user_count >= self.config.user_max_failures && !user.is_empty() {
            let until = now + self.config.user_cooldown;
            self.mark(&["cool:", &user].concat(), until, now).await;
            verdict.cooldown = true;
        }
        if address >= self.config.ban_after && !self.config.allowed(ip) {
            let ban = Ban {
                ip,
                reason: format!(
                    "{address} failed logins in {}s",
                    self.config.failure_window.as_secs()
                ),
                created_ms: now.millis(),
                expires_ms: (now + self.config.ban_duration).millis(),
            };
            self.ban(ban.clone()).await;
            verdict.banned = Some(ban);
        }
        verdict
    }

    /// The delay a refusal that is not a failure (a cool-down `454`) waits:
    /// what the address's next failure would wait, so a client hammering a
    /// cooling-down user is slowed as a guesser is. Counts nothing.
    pub async fn refusal_delay(&self, ip: IpAddr, now: Timestamp) -> Duration {
        let ip = canonical(ip);
        let counters = failure_counters(ip, "", self.config.failure_window);
        let counts = self.peek(&counters[..2], now).await;
        let weighted = counts[0].max(counts[1].div_ceil(self.config.network_divisor.max(1)));
        failure_delay(
            weighted + 1,
            self.config.delay_initial,
            self.config.delay_max,
        )
    }

    /// Remembers that `ip` logged in as `user`: it is exempt from that
    /// user's cool-down for `trusted_for`. A success is never delayed.
    pub async fn auth_succeeded(&self, ip: IpAddr, user: &str, now: Timestamp) {
        let key = ip_key("ok:", canonical(ip), Some(&user.to_lowercase()));
        self.mark(&key, now + self.config.trusted_for, now).await;
    }

    /// The ban on `ip` in force at `now`, if any.
    pub async fn banned(&self, ip: IpAddr, now: Timestamp) -> Option<Ban> {
        let ip = canonical(ip);
        let shared = self.backend.banned(ip, now).await;
        self.or_local(shared, || self.local.banned_now(ip, now))
    }

    /// The ban on `ip` that applies to it at `now`: none for an address
    /// on the allow-list, as at connect.
    pub async fn enforced_ban(&self, ip: IpAddr, now: Timestamp) -> Option<Ban> {
        if self.config.allowed(canonical(ip)) {
            return None;
        }
        self.banned(ip, now).await
    }

    /// Records a ban (shared when the backend is).
    pub async fn ban(&self, ban: Ban) {
        let shared = self.backend.ban(ban.clone()).await;
        self.or_local(shared, || self.local.ban_now(ban));
        self.ban_generation.fetch_add(1, Ordering::Release);
    }

    /// Replaces the local bans with `bans` (the ban file, reloaded).
    pub fn reload_bans(&self, bans: Vec<Ban>) {
        self.local.replace_bans(bans);
        self.ban_generation.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever a ban is made or the ban file is reloaded in this
    /// process: a session that saw the same number before need not look
    /// its address up again.
    pub fn ban_generation(&self) -> u64 {
        self.ban_generation.load(Ordering::Acquire)
    }

    /// Every ban in force.
    pub async fn bans(&self, now: Timestamp) -> Result<Vec<Ban>, LimitsError> {
        self.backend.bans(now).await
    }

    /// Lifts a ban; whether there was one.
    pub async fn unban(&self, ip: IpAddr) -> Result<bool, LimitsError> {
        let local = self.local.unban_now(canonical(ip));
        Ok(self.backend.unban(canonical(ip)).await? || local)
    }

    fn password_mac(&self, user: &str, password: &[u8]) -> String {
        // Invariant: HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Recent failures from `ip` and from its network, for any user (the
    /// "in after guessing" signal).
    pub async fn recent_failures(&self, ip: IpAddr, now: Timestamp) -> (u64, u64) {
        let ip = canonical(ip);
        let window = self.config.failure_window;
        let counters = failure_counters(ip, "", window);
        let counts = self.peek(&counters[..2], now).await;
        (
            counts.first().copied().unwrap_or(0),
            counts.get(1).copied().unwrap_or(0),
        )
    }

    /// Checks sending quotas and counts them if all allow
    /// ([`crate::sending`]); counted locally while the shared backend is down.
    pub async fn consume(
        &self,
        quotas: &[crate::sending::Quota],
        now: Timestamp,
    ) -> crate::sending::Consumed {
        let shared = self.backend.consume(quotas, now).await;
        self.or_local(shared, || self.local.consume_now(quotas, now))
    }

    async fn hit(&self, counters: &[Counter], now: Timestamp) -> Vec<u64> {
        let shared = self.backend.hit(counters, now).await;
        self.or_local(shared, || self.local.hit_now(counters, now))
    }

    async fn peek(&self, counters: &[Counter], now: Timestamp) -> Vec<u64> {
        let shared = self.backend.peek(counters, now).await;
        self.or_local(shared, || self.local.peek_now(counters, now))
    }

    async fn mark(&self, key: &str, until: Timestamp, now: Timestamp) {
        let shared = self.backend.mark(key, until, now).await;
        self.or_local(shared, || self.local.mark_now(key, until))
    }

    async fn marked(&self, key: &str, now: Timestamp) -> bool {
        let shared = self.backend.marked(key, now).await;
        self.or_local(shared, || self.local.marked_now(key, now))
    }

    /// Fail open for counting: a shared backend that fails is logged once
    /// (and once more when it is back) and local counts stand in.
    fn or_local<T>(&self, shared: Result<T, LimitsError>, local: impl FnOnce() -> T) -> T {
        match shared {
            Ok(value) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::warn!("limits backend is back; counting shared again");
                }
                value
            }
            Err(error) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::error!(%error, "limits backend unavailable; counting locally");
                }
                local()
            }
        }
    }
}

/// Address, network, user and (address, user), in that order.
/// A counter's or a mark's key: `prefix`, the address (as
/// [`crate::net::ip_text`] writes it), then `:user` when given; what
/// `format!("{prefix}{ip}:{user}")` writes, without the formatting
/// machinery (a login builds several of these keys).
fn ip_key(prefix: &str, ip: IpAddr, user: Option<&str>) -> String {
    let mut key = String::with_capacity(prefix.len() + 16 + user.map_or(0, |u| u.len() + 1));
    key.push_str(prefix);
    crate::net::push_ip(&mut key, ip);
    if let Some(user) = user {
        key.push(':');
        key.push_str(user);
    }
    key
}

fn failure_counters(ip: IpAddr, user: &str, window: Duration) -> [Counter; 4] {
    let counter = |key: String| Counter { key, window };
    [
        counter(ip_key("fail:ip:", ip, None)),
        counter(["fail:net:", &network_of(ip)].concat()),
        counter(["fail:user:", user].concat()),
        counter(ip_key("fail:pair:", ip, Some(user))),
    ]
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn keys_are_what_format_writes() {
        for ip in ["192.0.2.1", "10.200.30.4", "2001:db8::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_key("ip:", ip, None), format!("ip:{ip}"));
            assert_eq!(ip_key("ok:", ip, Some("alice")), format!("ok:{ip}:alice"));
            assert_eq!(
                ip_key("fail:pair:", ip, Some("")),
                format!("fail:pair:{ip}:")
            );
        }
    }
}

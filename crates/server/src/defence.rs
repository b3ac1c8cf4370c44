//! The brute-force defence at the edge: asks [`portcullis_limits::Limiter`]
//! and carries out its verdicts — `421` at the greeting for a banned or
//! flooding address, `421` on the next command of an open session whose
//! address was banned since, `454` during a user's cool-down, and the
//! delay before every failure reply.
//!
//! Bans and cool-downs are checked again immediately before each
//! verification, not only at connect: parallel connections opened before
//! a ban would otherwise each keep guessing.
//!
//! The address counted is the real client's: the PROXY header's, or the
//! address a trusted proxy named with XCLIENT
//! (`ConnectionFacts::client`), never the proxy's.
//!
//! The auth service (`auth_service.rs`) calls the attempt half of
//! this module (admission before a check, the record after it); the
//! connection calls the connection half (admission at connect, bans made
//! since).
//!
//! Without a shared backend, bans are also written to `bans.json` in the
//! data directory and the file is reloaded when it changes, so that
//! `portcullis ban list|add|del` sees and lifts the bans this server
//! enforces.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_limits::{
    Admission, Attempt, AttemptSlot, Ban, BanFile, ConnectionSlot, Limiter, Timestamp,
};
use portcullis_proto::Reply;

use crate::outcome::Outcome;
use crate::peer::ConnectionFacts;
use crate::telemetry;

/// The ban file's name in the data directory.
pub const BAN_FILE: &str = "bans.json";

/// How often the ban file is checked for changes.
const BAN_FILE_POLL: Duration = Duration::from_secs(1);

/// How long an attempt waits for the attempts in flight before it
/// (see [`Attempt::Saturated`]), and how often it asks again.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(3);
const IN_FLIGHT_POLL: Duration = Duration::from_millis(20);

/// The limiter, and the ban file where bans are persisted without a
/// shared backend.
pub(crate) struct Defence {
    limiter: Arc<Limiter>,
    ban_file: Option<BanFile>,
}

impl Defence {
    pub(crate) fn new(limiter: Arc<Limiter>, ban_file: Option<BanFile>) -> Defence {
        Defence { limiter, ban_file }
    }

    pub(crate) fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// Lets a new connection from `ip` through, or says why not (the reply
    /// to send before closing).
    pub(crate) async fn admit(&self, ip: IpAddr) -> Result<ConnectionSlot, Reply> {
        let (reason, reply) = match self.limiter.admit(ip, Timestamp::now()).await {
            Admission::Admitted(slot) => return Ok(slot),
            Admission::Banned(ban) => {
                tracing::info!(client = %ip, reason = %ban.reason, remaining_secs = ban.remaining_secs(Timestamp::now()), "refused: banned");
                ("banned", Reply::banned())
            }
            Admission::TooManyConnections => {
                tracing::warn!(client = %ip, "refused: too many connections from the address");
                ("per_address", Reply::too_many_connections_from_address())
            }
            Admission::TooManyFromNetwork => {
                tracing::warn!(client = %ip, "refused: too many connections from the network");
                ("per_network", Reply::too_many_connections_from_network())
            }
            Admission::TooFast => {
                tracing::warn!(client = %ip, "refused: connection rate from the address");
                ("rate", Reply::too_many_connections_from_address())
            }
        };
        metrics::counter!(telemetry::CONNECTIONS_LIMITED, "reason" => reason).increment(1);
        Err(reply)
    }

    /// Admission of one AUTH attempt, right before it is checked: a banned
    /// address gets `421` and is closed; a user cooling down, or an attempt
    /// that would pass a ban or cool-down if the attempts in flight failed
    /// and still would after waiting for them to be counted, gets `454`
    /// unchecked. The slot is held until the outcome is counted.
    pub(crate) async fn admit_attempt(
        &self,
        facts: &ConnectionFacts,
        mechanism: &str,
        user: &str,
    ) -> Result<AttemptSlot, Outcome> {
        let ip = facts.client_ip();
        let limiter = &self.limiter;
        // Attempts in flight that would reach a ban or cool-down if they all
        // failed: wait for them to be counted, then ask again. A burst of
        // right passwords (many workers of one sender logging in at once)
        // then goes through; a burst of guesses meets the ban or cool-down.
        let waited_until = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
        let mut admitted = limiter.admit_attempt(ip, user, Timestamp::now()).await;
        while matches!(admitted, Attempt::Saturated) && tokio::time::Instant::now() < waited_until {
            tokio::time::sleep(IN_FLIGHT_POLL).await;
            admitted = limiter.admit_attempt(ip, user, Timestamp::now()).await;
        }
        match admitted {
            Attempt::Proceed(slot) => Ok(slot),
            Attempt::Banned(ban) => {
                tracing::info!(client = %ip, proxy = %facts.nearest_ip(), reason = %ban.reason, "auth refused: banned");
                metrics::counter!(telemetry::CONNECTIONS_LIMITED, "reason" => "banned")
                    .increment(1);
                Err(Outcome::Disconnect {
                    reply: Reply::banned(),
                })
            }
            Attempt::CoolDown => {
                tracing::warn!(client = %ip, %mechanism, %user, result = "cool-down", "auth: user cooling down after repeated failures");
                Err(self.refuse_unchecked(ip).await)
            }
            Attempt::Saturated => {
                tracing::warn!(client = %ip, %mechanism, %user, result = "cool-down", "auth: at a ban or cool-down threshold with attempts in flight");
                Err(self.refuse_unchecked(ip).await)
            }
        }
    }

    /// `454` without a check, after the delay the address's next failure
    /// would wait, so a client hammering a cooling-down user is slowed as a
    /// guesser is.
    async fn refuse_unchecked(&self, ip: IpAddr) -> Outcome {
        metrics::counter!(telemetry::AUTH_COOLDOWNS).increment(1);
        let delay = self.limiter.refusal_delay(ip, Timestamp::now()).await;
        metrics::histogram!(telemetry::AUTH_FAILURE_DELAY).record(delay.as_secs_f64());
        tokio::time::sleep(delay).await;
        Outcome::Deferred {
            reply: Some(Reply::auth_cooling_down()),
        }
    }

    /// Waits what a wrong password from `ip` would, without counting: for
    /// a refusal that confirms nothing by its speed.
    pub(crate) async fn wait_refusal_delay(&self, ip: IpAddr) {
        let delay = self.limiter.refusal_delay(ip, Timestamp::now()).await;
        tokio::time::sleep(delay).await;
    }

    /// Remembers a success (never delayed).
    pub(crate) async fn succeeded(&self, ip: IpAddr, user: &str) {
        self.limiter
            .auth_succeeded(ip, user, Timestamp::now())
            .await;
    }

    /// Counts a failure, waits the delay, and bans when the count says so
    /// (the outcome becomes `421` and a close). The attempt's slot is
    /// released once the failure is counted, before the delay.
    pub(crate) async fn failed(
        &self,
        ip: IpAddr,
        user: &str,
        password: Option<&[u8]>,
        outcome: Outcome,
        slot: Option<AttemptSlot>,
    ) -> Outcome {
        let verdict = self
            .limiter
            .auth_failed(ip, user, password, Timestamp::now())
            .await;
        drop(slot);
        if verdict.stale {
            tracing::info!(client = %ip, %user, hint = "a client repeating an old password? not counted again", "auth: same wrong password repeated");
            metrics::counter!(telemetry::AUTH_STALE).increment(1);
        }
        if verdict.cooldown {
            tracing::warn!(%user, failures = verdict.user_failures, "auth: user cool-down started");
        }
        tracing::debug!(client = %ip, %user, delay_ms = verdict.delay.as_millis() as u64, address = verdict.address_failures, network = verdict.network_failures, pair = verdict.pair_failures, "auth: failure delay");
        metrics::histogram!(telemetry::AUTH_FAILURE_DELAY).record(verdict.delay.as_secs_f64());
        tokio::time::sleep(verdict.delay).await;
        match verdict.banned {
            Some(ban) => {
                tracing::warn!(client = %ip, reason = %ban.reason, until_ms = ban.expires_ms, "banned");
                metrics::counter!(telemetry::BANS).increment(1);
                self.persist(ban);
                Outcome::Disconnect {
                    reply: Reply::banned(),
                }
            }
            None => outcome,
        }
    }

    /// The `421` an open session gets when its address was banned after it
    /// connected (by its own or another connection's failures, or by
    /// `portcullis ban add`). Looks the address up only when the bans this
    /// process knows of changed since `seen`, so a session pays one atomic
    /// load per read otherwise (`client` is asked for the address only
    /// then).
    pub(crate) async fn banned_since(
        &self,
        client: impl FnOnce() -> IpAddr,
        seen: &mut u64,
    ) -> Option<Reply> {
        let generation = self.limiter.ban_generation();
        if generation == *seen {
            return None;
        }
        *seen = generation;
        let ip = client();
        let ban = self.limiter.enforced_ban(ip, Timestamp::now()).await?;
        tracing::info!(client = %ip, reason = %ban.reason, "closing an open session: address banned");
        metrics::counter!(telemetry::CONNECTIONS_LIMITED, "reason" => "banned").increment(1);
        Some(Reply::banned())
    }

    /// Writes a new ban to the ban file (local backend only), off the async
    /// workers; the server goes on whether or not that works.
    fn persist(&self, ban: Ban) {
        let Some(file) = self.ban_file.clone() else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            if let Err(error) = file.add(ban, Timestamp::now()) {
                tracing::error!(%error, "could not write the ban file");
            }
        });
    }

    /// Reloads the ban file into the limiter whenever it changes (so that
    /// `portcullis ban del` lifts a ban at once), until the task is
    /// aborted; `None` without a ban file.
    pub(crate) fn watch_ban_file(&self) -> Option<tokio::task::JoinHandle<()>> {
        let file = self.ban_file.clone()?;
        let limiter = self.limiter.clone();
        Some(tokio::spawn(async move {
            let mut seen = None;
            loop {
                let modified = tokio::fs::metadata(file.path())
                    .await
                    .and_then(|m| m.modified())
                    .ok();
                if modified != seen {
                    seen = modified;
                    let reader = file.clone();
                    match tokio::task::spawn_blocking(move || reader.load()).await {
                        Ok(Ok(bans)) => {
                            // Said once per change: what `ban add|del`
                            // waits for to know the server enforces it.
                            tracing::info!(bans = bans.len(), "ban file reloaded");
                            limiter.reload_bans(bans);
                        }
                        Ok(Err(error)) => tracing::error!(%error, "could not read the ban file"),
                        Err(_) => {}
                    }
                }
                tokio::time::sleep(BAN_FILE_POLL).await;
            }
        }))
    }
}

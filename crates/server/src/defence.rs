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
//! The address counted is the real client's: the PROXY header's (already
//! in [`Peer::client`]), or the address a trusted proxy named with XCLIENT
//! ([`client_ip`]), never the proxy's.
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
use portcullis_sasl::{Credentials, Mechanism, Secret};
use portcullis_session::{AuthOutcome, Session};

use crate::connection::Peer;
use crate::{effects, telemetry, Shared};

/// The ban file's name in the data directory.
pub const BAN_FILE: &str = "bans.json";

/// How often the ban file is checked for changes.
const BAN_FILE_POLL: Duration = Duration::from_secs(1);

/// Lets a new connection through, or says why not (the reply to send
/// before closing).
pub(crate) async fn admit(shared: &Shared, peer: &Peer) -> Result<ConnectionSlot, Reply> {
    let ip = peer.client.ip();
    let (reason, reply) = match shared.limiter.admit(ip, Timestamp::now()).await {
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

/// How long an attempt waits for the attempts in flight before it
/// (see [`Attempt::Saturated`]), and how often it asks again.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
const IN_FLIGHT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Admission of one AUTH attempt, right before it is checked: a banned
/// address gets `421` and is closed; a user cooling down, or an attempt
/// that would pass a ban or cool-down if the attempts in flight failed
/// and still would after waiting for them to be counted, gets `454`
/// unchecked. The slot is held until the outcome is counted.
pub(crate) async fn admit_attempt(
    shared: &Shared,
    peer: &Peer,
    ip: IpAddr,
    mechanism: &str,
    user: &str,
) -> Result<AttemptSlot, AuthOutcome> {
    let limiter = &shared.limiter;
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
            tracing::info!(client = %ip, proxy = %peer.client.ip(), reason = %ban.reason, "auth refused: banned");
            metrics::counter!(telemetry::CONNECTIONS_LIMITED, "reason" => "banned").increment(1);
            Err(AuthOutcome::Disconnect {
                reply: Reply::banned(),
            })
        }
        Attempt::CoolDown => {
            tracing::warn!(client = %ip, %mechanism, %user, result = "cool-down", "auth: user cooling down after repeated failures");
            Err(refuse_unchecked(shared, ip).await)
        }
        Attempt::Saturated => {
            tracing::warn!(client = %ip, %mechanism, %user, result = "cool-down", "auth: at a ban or cool-down threshold with attempts in flight");
            Err(refuse_unchecked(shared, ip).await)
        }
    }
}

/// An AUTH attempt through the defence: a banned address gets `421`
/// (an open session of an address banned since it connected included); a
/// user cooling down, or an attempt that would pass a ban or cool-down if
/// the attempts in flight failed, gets `454` unchecked; a failure is
/// counted and its reply delayed; a success is remembered (and never
/// delayed).
pub(crate) async fn authenticate(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    mechanism: Mechanism,
    credentials: Credentials,
) -> AuthOutcome {
    let ip = client_ip(peer, session);
    let user = credentials.authcid().to_string();
    let slot = match admit_attempt(shared, peer, ip, mechanism.name(), &user).await {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    // Kept only to recognise a repeated wrong password; zeroized on drop.
    let password: Option<Secret> = match &credentials {
        Credentials::Password { password, .. } => Some(password.clone()),
        _ => None,
    };
    let decided = crate::policy::authenticate(shared, peer, session, mechanism, &credentials);
    let outcome = match decided.await {
        Some(outcome) => outcome,
        None => {
            let verified = effects::authenticate(shared, peer, mechanism, credentials).await;
            let reviewed =
                crate::policy::review_verified(shared, peer, session, mechanism, &verified);
            match reviewed.await {
                // The proof was right: a refusal by the script is policy,
                // not a guess, so it is not counted. It waits what a wrong
                // password would, or its speed would confirm the password.
                Some(outcome @ AuthOutcome::Accepted { .. }) => outcome,
                Some(refused) => {
                    let delay = shared.limiter.refusal_delay(ip, Timestamp::now()).await;
                    tokio::time::sleep(delay).await;
                    return refused;
                }
                None => verified,
            }
        }
    };
    match &outcome {
        AuthOutcome::Accepted { .. } => {
            shared
                .limiter
                .auth_succeeded(ip, &user, Timestamp::now())
                .await;
            outcome
        }
        // A policy that defers and hangs up (`kumo.disconnect(421, …)`
        // while its backend is down) made no judgement on the guess: not
        // counted, or an outage would ban the users it turned away.
        AuthOutcome::Disconnect { reply } if reply.code() / 100 == 4 => outcome,
        AuthOutcome::Rejected { .. } | AuthOutcome::Disconnect { .. } => {
            let secret = password.as_ref().map(Secret::expose);
            failed(shared, ip, &user, secret, outcome, Some(slot)).await
        }
        AuthOutcome::TemporaryFailure { .. } => outcome,
    }
}

/// `454` without a check, after the delay the address's next failure would
/// wait, so a client hammering a cooling-down user is slowed as a guesser is.
async fn refuse_unchecked(shared: &Shared, ip: IpAddr) -> AuthOutcome {
    metrics::counter!(telemetry::AUTH_COOLDOWNS).increment(1);
    let delay = shared.limiter.refusal_delay(ip, Timestamp::now()).await;
    metrics::histogram!(telemetry::AUTH_FAILURE_DELAY).record(delay.as_secs_f64());
    tokio::time::sleep(delay).await;
    AuthOutcome::TemporaryFailure {
        reply: Some(Reply::auth_cooling_down()),
    }
}

/// The `421` an open session gets when its address was banned after it
/// connected (by its own or another connection's failures, or by
/// `portcullis ban add`). Looks the address up only when the bans this
/// process knows of changed since `seen`, so a session pays one atomic
/// load per read otherwise.
pub(crate) async fn banned_since(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    seen: &mut u64,
) -> Option<Reply> {
    let generation = shared.limiter.ban_generation();
    if generation == *seen {
        return None;
    }
    *seen = generation;
    let ip = client_ip(peer, session);
    let ban = shared.limiter.enforced_ban(ip, Timestamp::now()).await?;
    tracing::info!(client = %ip, reason = %ban.reason, "closing an open session: address banned");
    metrics::counter!(telemetry::CONNECTIONS_LIMITED, "reason" => "banned").increment(1);
    Some(Reply::banned())
}

/// The end of an exchange with a mechanism the policy script implements:
/// counted like any AUTH. The user a refused client claimed is the
/// script's business, so failures count against the address (and its
/// network) only, under the empty user name; no cool-down applies.
pub(crate) async fn script_auth_finished(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    outcome: AuthOutcome,
    slot: Option<AttemptSlot>,
) -> AuthOutcome {
    let ip = client_ip(peer, session);
    match &outcome {
        AuthOutcome::Accepted { authn_id, .. } => {
            let limiter = &shared.limiter;
            limiter.auth_succeeded(ip, authn_id, Timestamp::now()).await;
            outcome
        }
        AuthOutcome::Rejected { .. } | AuthOutcome::Disconnect { .. } => {
            failed(shared, ip, "", None, outcome, slot).await
        }
        AuthOutcome::TemporaryFailure { .. } => outcome,
    }
}

/// The client as counted: the address a trusted proxy named with XCLIENT
/// (`ADDR=192.0.2.7` or `ADDR=IPV6:2001:db8::7`), else the connection's.
pub(crate) fn client_ip(peer: &Peer, session: &Session) -> IpAddr {
    session
        .xclient()
        .and_then(|x| x.addr.as_deref())
        .and_then(|addr| {
            let addr = addr
                .strip_prefix("IPV6:")
                .or_else(|| addr.strip_prefix("ipv6:"))
                .unwrap_or(addr);
            addr.parse().ok()
        })
        .unwrap_or(peer.client.ip())
}

/// Counts a failure, waits the delay, and bans when the count says so.
/// The attempt's slot is released once the failure is counted, before the
/// delay.
pub(crate) async fn failed(
    shared: &Shared,
    ip: IpAddr,
    user: &str,
    password: Option<&[u8]>,
    outcome: AuthOutcome,
    slot: Option<AttemptSlot>,
) -> AuthOutcome {
    let verdict = shared
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
            persist(shared, ban);
            AuthOutcome::Disconnect {
                reply: Reply::banned(),
            }
        }
        None => outcome,
    }
}

/// Writes a new ban to the ban file (local backend only), off the async
/// workers; the server goes on whether or not that works.
fn persist(shared: &Shared, ban: Ban) {
    let Some(file) = shared.ban_file.clone() else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        if let Err(error) = file.add(ban, Timestamp::now()) {
            tracing::error!(%error, "could not write the ban file");
        }
    });
}

/// Reloads the ban file into the limiter whenever it changes (so that
/// `portcullis ban del` lifts a ban at once), until dropped.
pub(crate) fn watch_ban_file(limiter: Arc<Limiter>, file: BanFile) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
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
                    Ok(Ok(bans)) => limiter.reload_bans(bans),
                    Ok(Err(error)) => tracing::error!(%error, "could not read the ban file"),
                    Err(_) => {}
                }
            }
            tokio::time::sleep(BAN_FILE_POLL).await;
        }
    })
}

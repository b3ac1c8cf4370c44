//! Verification against the credential store: the cache first (a repeated
//! login whose record and password are cached is decided in place), else
//! the full check on tokio's blocking pool, bounded by [`StoreCalls`]
//! (store timeout, calls in flight) and by the authenticator's hash
//! slots. Logs the audit line of every decision the store makes; the
//! password never reaches the log, only the user name, mechanism and
//! verdict do.

use std::net::IpAddr;

use portcullis_auth::{Authenticator, Decision, ScramUpgrade};
use portcullis_sasl::{Credentials, Mechanism, ScramHash, ScramSecrets};

use crate::outcome::Outcome;
use crate::peer::ConnectionFacts;
use crate::store_calls::{StoreCallError, StoreCalls};
use crate::telemetry;

/// Checks credentials and logs one line with the exact reason. The password
/// never reaches the log: only the user name, mechanism and verdict do.
pub(crate) async fn check(
    authenticator: &Authenticator,
    store_calls: &StoreCalls,
    facts: &ConnectionFacts,
    mechanism: Mechanism,
    credentials: Credentials,
) -> Outcome {
    let user = credentials.authcid().to_string();
    let authzid = credentials.authzid().map(str::to_string);
    let authenticator = authenticator.clone();
    let started = std::time::Instant::now();
    let checked = match authenticator.check_cached(&credentials) {
        Some(decision) => Ok(Checked::without_upgrade(decision)),
        None => check_blocking(store_calls, authenticator, credentials).await,
    };
    let Checked {
        decision,
        upgrade,
        detail,
    } = checked
        .unwrap_or_else(|error| Checked::without_upgrade(Decision::Unavailable(error.to_string())));
    metrics::histogram!(telemetry::AUTH_DURATION).record(started.elapsed().as_secs_f64());
    let result = match &decision {
        Decision::Accepted { .. } => "accepted",
        Decision::Rejected(_) => "rejected",
        Decision::Unavailable(_) => "deferred",
    };
    metrics::counter!(telemetry::AUTH_ATTEMPTS, "mechanism" => mechanism.name(), "result" => result)
        .increment(1);
    let client = facts.nearest_ip();
    log_scram_upgrade(&user, &upgrade);
    match decision {
        Decision::Accepted { authn_id, authz_id } => {
            tracing::info!(%client, %mechanism, user = %authn_id, authz = %authz_id, result = "accepted", "auth");
            Outcome::Accepted { authn_id, authz_id }
        }
        Decision::Rejected(reason) => {
            // Absent fields are left out of the line, not shown as `None`.
            use tracing::field::display;
            let (authzid, detail) = (authzid.map(display), detail.map(display));
            tracing::warn!(%client, %mechanism, %user, authzid, result = "rejected", %reason, detail, "auth");
            Outcome::Rejected { reply: None }
        }
        Decision::Unavailable(reason) => {
            tracing::error!(%client, %mechanism, %user, result = "deferred", reason = %reason, "auth: store unavailable");
            Outcome::Deferred { reply: None }
        }
    }
}

/// A decision, the SCRAM secrets it stored, and why a token was refused
/// (for the log).
struct Checked {
    decision: Decision,
    upgrade: ScramUpgrade,
    detail: Option<String>,
}

impl Checked {
    fn without_upgrade(decision: Decision) -> Checked {
        Checked {
            decision,
            upgrade: ScramUpgrade::NotNeeded,
            detail: None,
        }
    }
}

/// The full check on the blocking pool: the store may block, and a cold
/// login pays the slow hash, after waiting for a hash slot if need be
/// (hence `run_check` with the authenticator's probe: while hashes run or
/// wait, a check past the store timeout is not a stalled store).
async fn check_blocking(
    store_calls: &StoreCalls,
    authenticator: Authenticator,
    credentials: Credentials,
) -> Result<Checked, StoreCallError> {
    let probe = authenticator.clone();
    store_calls
        .run_check(
            move || {
                let (decision, detail) = match &credentials {
                    Credentials::Bearer { user, token } => {
                        authenticator.check_token(user.as_deref(), token)
                    }
                    _ => (authenticator.check(&credentials), None),
                };
                let upgrade = match decision {
                    Decision::Accepted { .. } => authenticator.upgrade_scram(&credentials),
                    _ => ScramUpgrade::NotNeeded,
                };
                Checked {
                    decision,
                    upgrade,
                    detail,
                }
            },
            move || probe.hashing(),
        )
        .await
}

/// Says in the log (never to the client) that a password login gave the
/// user SCRAM secrets, or why it could not.
fn log_scram_upgrade(user: &str, upgrade: &ScramUpgrade) {
    match upgrade {
        ScramUpgrade::Saved => {
            tracing::info!(%user, "derived and stored SCRAM secrets at password login")
        }
        ScramUpgrade::Failed(error) => {
            tracing::warn!(%user, %error, "could not store SCRAM secrets")
        }
        ScramUpgrade::PasswordNotPreparable => {
            tracing::info!(%user, "password refused by SASLprep: no SCRAM secrets for this user")
        }
        _ => {}
    }
}

/// What a SCRAM exchange needs from us: the user's secrets (real or
/// fake) and random bytes from a CSPRNG for the server nonce.
#[derive(Debug)]
pub struct ScramFound {
    pub secrets: ScramSecrets,
    pub nonce: [u8; 18],
}

/// Fetches the SCRAM secrets an exchange needs (fake ones for unknown
/// users, see [`portcullis_auth::Authenticator::scram_secrets`]) and makes
/// the server nonce from the CSPRNG; `None` when the store cannot answer.
/// `client` is for the log.
pub(crate) async fn lookup_scram(
    authenticator: &Authenticator,
    store_calls: &StoreCalls,
    client: IpAddr,
    authcid: String,
    hash: ScramHash,
) -> Option<ScramFound> {
    let authenticator = authenticator.clone();
    let user = authcid.clone();
    let found = store_calls
        .run(move || authenticator.scram_secrets(&authcid, hash))
        .await;
    match found {
        Ok(Ok(secrets)) => Some(ScramFound {
            secrets,
            nonce: rand::random(),
        }),
        Ok(Err(error)) => {
            tracing::error!(%client, %user, %error, "auth: store unavailable for SCRAM");
            None
        }
        Err(error) => {
            tracing::error!(%client, %user, %error, "auth: store unavailable for SCRAM");
            None
        }
    }
}

//! The Lua policy's hooks (`portcullis-lua`), as the auth service and the
//! message path call them: deciding a password AUTH the script owns,
//! reviewing an identity our own verification (or a trusted proxy)
//! established, one round of a mechanism the script implements, and the
//! last word on a message.
//!
//! A hook runs on the blocking pool (it may wait on SQLite or Vault), and
//! the wait for it is bounded a little beyond the script's own deadline, so
//! even a hook stuck in a blocking call answers `454` in time.

use std::sync::Arc;
use std::time::Duration;

use portcullis_lua::{
    AuthRequest, CertFacts, ConnFacts, ConnMeta, MechanismStep, MessageFacts, MessageVerdict,
    Policy, TlsFacts, Verdict,
};
use portcullis_proto::Reply;
use portcullis_sasl::{Credentials, Mechanism, Secret};
use portcullis_session::Message;

use crate::outcome::Outcome;
use crate::peer::ConnectionFacts;

/// Extra wait beyond the hook timeout before the server stops waiting.
const GRACE: Duration = Duration::from_millis(250);

/// The mechanism name hooks see for a user a trusted proxy vouched for.
pub(crate) const XCLIENT: &str = "XCLIENT";

/// `None` when the policy does not decide this attempt. A script decides
/// only where it sees the secret itself (PLAIN and LOGIN carry the
/// password). CRAM-MD5, SCRAM and bearer tokens carry proofs only our own
/// verification can check: handing them to a script that answers "accept"
/// for a user name would let anyone in, so those always go to the store
/// (and then, if accepted, to [`review`]).
pub(crate) async fn decide(
    policy: &Arc<Policy>,
    facts: &ConnectionFacts,
    meta: &ConnMeta,
    mechanism: Mechanism,
    credentials: &Credentials,
) -> Option<Outcome> {
    let Credentials::Password { password, .. } = credentials else {
        return None;
    };
    if !policy.decides(mechanism.name()) {
        return None;
    }
    let request = AuthRequest {
        mechanism: mechanism.name().to_string(),
        user: credentials.authcid().to_string(),
        password: Some(password.clone()),
        authzid: credentials.authzid().map(str::to_string),
        verified: false,
    };
    Some(ask(policy.clone(), facts, meta, request).await)
}

/// After our own verification accepted a proof the script cannot see
/// (CRAM-MD5, SCRAM, a token, a client certificate), or a trusted proxy
/// vouched for a user (mechanism [`XCLIENT`]), `smtp_server_auth` is asked
/// with `auth.verified = true` and the identity. It may refuse, or accept
/// with user data; it is never asked about a failed verification, so its
/// accept cannot let a wrong proof in. `None` when the script does not
/// review (the verified identity stands).
pub(crate) async fn review(
    policy: &Arc<Policy>,
    facts: &ConnectionFacts,
    meta: &ConnMeta,
    mechanism: &str,
    authn_id: &str,
    authz_id: &str,
) -> Option<Outcome> {
    if !policy.reviews_verified() {
        return None;
    }
    let request = AuthRequest {
        mechanism: mechanism.to_string(),
        user: authn_id.to_string(),
        password: None,
        authzid: Some(authz_id.to_string()),
        verified: true,
    };
    Some(ask(policy.clone(), facts, meta, request).await)
}

/// One round of a mechanism the script implements, as the policy answers it.
pub(crate) enum ScriptRound {
    /// Send these bytes in a `334` and run the next round with the answer.
    Challenge(Vec<u8>),
    /// The exchange is over.
    Finished(Outcome),
}

/// One round of a mechanism the script implements (`portcullis.mechanism`):
/// a challenge to send, or the verdict. A script that no longer declares
/// the mechanism (after a reload) defers.
pub(crate) async fn script_step(
    policy: &Arc<Policy>,
    facts: &ConnectionFacts,
    meta: &ConnMeta,
    mechanism: &str,
    step: u32,
    response: Option<Secret>,
) -> ScriptRound {
    let request = MechanismStep {
        mechanism: mechanism.to_string(),
        step,
        response,
    };
    let verdict = run(
        policy.clone(),
        facts,
        meta,
        mechanism,
        "",
        move |p, facts, meta| p.mechanism_step(&request, facts, meta),
    );
    match verdict.await {
        Some(Verdict::Challenge(challenge)) => ScriptRound::Challenge(challenge),
        Some(verdict) => ScriptRound::Finished(outcome(verdict, facts, mechanism, "")),
        None => ScriptRound::Finished(Outcome::Deferred { reply: None }),
    }
}

/// Runs the hook on the blocking pool, bounded, and maps its verdict.
async fn ask(
    policy: Arc<Policy>,
    facts: &ConnectionFacts,
    meta: &ConnMeta,
    request: AuthRequest,
) -> Outcome {
    let (mechanism, user) = (request.mechanism.clone(), request.user.clone());
    let verdict = run(
        policy,
        facts,
        meta,
        &mechanism,
        &user,
        move |p, facts, meta| p.authenticate(&request, facts, meta),
    );
    match verdict.await {
        Some(verdict) => outcome(verdict, facts, &mechanism, &user),
        None => Outcome::Deferred { reply: None },
    }
}

/// Calls `hook` on the blocking pool; `None` (logged) when it did not
/// answer within the hook timeout and a little grace.
async fn run(
    policy: Arc<Policy>,
    facts: &ConnectionFacts,
    meta: &ConnMeta,
    mechanism: &str,
    user: &str,
    hook: impl FnOnce(&Policy, &ConnFacts, &ConnMeta) -> Verdict + Send + 'static,
) -> Option<Verdict> {
    let conn = conn_facts(facts);
    let meta = meta.clone();
    let limit = policy.hook_timeout() + GRACE;
    let task = tokio::task::spawn_blocking(move || hook(&policy, &conn, &meta));
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(verdict)) => Some(verdict),
        Ok(Err(_)) | Err(_) => {
            let client = facts.nearest_ip();
            tracing::error!(%client, %mechanism, %user, result = "deferred", "auth: policy hook did not answer in time");
            None
        }
    }
}

/// The stage's outcome for a verdict, logged (the audit line of a
/// decision the script made).
fn outcome(verdict: Verdict, facts: &ConnectionFacts, mechanism: &str, user: &str) -> Outcome {
    let client = facts.nearest_ip();
    match verdict {
        Verdict::Accept {
            authn_id, authz_id, ..
        } => {
            tracing::info!(%client, %mechanism, user = %authn_id, authz = %authz_id, result = "accepted", by = "policy", "auth");
            Outcome::Accepted { authn_id, authz_id }
        }
        Verdict::Reject {
            reply,
            disconnect,
            reason,
        } => {
            tracing::warn!(%client, %mechanism, %user, result = "rejected", %reason, disconnect, by = "policy", "auth");
            match disconnect {
                true => Outcome::Disconnect { reply },
                false => Outcome::Rejected { reply: Some(reply) },
            }
        }
        Verdict::Defer {
            reply,
            disconnect,
            reason,
        } => {
            tracing::warn!(%client, %mechanism, %user, result = "deferred", %reason, disconnect, by = "policy", "auth");
            match disconnect {
                true => Outcome::Disconnect { reply },
                false => Outcome::Deferred { reply: Some(reply) },
            }
        }
        Verdict::ScriptError { reply, reason } => {
            tracing::warn!(%client, %mechanism, %user, result = "script error", %reason, by = "policy", "auth");
            // The client sees the 454, but the attempt is a failure: it
            // waits the failure delay and is counted (see `defence`), so a
            // script that errors for unknown users is no user oracle.
            Outcome::Rejected { reply: Some(reply) }
        }
        _ => Outcome::Deferred { reply: None },
    }
}

/// The connection as hooks see it. Behind a trusted XCLIENT proxy the
/// client is the one the proxy named, as the brute-force defence counts it.
fn conn_facts(facts: &ConnectionFacts) -> ConnFacts {
    ConnFacts {
        client: facts.client,
        server: facts.local,
        helo: facts.helo.clone(),
        listener: facts.listener.clone(),
        proxy: facts.proxy,
        protocol: facts.protocol.to_string(),
        tls: facts.tls.as_ref().map(|t| TlsFacts {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
            client_certificate: t.client_certificate.as_ref().map(|c| CertFacts {
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                sha256: c.sha256.clone(),
            }),
        }),
    }
}

/// `smtp_server_message_received`, before the spool write: `Some(reply)`
/// when the script refuses the message (nothing is stored then). A hook
/// that does not answer in time defers (`451`).
pub(crate) async fn message_received(
    policy: &Arc<Policy>,
    facts: &ConnectionFacts,
    meta: &ConnMeta,
    message: &Message,
) -> Option<Reply> {
    if !policy.checks_messages() {
        return None;
    }
    let policy = policy.clone();
    let identity = message.identity.as_ref();
    // A user a trusted proxy vouched for (and the policy let in) is the
    // message's identity as one who used AUTH would be.
    let xclient_login = match identity {
        Some(_) => None,
        None => message.xclient.as_ref().and_then(|x| x.login.clone()),
    };
    let message_facts = MessageFacts {
        mail_from: message.envelope.mail_from.as_str().to_string(),
        rcpt_to: message.envelope.rcpt_to.clone(),
        size: message.data.len(),
        helo: message.helo.clone(),
        authn_id: identity
            .map(|i| i.authn_id.clone())
            .or_else(|| xclient_login.clone()),
        authz_id: identity
            .map(|i| i.authz_id.clone())
            .or_else(|| xclient_login.clone()),
        mechanism: identity
            .map(|i| i.mechanism.name().to_string())
            .or_else(|| xclient_login.as_ref().map(|_| XCLIENT.to_string())),
        user_data: meta.user_data(),
    };
    let conn = conn_facts(facts);
    let meta = meta.clone();
    let limit = policy.hook_timeout() + GRACE;
    let task =
        tokio::task::spawn_blocking(move || policy.message_received(&message_facts, &conn, &meta));
    let client = facts.nearest_ip();
    let user = identity.map(|i| i.authn_id.as_str()).unwrap_or_default();
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(MessageVerdict::Refuse { reply, reason })) => {
            tracing::warn!(%client, %user, reply = reply.code(), %reason, by = "policy", "message refused");
            Some(reply)
        }
        Ok(Ok(_)) => None,
        Ok(Err(_)) | Err(_) => {
            tracing::error!(%client, %user, "message: policy hook did not answer in time; deferring");
            Some(Reply::message_deferred_by_policy())
        }
    }
}

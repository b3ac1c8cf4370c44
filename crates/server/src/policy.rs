//! AUTH decided by the Lua policy (`portcullis-lua`), when its script hooks
//! the mechanism; otherwise [`crate::effects::authenticate`] asks the store.
//!
//! The hook runs on the blocking pool (it may wait on SQLite or Vault), and
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
use portcullis_session::{AuthOutcome, Message, ScriptStepOutcome, Session};

use crate::connection::Peer;
use crate::Shared;

/// Extra wait beyond the hook timeout before the server stops waiting.
const GRACE: Duration = Duration::from_millis(250);

/// `None` when the policy does not decide this attempt. A script decides
/// only where it sees the secret itself (PLAIN and LOGIN carry the
/// password). CRAM-MD5, SCRAM and bearer tokens carry proofs only our own
/// verification can check: handing them to a script that answers "accept"
/// for a user name would let anyone in, so those always go to the store
/// (and then, if accepted, to [`review_verified`]).
pub(crate) async fn authenticate(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    mechanism: Mechanism,
    credentials: &Credentials,
) -> Option<AuthOutcome> {
    let policy = shared.policy.as_ref()?.clone();
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
    Some(ask(policy, peer, session, request).await)
}

/// After our own verification accepted a proof the script cannot see
/// (CRAM-MD5, SCRAM, a token, a client certificate), `smtp_server_auth`
/// is asked with `auth.verified = true` and the verified identity. It may
/// refuse, or accept with user data; it is never asked about a failed
/// verification, so its accept cannot let a wrong proof in. `None` when
/// the script does not review (the store's verdict stands).
pub(crate) async fn review_verified(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    mechanism: Mechanism,
    verified: &AuthOutcome,
) -> Option<AuthOutcome> {
    let policy = shared.policy.as_ref()?.clone();
    let AuthOutcome::Accepted { authn_id, authz_id } = verified else {
        return None;
    };
    if !policy.reviews_verified() {
        return None;
    }
    let request = AuthRequest {
        mechanism: mechanism.name().to_string(),
        user: authn_id.clone(),
        password: None,
        authzid: Some(authz_id.clone()),
        verified: true,
    };
    Some(ask(policy, peer, session, request).await)
}

/// The mechanism name hooks see for a user a trusted proxy vouched for.
pub(crate) const XCLIENT: &str = "XCLIENT";

/// A trusted proxy's `XCLIENT LOGIN=`: the general hook is asked as for a
/// proof our own verification accepted (`auth.verified = true`, mechanism
/// `XCLIENT`, no password), with `conn.client_ip` the client the proxy
/// named and `conn.proxy_ip` the proxy. The proxy vouches that the user
/// authenticated; whether that user may send here is still the policy's
/// call, as for every other mechanism. `None` when no script reviews
/// logins (the proxy's word stands, as without a policy).
pub(crate) async fn xclient_login(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    login: &str,
) -> Option<AuthOutcome> {
    let policy = shared.policy.as_ref()?.clone();
    if !policy.reviews_verified() {
        return None;
    }
    let request = AuthRequest {
        mechanism: XCLIENT.to_string(),
        user: login.to_string(),
        password: None,
        authzid: Some(login.to_string()),
        verified: true,
    };
    Some(ask(policy, peer, session, request).await)
}

/// One round of a mechanism the script implements (`portcullis.mechanism`):
/// a challenge to send, or the verdict. A script that no longer declares
/// the mechanism (after a reload) defers.
pub(crate) async fn script_step(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    mechanism: String,
    step: u32,
    response: Option<Secret>,
) -> ScriptStepOutcome {
    let Some(policy) = shared.policy.clone() else {
        // Invariant: script mechanisms are offered only with a policy.
        return ScriptStepOutcome::Finished(AuthOutcome::TemporaryFailure { reply: None });
    };
    let request = MechanismStep {
        mechanism: mechanism.clone(),
        step,
        response,
    };
    let verdict = run(
        policy,
        peer,
        session,
        &mechanism,
        "",
        move |p, facts, meta| p.mechanism_step(&request, facts, meta),
    );
    match verdict.await {
        Some(Verdict::Challenge(challenge)) => ScriptStepOutcome::Challenge(challenge),
        Some(verdict) => ScriptStepOutcome::Finished(outcome(verdict, peer, &mechanism, "")),
        None => ScriptStepOutcome::Finished(AuthOutcome::TemporaryFailure { reply: None }),
    }
}

/// Runs the hook on the blocking pool, bounded, and maps its verdict.
async fn ask(
    policy: Arc<Policy>,
    peer: &Peer,
    session: &Session,
    request: AuthRequest,
) -> AuthOutcome {
    let (mechanism, user) = (request.mechanism.clone(), request.user.clone());
    let verdict = run(
        policy,
        peer,
        session,
        &mechanism,
        &user,
        move |p, facts, meta| p.authenticate(&request, facts, meta),
    );
    match verdict.await {
        Some(verdict) => outcome(verdict, peer, &mechanism, &user),
        None => AuthOutcome::TemporaryFailure { reply: None },
    }
}

/// Calls `hook` on the blocking pool; `None` (logged) when it did not
/// answer within the hook timeout and a little grace.
async fn run(
    policy: Arc<Policy>,
    peer: &Peer,
    session: &Session,
    mechanism: &str,
    user: &str,
    hook: impl FnOnce(&Policy, &ConnFacts, &ConnMeta) -> Verdict + Send + 'static,
) -> Option<Verdict> {
    let facts = conn_facts(peer, session);
    let meta = peer.meta.clone();
    let limit = policy.hook_timeout() + GRACE;
    let task = tokio::task::spawn_blocking(move || hook(&policy, &facts, &meta));
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(verdict)) => Some(verdict),
        Ok(Err(_)) | Err(_) => {
            let client = peer.client.ip();
            tracing::error!(%client, %mechanism, %user, result = "deferred", "auth: policy hook did not answer in time");
            None
        }
    }
}

/// The session's outcome for a verdict, logged.
fn outcome(verdict: Verdict, peer: &Peer, mechanism: &str, user: &str) -> AuthOutcome {
    let client = peer.client.ip();
    match verdict {
        Verdict::Accept {
            authn_id, authz_id, ..
        } => {
            tracing::info!(%client, %mechanism, user = %authn_id, authz = %authz_id, result = "accepted", by = "policy", "auth");
            AuthOutcome::Accepted { authn_id, authz_id }
        }
        Verdict::Reject {
            reply,
            disconnect,
            oauth_challenge,
            reason,
        } => {
            tracing::warn!(%client, %mechanism, %user, result = "rejected", %reason, disconnect, by = "policy", "auth");
            match disconnect {
                true => AuthOutcome::Disconnect { reply },
                false => AuthOutcome::Rejected {
                    reply: Some(reply),
                    challenge: oauth_challenge,
                },
            }
        }
        Verdict::Defer {
            reply,
            disconnect,
            reason,
        } => {
            tracing::warn!(%client, %mechanism, %user, result = "deferred", %reason, disconnect, by = "policy", "auth");
            match disconnect {
                true => AuthOutcome::Disconnect { reply },
                false => AuthOutcome::TemporaryFailure { reply: Some(reply) },
            }
        }
        Verdict::ScriptError { reply, reason } => {
            tracing::warn!(%client, %mechanism, %user, result = "script error", %reason, by = "policy", "auth");
            // The client sees the 454, but the attempt is a failure: it
            // waits the failure delay and is counted (see `defence`), so a
            // script that errors for unknown users is no user oracle.
            AuthOutcome::Rejected {
                reply: Some(reply),
                challenge: None,
            }
        }
        _ => AuthOutcome::TemporaryFailure { reply: None },
    }
}

/// The connection as hooks see it. Behind a trusted XCLIENT proxy the
/// client is the one the proxy named, as the brute-force defence counts it.
pub(crate) fn conn_facts(peer: &Peer, session: &Session) -> ConnFacts {
    let client_ip = crate::defence::client_ip(peer, session);
    let client_port = match client_ip == peer.client.ip() {
        true => peer.client.port(),
        false => session
            .xclient()
            .and_then(|x| x.port.as_deref()?.parse().ok())
            .unwrap_or(0),
    };
    ConnFacts {
        client: std::net::SocketAddr::new(client_ip, client_port),
        server: peer.server,
        helo: session.helo_name().map(str::to_string),
        listener: peer.listener.clone(),
        proxy: (client_ip != peer.client.ip()).then_some(peer.client),
        protocol: session.protocol().to_string(),

        tls: session.tls().map(|t| TlsFacts {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
            key_size: cipher_key_size(&t.cipher),
            client_certificate: t.client_certificate.as_ref().map(|c| CertFacts {
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                sha256: c.sha256.clone(),
                md5: c.details.md5.clone(),
                sha1: c.details.sha1.clone(),
                sha512: c.details.sha512.clone(),
                serial: c.details.serial.clone(),
                not_before: c.details.not_before.clone(),
                not_after: c.details.not_after.clone(),
                subject_alt_names: c.details.subject_alt_names.clone(),
                key_algorithm: c.details.key_algorithm.clone(),
                key_bits: c.details.key_bits,
                verify_error: c.details.verify_error.clone(),
            }),
        }),
    }
}

/// The key size in bits of a rustls cipher suite name.
fn cipher_key_size(cipher: &str) -> u32 {
    if cipher.contains("AES_128") {
        128
    } else if cipher.contains("AES_256") || cipher.contains("CHACHA20") {
        256
    } else {
        0
    }
}

/// `smtp_server_message_received`, before the spool write: `Some(reply)`
/// when the script refuses the message (nothing is stored then). A hook
/// that does not answer in time defers (`451`).
pub(crate) async fn message_received(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    message: &Message,
) -> Option<Reply> {
    let policy = shared.policy.as_ref()?.clone();
    if !policy.checks_messages() {
        return None;
    }
    let identity = message.identity.as_ref();
    // A user a trusted proxy vouched for (and the policy let in) is the
    // message's identity as one who used AUTH would be.
    let xclient_login = match identity {
        Some(_) => None,
        None => message.xclient.as_ref().and_then(|x| x.login.clone()),
    };
    let facts = MessageFacts {
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
        user_data: peer.meta.user_data(),
    };
    let conn = conn_facts(peer, session);
    let meta = peer.meta.clone();
    let limit = policy.hook_timeout() + GRACE;
    let task = tokio::task::spawn_blocking(move || policy.message_received(&facts, &conn, &meta));
    let client = peer.client.ip();
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

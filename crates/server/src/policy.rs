//! AUTH decided by the Lua policy (`portcullis-lua`), when its script hooks
//! the mechanism; otherwise [`crate::effects::authenticate`] asks the store.
//!
//! The hook runs on the blocking pool (it may wait on SQLite or Vault), and
//! the wait for it is bounded a little beyond the script's own deadline, so
//! even a hook stuck in a blocking call answers `454` in time.

use std::time::Duration;

use portcullis_lua::{AuthRequest, ConnFacts, TlsFacts, Verdict};
use portcullis_sasl::{Credentials, Mechanism};
use portcullis_session::{AuthOutcome, Session};

use crate::connection::Peer;
use crate::Shared;

/// Extra wait beyond the hook timeout before the server stops waiting.
const GRACE: Duration = Duration::from_millis(250);

/// `None` when the policy does not decide this attempt. A script decides
/// only where it sees the secret itself (PLAIN and LOGIN carry the
/// password). CRAM-MD5, SCRAM and bearer tokens carry proofs only our own
/// verification can check: handing them to a script that answers "accept"
/// for a user name would let anyone in, so those always go to the store.
pub(crate) async fn authenticate(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    mechanism: Mechanism,
    credentials: &Credentials,
) -> Option<AuthOutcome> {
    let policy = shared.policy.as_ref()?.clone();
    let Credentials::Password { .. } = credentials else {
        return None;
    };
    if !policy.decides(mechanism.name()) {
        return None;
    }
    let request = AuthRequest {
        mechanism: mechanism.name().to_string(),
        user: credentials.authcid().to_string(),
        password: match credentials {
            Credentials::Password { password, .. } => Some(password.clone()),
            _ => None,
        },
        authzid: credentials.authzid().map(str::to_string),
    };
    let facts = ConnFacts {
        client: peer.client,
        server: peer.server,
        helo: session.helo_name().map(str::to_string),
        listener: peer.listener.clone(),
        tls: session.tls().map(|t| TlsFacts {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
        }),
    };
    let meta = peer.meta.clone();
    let limit = policy.hook_timeout() + GRACE;
    let task = tokio::task::spawn_blocking(move || policy.authenticate(&request, &facts, &meta));
    let client = peer.client.ip();
    let user = credentials.authcid();
    let verdict = match tokio::time::timeout(limit, task).await {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(_)) | Err(_) => {
            tracing::error!(%client, %mechanism, %user, result = "deferred", "auth: policy hook did not answer in time");
            return Some(AuthOutcome::TemporaryFailure { reply: None });
        }
    };
    Some(match verdict {
        Verdict::Accept {
            authn_id, authz_id, ..
        } => {
            tracing::info!(%client, %mechanism, user = %authn_id, authz = %authz_id, result = "accepted", by = "policy", "auth");
            AuthOutcome::Accepted { authn_id, authz_id }
        }
        Verdict::Reject {
            reply,
            disconnect,
            reason,
        } => {
            tracing::warn!(%client, %mechanism, %user, result = "rejected", %reason, disconnect, by = "policy", "auth");
            match disconnect {
                true => AuthOutcome::Disconnect { reply },
                false => AuthOutcome::Rejected { reply: Some(reply) },
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
        _ => AuthOutcome::TemporaryFailure { reply: None },
    })
}

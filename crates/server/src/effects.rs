//! Carrying out the session's effects that leave the process: checking
//! credentials and spooling messages. A credential check that may block
//! (store, slow hash) runs on tokio's blocking pool; a repeated login whose
//! record and password are cached is decided in place. Spooling awaits the
//! journal writer's group fsync.

use portcullis_auth::{Decision, ScramUpgrade};
use portcullis_proto::received::{received_header, ReceivedFields};
use portcullis_sasl::{Credentials, Mechanism, ScramHash};
use portcullis_session::{AuthOutcome, Message, ScramLookup, Session, SpoolOutcome, Xclient};
use portcullis_spool::{AuthMeta, ClientCertMeta, MessageMeta, TlsMeta, XclientMeta};
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::OffsetDateTime;

use crate::connection::Peer;
use crate::store_calls::StoreCallError;
use crate::{telemetry, Shared};

/// Checks credentials and logs one line with the exact reason. The password
/// never reaches the log: only the user name, mechanism and verdict do.
pub(crate) async fn authenticate(
    shared: &Shared,
    peer: &Peer,
    mechanism: Mechanism,
    credentials: Credentials,
) -> AuthOutcome {
    let user = credentials.authcid().to_string();
    let authzid = credentials.authzid().map(str::to_string);
    let authenticator = shared.authenticator.clone();
    let started = std::time::Instant::now();
    let checked = match authenticator.check_cached(&credentials) {
        Some(decision) => Ok((decision, ScramUpgrade::NotNeeded, None)),
        None => check_blocking(shared, authenticator, credentials).await,
    };
    let (decision, upgrade, detail) = checked.unwrap_or_else(|error| {
        let failed = Decision::Unavailable(error.to_string());
        (failed, ScramUpgrade::NotNeeded, None)
    });
    metrics::histogram!(telemetry::AUTH_DURATION).record(started.elapsed().as_secs_f64());
    let result = match &decision {
        Decision::Accepted { .. } => "accepted",
        Decision::Rejected(_) => "rejected",
        Decision::Unavailable(_) => "deferred",
    };
    metrics::counter!(telemetry::AUTH_ATTEMPTS, "mechanism" => mechanism.name(), "result" => result)
        .increment(1);
    let client = peer.client.ip();
    log_scram_upgrade(&user, &upgrade);
    match decision {
        Decision::Accepted { authn_id, authz_id } => {
            tracing::info!(%client, %mechanism, user = %authn_id, authz = %authz_id, result = "accepted", "auth");
            AuthOutcome::Accepted { authn_id, authz_id }
        }
        Decision::Rejected(reason) => {
            // Absent fields are left out of the line, not shown as `None`.
            use tracing::field::display;
            let (authzid, detail) = (authzid.map(display), detail.map(display));
            tracing::warn!(%client, %mechanism, %user, authzid, result = "rejected", %reason, detail, "auth");
            AuthOutcome::Rejected { reply: None }
        }
        Decision::Unavailable(reason) => {
            tracing::error!(%client, %mechanism, %user, result = "deferred", reason = %reason, "auth: store unavailable");
            AuthOutcome::TemporaryFailure { reply: None }
        }
    }
}

/// The full check on the blocking pool: the store may block, and a cold
/// login pays the slow hash, after waiting for a hash slot if need be
/// (hence `run_check` with the authenticator's probe: while hashes run or
/// wait, a check past the store timeout is not a stalled store).
async fn check_blocking(
    shared: &Shared,
    authenticator: portcullis_auth::Authenticator,
    credentials: Credentials,
) -> Result<(Decision, ScramUpgrade, Option<String>), StoreCallError> {
    let probe = authenticator.clone();
    shared
        .store_calls
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
                (decision, upgrade, detail)
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

/// Fetches the SCRAM secrets an exchange needs (fake ones for unknown
/// users, see [`portcullis_auth::Authenticator::scram_secrets`]) and makes
/// the server nonce from the CSPRNG.
pub(crate) async fn lookup_scram(
    shared: &Shared,
    peer: &Peer,
    authcid: String,
    hash: ScramHash,
) -> ScramLookup {
    let authenticator = shared.authenticator.clone();
    let user = authcid.clone();
    let found = shared
        .store_calls
        .run(move || authenticator.scram_secrets(&authcid, hash))
        .await;
    match found {
        Ok(Ok(secrets)) => ScramLookup::Found {
            secrets,
            nonce: rand::random(),
        },
        Ok(Err(error)) => {
            tracing::error!(client = %peer.client.ip(), %user, %error, "auth: store unavailable for SCRAM");
            ScramLookup::Unavailable
        }
        Err(error) => {
            tracing::error!(client = %peer.client.ip(), %user, %error, "auth: store unavailable for SCRAM");
            ScramLookup::Unavailable
        }
    }
}

/// Writes the message durably, trace header first.
pub(crate) async fn spool(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    message: Message,
) -> SpoolOutcome {
    let now = OffsetDateTime::now_utc();
    let date = now.format(&Rfc2822).unwrap_or_default();
    let (client_ip, client_addr, helo) = client_of(peer, &message);
    let tls = message
        .tls
        .as_ref()
        .map(|t| (t.version.as_str(), t.cipher.as_str()));
    let recipients = &message.envelope.rcpt_to;
    let header = received_header(&ReceivedFields {
        helo: &helo,
        client_ip: &client_ip,
        by: &shared.hostname,
        protocol: message.protocol,
        tls,
        id: None,
        for_recipient: (recipients.len() == 1).then(|| recipients[0].as_str()),
        date: &date,
    });
    let mut data = Vec::with_capacity(header.len() + message.data.len());
    data.extend_from_slice(header.as_bytes());
    data.extend_from_slice(&message.data);
    let meta = MessageMeta {
        received_at: now.format(&Rfc3339).unwrap_or_default(),
        mail_from: message.envelope.mail_from.as_str().to_string(),
        rcpt_to: message.envelope.rcpt_to.clone(),
        body: message.envelope.params.body.as_str().to_string(),
        declared_size: message.envelope.params.size,
        helo: Some(helo.clone()),
        client_addr,
        server_addr: peer.server.map(|a| a.to_string()).unwrap_or_default(),
        listener: peer.listener.clone(),
        tls: session.tls().map(|t| TlsMeta {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
            client_certificate: t.client_certificate.as_ref().map(|c| ClientCertMeta {
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                sha256: c.sha256.clone(),
            }),
        }),
        auth: auth_meta(peer, &message),
        mail_auth_param: message.envelope.params.auth.clone(),
        xclient: message.xclient.as_ref().map(|x| xclient_meta(peer, x)),
        meta: conn_meta(shared, peer, &message),
        held: crate::containment::held(shared, peer, session),
    };
    let (rcpt_count, size, declared) =
        (meta.rcpt_to.len(), data.len(), message.envelope.params.size);
    let spool = shared.spool.clone();
    let started = std::time::Instant::now();
    let stored = spool.store_async(&meta, data).await;
    metrics::histogram!(telemetry::SPOOL_WRITE_DURATION).record(started.elapsed().as_secs_f64());
    match stored {
        Ok(id) => {
            tracing::info!(client = %peer.client.ip(), %id, recipients = recipients.len(), "message spooled");
            metrics::counter!(telemetry::MESSAGES_SPOOLED).increment(1);
            if let Some(reason) = &meta.held {
                tracing::warn!(client = %peer.client.ip(), %id, %reason, "message held");
            }
            crate::containment::message_spooled(shared, peer, session, rcpt_count, size, declared);
            SpoolOutcome::Stored { id: id.to_string() }
        }
        Err(error) => {
            tracing::error!(%error, "spool write failed; answering 451");
            metrics::counter!(telemetry::SPOOL_FAILURES).increment(1);
            SpoolOutcome::Failed
        }
    }
}

/// The client as the trace header and spool see it: `(ip, ip:port, helo)`
/// of the client a trusted proxy named with XCLIENT (each fact it did not
/// give falls back to the connection's), else of the TCP peer.
fn client_of(peer: &Peer, message: &Message) -> (String, String, String) {
    let x = message.xclient.as_ref();
    let ip = x
        .and_then(|x| x.addr.clone())
        .unwrap_or_else(|| peer.client.ip().to_string());
    let port = x
        .and_then(|x| x.port.clone())
        .unwrap_or_else(|| peer.client.port().to_string());
    let addr = match ip.contains(':') {
        true => format!("[{ip}]:{port}"),
        false => format!("{ip}:{port}"),
    };
    let helo = x
        .and_then(|x| x.helo.clone())
        .unwrap_or_else(|| message.helo.clone());
    (ip, addr, helo)
}

/// Who submitted: the SASL identity, or the login a trusted proxy vouched
/// for with `XCLIENT LOGIN=` (mechanism `XCLIENT`).
fn auth_meta(peer: &Peer, message: &Message) -> Option<AuthMeta> {
    let (authn_id, authz_id, mechanism) = match (&message.identity, &message.xclient) {
        (Some(i), _) => (&i.authn_id, &i.authz_id, i.mechanism.name()),
        (
            None,
            Some(Xclient {
                login: Some(login), ..
            }),
        ) => (login, login, "XCLIENT"),
        _ => return None,
    };
    Some(AuthMeta {
        authn_id: authn_id.clone(),
        authz_id: authz_id.clone(),
        mechanism: mechanism.to_string(),
        user_data: peer.meta.user_data(),
    })
}

/// The connection metadata the policy's hooks shared, copied into the
/// message as KumoMTA does; empty without a policy (no script could read
/// or set it). `reception_protocol` is the message's own.
fn conn_meta(
    shared: &Shared,
    peer: &Peer,
    message: &Message,
) -> serde_json::Map<String, serde_json::Value> {
    if shared.policy.is_none() {
        return serde_json::Map::new();
    }
    let mut meta = peer.meta.values();
    meta.insert(
        "reception_protocol".into(),
        message.protocol.to_string().into(),
    );
    meta
}

fn xclient_meta(peer: &Peer, x: &Xclient) -> XclientMeta {
    XclientMeta {
        proxy_addr: peer.client.to_string(),
        name: x.name.clone(),
        proto: x.proto.clone(),
        helo: x.helo.clone(),
        login: x.login.clone(),
        dest_addr: x.dest_addr.clone(),
        dest_port: x.dest_port.clone(),
    }
}

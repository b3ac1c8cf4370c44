//! Writing an accepted message to the spool: the `Received:` trace header
//! and the metadata (who, how, over what TLS, what the policy's hooks
//! shared), then [`Spool::store_async`], which awaits the journal writer's
//! group fsync.

use std::borrow::Cow;

use portcullis_proto::received::{received_header, ReceivedFields};
use portcullis_session::{Identity, Message, SpoolOutcome, Xclient};
use portcullis_spool::{AuthMeta, ClientCertMeta, MessageMeta, Spool, TlsMeta, XclientMeta};
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::OffsetDateTime;

use crate::peer::Peer;
use crate::telemetry;

/// Where and how messages are written.
pub(crate) struct Spooler {
    pub spool: std::sync::Arc<Spool>,
    /// Our name in the trace header.
    pub hostname: String,
    /// Whether a policy script runs (its connection metadata is kept).
    pub with_policy: bool,
}

/// Writes the message durably, trace header first.
pub(crate) async fn spool(
    spooler: &Spooler,
    peer: &Peer,
    mut message: Message,
    held: Option<String>,
    receiving: Option<portcullis_spool::Receiving>,
) -> SpoolOutcome {
    let now = OffsetDateTime::now_utc();
    let date = now.format(&Rfc2822).unwrap_or_default();
    let (client_ip, client_addr, helo) = client_of(peer, &mut message);
    let tls = message
        .tls
        .as_ref()
        .map(|t| (t.version.as_str(), t.cipher.as_str()));
    let recipients = &message.envelope.rcpt_to;
    let header = received_header(&ReceivedFields {
        helo: &helo,
        client_ip: &client_ip,
        by: &spooler.hostname,
        protocol: message.protocol,
        tls,
        id: None,
        for_recipient: (recipients.len() == 1).then(|| recipients[0].as_str()),
        date: &date,
    });
    let mut data = Vec::with_capacity(header.len() + message.data.len());
    data.extend_from_slice(header.as_bytes());
    data.extend_from_slice(&message.data);
    // What the metadata needs from the message is moved out of it, not
    // copied: it is dropped once stored.
    let recipients = message.envelope.rcpt_to.len();
    let dsn = crate::dsn_meta::of(&message.envelope);
    let meta = MessageMeta {
        received_at: now.format(&Rfc3339).unwrap_or_default(),
        mail_from: message.envelope.mail_from.as_str().to_string(),
        rcpt_to: std::mem::take(&mut message.envelope.rcpt_to),
        body: message.envelope.params.body.as_str().to_string(),
        declared_size: message.envelope.params.size,
        helo: Some(helo),
        client_addr,
        server_addr: peer.texts().local.clone(),
        listener: peer.listener.clone(),
        tls: message.tls.take().map(|t| TlsMeta {
            version: t.version,
            cipher: t.cipher,
            client_certificate: t.client_certificate.map(|c| ClientCertMeta {
                verified: c.details.verify_error.is_none(),
                subject: c.subject,
                issuer: c.issuer,
                sha256: c.sha256,
            }),
        }),
        auth: auth_meta(peer, message.identity.take(), message.xclient.as_ref()),
        mail_auth_param: message.envelope.params.auth.clone(),
        xclient: message.xclient.as_ref().map(|x| xclient_meta(peer, x)),
        meta: conn_meta(spooler.with_policy, peer, &message),
        held,
        smtputf8: message.envelope.params.smtputf8,
        dsn,
    };
    let spool = spooler.spool.clone();
    let started = std::time::Instant::now();
    let stored = spool.store_async(&meta, data);
    // The message is with the writer now: if it was waiting for this body,
    // it need not any more (the spool's gather.rs).
    drop(receiving);
    let stored = stored.await;
    metrics::histogram!(telemetry::SPOOL_WRITE_DURATION).record(started.elapsed().as_secs_f64());
    match stored {
        Ok(id) => {
            tracing::info!(client = %peer.client.ip(), %id, recipients, "message spooled");
            metrics::counter!(telemetry::MESSAGES_SPOOLED).increment(1);
            if let Some(reason) = &meta.held {
                tracing::warn!(client = %peer.client.ip(), %id, %reason, "message held");
            }
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
///
/// The session's own HELO name is moved out of `message` (it is dropped
/// once stored), and the TCP peer's address borrowed: no copy of either
/// per message.
fn client_of<'a>(peer: &'a Peer, message: &mut Message) -> (Cow<'a, str>, String, String) {
    let x = message.xclient.as_ref();
    let helo = match x.and_then(|x| x.helo.clone()) {
        Some(helo) => helo,
        None => std::mem::take(&mut message.helo),
    };
    let x = message.xclient.as_ref();
    if x.is_none_or(|x| x.addr.is_none() && x.port.is_none()) {
        let texts = peer.texts();
        return (Cow::Borrowed(&texts.ip), texts.addr.clone(), helo);
    }
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
    (Cow::Owned(ip), addr, helo)
}

/// Who submitted: the SASL identity, or the login a trusted proxy vouched
/// for with `XCLIENT LOGIN=` (mechanism `XCLIENT`).
fn auth_meta(
    peer: &Peer,
    identity: Option<Identity>,
    xclient: Option<&Xclient>,
) -> Option<AuthMeta> {
    let (authn_id, authz_id, mechanism, credential) = match (identity, xclient) {
        (Some(i), _) => (
            i.authn_id,
            i.authz_id,
            i.mechanism.name().to_string(),
            i.credential.map(|c| portcullis_spool::CredentialMeta {
                id: c.id,
                label: c.label,
            }),
        ),
        (
            None,
            Some(Xclient {
                login: Some(login), ..
            }),
        ) => (login.clone(), login.clone(), "XCLIENT".to_string(), None),
        _ => return None,
    };
    Some(AuthMeta {
        authn_id,
        authz_id,
        mechanism,
        user_data: peer.meta.user_data(),
        credential,
    })
}

/// The connection metadata the policy's hooks shared, copied into the
/// message as KumoMTA does; empty without a policy (no script could read
/// or set it). `reception_protocol` is the message's own.
fn conn_meta(
    with_policy: bool,
    peer: &Peer,
    message: &Message,
) -> serde_json::Map<String, serde_json::Value> {
    if !with_policy {
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

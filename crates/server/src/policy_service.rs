//! Postfix's SMTP access policy delegation (`check_policy_service`): for
//! each recipient (or whichever stage the site hooks it in), Postfix sends
//! `name=value` lines and an empty line; we answer `action=...` and an
//! empty line, on a connection Postfix keeps open for many requests.
//!
//! What we answer for a client Postfix authenticated through us
//! (`sasl_username`): `DEFER_IF_PERMIT` while its address
//! (`client_address`) is banned (a ban made after it logged in), else what
//! the sending limits say ([`SendingLimits`]: per-identity rates from the
//! containment work implement it; until they are configured nothing is
//! limited); `DUNNO` for everyone else, so the site's own restrictions
//! decide. Never `OK`: we only ever take away.
//!
//! The parsing is pure ([`PolicyRequest::parse_line`], [`Action::to_wire`])
//! and bounded (line length, attributes per request); a request Postfix
//! could not have sent closes the connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use portcullis_config::auth_listener::AuthListener;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::context::Shared;
use crate::mta_auth::{accept, peer_trusted, AuthSocket, Stream};
use crate::sending_limits::MtaVerdict;
use crate::telemetry;

/// Attributes in one request (Postfix sends about 30).
const MAX_ATTRIBUTES: usize = 128;

/// Bytes of one request, all attributes together (Postfix's are well
/// under 4 KiB), so a connection holds at most this much.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What one policy request asks about.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PolicyRequest {
    attributes: HashMap<String, String>,
    bytes: usize,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyError {
    #[error("attribute line without '='")]
    NoEquals,
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("attribute line is not UTF-8")]
    NotText,
    #[error("request longer than {MAX_REQUEST_BYTES} bytes")]
    TooLong,
}

impl PolicyRequest {
    /// Takes one line (without its LF); `Ok(true)` when it was the empty
    /// line that ends the request.
    pub(crate) fn parse_line(&mut self, line: &[u8]) -> Result<bool, PolicyError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(true);
        }
        let line = std::str::from_utf8(line).map_err(|_| PolicyError::NotText)?;
        let (name, value) = line.split_once('=').ok_or(PolicyError::NoEquals)?;
        self.bytes += line.len();
        if self.bytes > MAX_REQUEST_BYTES {
            return Err(PolicyError::TooLong);
        }
        if self.attributes.len() >= MAX_ATTRIBUTES && !self.attributes.contains_key(name) {
            return Err(PolicyError::TooManyAttributes);
        }
        self.attributes.insert(name.to_string(), value.to_string());
        Ok(false)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `request=smtpd_access_policy`: the only kind Postfix sends.
    pub(crate) fn is_access_policy(&self) -> bool {
        self.get("request") == Some("smtpd_access_policy")
    }

    /// The login Postfix's SASL accepted, if any.
    pub(crate) fn sasl_username(&self) -> Option<&str> {
        self.get("sasl_username")
    }

    /// The SMTP client's address.
    pub(crate) fn client_address(&self) -> Option<IpAddr> {
        self.get("client_address")?.parse().ok()
    }

    /// Whether this request is the one a message is counted at: `DATA`
    /// (`smtpd_data_restrictions`), where `recipient_count` is known. Only
    /// one stage counts, so a site that also asks at `END-OF-MESSAGE`
    /// does not count each message twice; every stage meets the
    /// identity's answers (suspend, defer, hold).
    pub(crate) fn is_for_a_message(&self) -> bool {
        self.get("protocol_state") == Some("DATA")
    }

    pub(crate) fn recipient_count(&self) -> u64 {
        self.get("recipient_count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn size(&self) -> u64 {
        self.get("size").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// Our answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// No opinion: Postfix goes on with its restrictions.
    Dunno,
    /// Refuse with a 4xx if the restrictions would otherwise accept.
    DeferIfPermit(String),
    /// Refuse with a 5xx.
    Reject(String),
    /// Accept and keep in the hold queue for an operator.
    Hold(String),
}

impl Action {
    /// `action=...` and the empty line that ends the answer. Texts are one
    /// line (any CR or LF would end the answer early).
    pub(crate) fn to_wire(&self) -> String {
        let clean = |text: &str| text.replace(['\r', '\n'], " ");
        match self {
            Action::Dunno => "action=DUNNO\n\n".into(),
            Action::DeferIfPermit(text) => format!("action=DEFER_IF_PERMIT {}\n\n", clean(text)),
            Action::Reject(text) => format!("action=REJECT {}\n\n", clean(text)),
            Action::Hold(text) => format!("action=HOLD {}\n\n", clean(text)),
        }
    }
}

/// What a sending limit decides for one message of an authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendingDecision {
    Allow,
    /// Over a rate: try later (`DEFER_IF_PERMIT`).
    Defer(String),
    /// Suspended or otherwise refused (`REJECT`).
    Reject(String),
    /// Take it, but hold it for review (`HOLD`).
    Hold(String),
}

/// Per-identity sending limits, as the policy service asks them: the user
/// Postfix authenticated, the client, and the message's recipients and
/// size so far.
pub trait SendingLimits: Send + Sync {
    fn check(
        &self,
        user: &str,
        client: Option<IpAddr>,
        recipients: u64,
        size: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = SendingDecision> + Send + '_>>;
}

/// No limits configured: everything is allowed.
pub struct Unlimited;

impl SendingLimits for Unlimited {
    fn check(
        &self,
        _user: &str,
        _client: Option<IpAddr>,
        _recipients: u64,
        _size: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = SendingDecision> + Send + '_>> {
        Box::pin(async { SendingDecision::Allow })
    }
}

/// A bound policy listener.
pub(crate) struct BoundPolicyListener {
    pub config: AuthListener,
    pub connections: Arc<Semaphore>,
    pub limits: Arc<dyn SendingLimits>,
}

/// Accepts until a stop is asked for.
pub(crate) async fn accept_loop(
    socket: AuthSocket,
    listener: Arc<BoundPolicyListener>,
    shared: Arc<Shared>,
) {
    let mut stopping = shared.stopping.clone();
    tracing::info!(listener = %listener.config.name, endpoint = ?listener.config.endpoint, "policy listener (postfix policy delegation)");
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break,
            accepted = accept(&socket) => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "policy listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if !peer_trusted(&listener.config, peer) {
            tracing::warn!(peer = ?peer, listener = %listener.config.name, "policy listener: peer not in trusted networks, closed");
            continue;
        }
        let Ok(permit) = listener.connections.clone().try_acquire_owned() else {
            tracing::warn!(listener = %listener.config.name, "policy listener: connection limit reached");
            metrics::counter!(telemetry::CONNECTIONS_REFUSED).increment(1);
            continue;
        };
        let (listener, shared) = (listener.clone(), shared.clone());
        tokio::spawn(async move {
            match stream {
                Stream::Tcp(tcp) => serve(tcp, peer, &listener, &shared).await,
                Stream::Unix(unix) => serve(unix, peer, &listener, &shared).await,
            }
            drop(permit);
        });
    }
}

/// One Postfix connection: requests one after the other.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    _peer: Option<SocketAddr>,
    listener: &BoundPolicyListener,
    shared: &Shared,
) {
    let mut framer = portcullis_dovecot_auth::Framer::new(listener.config.max_line);
    let mut request = PolicyRequest::default();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let line = match framer.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => {
                match tokio::time::timeout(shared.idle_timeout, stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => framer.push(&buf[..n]),
                    _ => return,
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(listener = %listener.config.name, %error, "policy listener: closing");
                return;
            }
        };
        match request.parse_line(&line) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(error) => {
                tracing::warn!(listener = %listener.config.name, %error, "policy listener: malformed request, closing");
                return;
            }
        }
        let action = decide(&std::mem::take(&mut request), listener, shared).await;
        let written = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.write_all(action.to_wire().as_bytes()),
        )
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
}

/// The answer to one request.
async fn decide(
    request: &PolicyRequest,
    listener: &BoundPolicyListener,
    shared: &Shared,
) -> Action {
    let Some(user) = request
        .sasl_username()
        .filter(|_| request.is_access_policy())
    else {
        return Action::Dunno;
    };
    let client = request.client_address();
    if let Some(ip) = client {
        let limiter = shared.auth.defence().limiter();
        if let Some(ban) = limiter
            .enforced_ban(ip, portcullis_limits::Timestamp::now())
            .await
        {
            tracing::info!(client = %ip, %user, reason = %ban.reason, "policy: address banned since it logged in");
            return Action::DeferIfPermit("4.7.1 Too many failed logins from your address".into());
        }
    }
    // The identity's own answers and limits first (as for a message
    // submitted here), then any limits the embedding program added.
    let ours = shared
        .containment
        .check_for_mta(
            shared.auth.store_calls(),
            user,
            client,
            request.is_for_a_message(),
            request.recipient_count(),
            request.size(),
        )
        .await;
    let decision = match ours {
        MtaVerdict::Allow => {
            listener
                .limits
                .check(user, client, request.recipient_count(), request.size())
                .await
        }
        MtaVerdict::Defer(text) => SendingDecision::Defer(text),
        MtaVerdict::Reject(text) => SendingDecision::Reject(text),
        MtaVerdict::Hold(text) => SendingDecision::Hold(text),
    };
    let action = match decision {
        SendingDecision::Allow => Action::Dunno,
        SendingDecision::Defer(text) => Action::DeferIfPermit(text),
        SendingDecision::Reject(text) => Action::Reject(text),
        SendingDecision::Hold(text) => Action::Hold(text),
    };
    if action != Action::Dunno {
        tracing::info!(?client, %user, ?action, "policy: sending limited");
    }
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[&str]) -> PolicyRequest {
        let mut r = PolicyRequest::default();
        for line in lines {
            assert!(!r.parse_line(line.as_bytes()).unwrap());
        }
        assert!(r.parse_line(b"").unwrap());
        r
    }

    #[test]
    fn parses_what_postfix_sends() {
        let r = request(&[
            "request=smtpd_access_policy",
            "protocol_state=RCPT",
            "client_address=192.0.2.7",
            "sasl_username=alice",
            "recipient_count=3",
            "size=12345",
            "ccert_subject=",
        ]);
        assert!(r.is_access_policy());
        assert_eq!(r.sasl_username(), Some("alice"));
        assert_eq!(r.client_address(), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(r.recipient_count(), 3);
        assert_eq!(r.size(), 12345);
    }

    #[test]
    fn an_empty_sasl_username_is_no_login() {
        let r = request(&["request=smtpd_access_policy", "sasl_username="]);
        assert_eq!(r.sasl_username(), None);
    }

    #[test]
    fn refuses_lines_postfix_never_sends() {
        let mut r = PolicyRequest::default();
        assert_eq!(r.parse_line(b"no equals"), Err(PolicyError::NoEquals));
        assert_eq!(r.parse_line(b"a=\xff"), Err(PolicyError::NotText));
        let mut r = PolicyRequest::default();
        for i in 0..MAX_ATTRIBUTES {
            r.parse_line(format!("a{i}=1").as_bytes()).unwrap();
        }
        assert_eq!(
            r.parse_line(b"one=more"),
            Err(PolicyError::TooManyAttributes)
        );
    }

    #[test]
    fn answers_are_one_line_and_an_empty_one() {
        assert_eq!(Action::Dunno.to_wire(), "action=DUNNO\n\n");
        assert_eq!(
            Action::DeferIfPermit("4.7.1 slow\r\ndown".into()).to_wire(),
            "action=DEFER_IF_PERMIT 4.7.1 slow  down\n\n"
        );
        assert_eq!(
            Action::Reject("5.7.1 suspended".into()).to_wire(),
            "action=REJECT 5.7.1 suspended\n\n"
        );
        assert_eq!(
            Action::Hold("review".into()).to_wire(),
            "action=HOLD review\n\n"
        );
    }
}

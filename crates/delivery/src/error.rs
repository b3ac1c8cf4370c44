//! The one error type of delivery, and the one function that turns an error
//! into what a recipient's fate is: [`DeliveryError::failure`].

use portcullis_proto::EnhancedCode;
use portcullis_spool::SpoolError;

use crate::outcome::Failure;
use crate::reply::{ReplyClass, ServerReply};

/// Enhanced status codes for failures we diagnose ourselves (RFC 3463).
/// They go into DSNs and logs, never onto the wire as our replies.
pub mod status {
    use portcullis_proto::EnhancedCode;
    /// No answer, connection refused, or the connection broke (4.4.1/4.4.2).
    pub const NO_ANSWER: EnhancedCode = EnhancedCode(4, 4, 1);
    pub const BAD_CONNECTION: EnhancedCode = EnhancedCode(4, 4, 2);
    /// Delivery time expired (max age reached).
    pub const EXPIRED: EnhancedCode = EnhancedCode(4, 4, 7);
    /// A protocol error by the next hop.
    pub const PROTOCOL: EnhancedCode = EnhancedCode(4, 5, 0);
    /// TLS could not be set up.
    pub const TLS: EnhancedCode = EnhancedCode(4, 7, 5);
    /// The route must pass the submitter's identity and cannot (4.7.0:
    /// a security or policy status).
    pub const IDENTITY: EnhancedCode = EnhancedCode(4, 7, 0);
    /// A local problem (disk, Maildir).
    pub const LOCAL: EnhancedCode = EnhancedCode(4, 3, 0);
    /// The message needs SMTPUTF8 and the next hop does not offer it
    /// (RFC 6531 §3.6.3).
    pub const NO_SMTPUTF8: EnhancedCode = EnhancedCode(5, 6, 7);
    /// No route matches the recipient.
    pub const NO_ROUTE: EnhancedCode = EnhancedCode(5, 4, 4);
    /// Generic class defaults when a reply carries no enhanced code.
    pub const TRANSIENT: EnhancedCode = EnhancedCode(4, 0, 0);
    pub const PERMANENT: EnhancedCode = EnhancedCode(5, 0, 0);
}

/// Everything that can stop a delivery attempt.
///
/// Who is at fault: `Connect`, `Io`, `Timeout`, `Protocol`, `Rejected` and
/// `TlsNotOffered` are the next hop's (or the network's); `Tls` is the
/// next hop's certificate or our trust settings; `XclientNotOffered` is
/// the next hop's set-up against the route's; `Maildir`, `Spool` and
/// `State` are ours (disk); `NoRoute` and `CaFile` (at start-up) are the
/// configuration's.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("I/O error during {during}: {source}")]
    Io {
        during: &'static str,
        source: std::io::Error,
    },
    #[error("timed out during {during}")]
    Timeout { during: &'static str },
    #[error("protocol error during {during}: {detail}")]
    Protocol {
        during: &'static str,
        detail: String,
    },
    #[error("next hop answered {during} with {}", reply.summary())]
    Rejected {
        during: &'static str,
        reply: ServerReply,
    },
    #[error("the next hop does not offer STARTTLS and the route requires it")]
    TlsNotOffered,
    #[error("TLS with the next hop failed: {0}")]
    Tls(String),
    #[error("refusing to send AUTH credentials without TLS")]
    AuthWithoutTls,
    #[error("the next hop does not offer XCLIENT LOGIN, and the route must pass the submitter's identity with it (identity = \"xclient\")")]
    XclientNotOffered,
    #[error("maildir {path}: {source}")]
    Maildir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("delivery state: {0}")]
    State(#[from] serde_json::Error),
    #[error("no route matches the recipient")]
    NoRoute,
    #[error("the message needs SMTPUTF8 (an internationalised address or header) and the next hop does not offer it")]
    Smtputf8NotOffered,
    #[error("CA file {path}: {detail}")]
    CaFile { path: String, detail: String },
}

impl DeliveryError {
    /// What this error means for each recipient it affects: retried
    /// (transient) or bounced (permanent), with a status and a diagnostic.
    ///
    /// Only a 5xx to MAIL FROM, a missing route and a next hop that cannot
    /// take an internationalised message are permanent. A
    /// rejected greeting, EHLO, STARTTLS or AUTH concerns the connection,
    /// not the message (often our own misconfiguration), so it is retried
    /// rather than bounced.
    pub fn failure(&self) -> Failure {
        let (status, permanent) = match self {
            DeliveryError::Connect { .. } | DeliveryError::Timeout { .. } => {
                (status::NO_ANSWER, false)
            }
            DeliveryError::Io { .. } => (status::BAD_CONNECTION, false),
            DeliveryError::Protocol { .. } => (status::PROTOCOL, false),
            DeliveryError::Rejected { during, reply } => {
                let permanent = *during == "MAIL FROM" && reply.class() == ReplyClass::Permanent;
                return Failure::from_reply(reply, permanent);
            }
            DeliveryError::TlsNotOffered
            | DeliveryError::Tls(_)
            | DeliveryError::AuthWithoutTls => (status::TLS, false),
            DeliveryError::XclientNotOffered => (status::IDENTITY, false),
            DeliveryError::Maildir { .. }
            | DeliveryError::Spool(_)
            | DeliveryError::State(_)
            | DeliveryError::CaFile { .. } => (status::LOCAL, false),
            DeliveryError::NoRoute => (status::NO_ROUTE, true),
            DeliveryError::Smtputf8NotOffered => (status::NO_SMTPUTF8, true),
        };
        Failure {
            permanent,
            status: downgrade(status, permanent),
            diagnostic: format!("x-portcullis; {self}"),
            remote: false,
        }
    }
}

/// Keeps the status class consistent with the decision (4 when retried).
fn downgrade(status: EnhancedCode, permanent: bool) -> EnhancedCode {
    EnhancedCode(if permanent { 5 } else { 4 }, status.1, status.2)
}

//! What the session asks of its driver, and what comes back.

use portcullis_proto::{MailParams, Path, Reply};
use portcullis_sasl::{ChannelBinding, Credentials, Mechanism, ScramHash, ScramSecrets, Secret};

/// Work the session cannot do itself. After returning one, the session waits
/// for the matching `*_finished` / `tls_established` call.
#[derive(Debug)]
pub enum Effect {
    /// Flush the output, drop every unread input byte, and run the TLS
    /// handshake; then call [`crate::Session::tls_established`].
    StartTls,
    /// Check these credentials; then call [`crate::Session::auth_finished`].
    Authenticate {
        mechanism: Mechanism,
        credentials: Credentials,
    },
    /// Fetch the SCRAM secrets of `authcid` for `hash` (fake but stable
    /// ones for a user who does not exist or has none, so that the answer
    /// does not reveal who exists), and a fresh nonce; then call
    /// [`crate::Session::scram_secrets_found`].
    LookupScramSecrets { authcid: String, hash: ScramHash },
    /// Run round `step` (1 for the `AUTH` command) of a mechanism the
    /// policy script implements, with the client's decoded answer; then
    /// call [`crate::Session::script_step_finished`].
    ScriptStep {
        mechanism: String,
        step: u32,
        response: Option<Secret>,
    },
    /// Store the message durably; then call [`crate::Session::spool_finished`].
    Spool(Box<Message>),
    /// A trusted proxy's `XCLIENT LOGIN=` named the user: ask the policy,
    /// give the session that user's sender rule
    /// ([`crate::Session::restrict_senders`]) if senders are checked, then
    /// call [`crate::Session::xclient_login_finished`].
    XclientLogin { login: String },
    /// Flush the output and close the connection.
    Close,
}

/// What the driver does after handing the session an effect's result
/// (the `*_finished` calls): read on, or flush the replies and close.
#[must_use = "a Close must be carried out"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on feeding input.
    Continue,
    /// Flush the output and close the connection.
    Close,
}

/// The negotiated TLS parameters, as the driver reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
    /// What SCRAM -PLUS binds to (RFC 9266, RFC 5929).
    pub channel_binding: ChannelBinding,
    /// The client certificate, when the client sent one and our CA
    /// verified it (an unverified one never gets this far: the handshake
    /// fails).
    pub client_certificate: Option<ClientCertificate>,
}

/// Facts about a verified TLS client certificate, for EXTERNAL, the spool
/// and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// Issuer distinguished name, RFC 4514 style.
    pub issuer: String,
    /// SHA-256 of the DER certificate, colon-separated upper-case hex.
    pub sha256: String,
    /// The user name the listener maps the certificate to (subject CN or
    /// SAN e-mail, as configured); `None` when the certificate lacks that
    /// field, and then EXTERNAL is not offered.
    pub identity: Option<String>,
}

/// The driver's answer to [`Effect::LookupScramSecrets`].
#[derive(Debug)]
pub enum ScramLookup {
    /// The secrets (real or fake) and random bytes from a CSPRNG for the
    /// server nonce.
    Found {
        secrets: ScramSecrets,
        nonce: [u8; 18],
    },
    /// The store could not answer: `454`.
    Unavailable,
}

/// Who the client proved to be, and whom it acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The authentication identity (whose secret was checked).
    pub authn_id: String,
    /// The authorization identity (whom the client acts as); equals
    /// `authn_id` unless the store allowed another.
    pub authz_id: String,
    pub mechanism: AuthMechanism,
}

/// How the client authenticated: a mechanism of ours, or one the policy
/// script implements (its names are not known at compile time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMechanism {
    Sasl(Mechanism),
    Script(String),
}

impl AuthMechanism {
    /// The name advertised in EHLO (`PLAIN`, `X-OTP`).
    pub fn name(&self) -> &str {
        match self {
            AuthMechanism::Sasl(m) => m.name(),
            AuthMechanism::Script(name) => name,
        }
    }
}

impl From<Mechanism> for AuthMechanism {
    fn from(m: Mechanism) -> Self {
        AuthMechanism::Sasl(m)
    }
}

impl PartialEq<Mechanism> for AuthMechanism {
    fn eq(&self, other: &Mechanism) -> bool {
        *self == AuthMechanism::Sasl(*other)
    }
}

impl std::fmt::Display for AuthMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The driver's answer to [`Effect::ScriptStep`].
#[derive(Debug, Clone)]
pub enum ScriptStepOutcome {
    /// Send these bytes in a `334` and run the next round with the answer.
    Challenge(Vec<u8>),
    /// The exchange is over.
    Finished(AuthOutcome),
}

/// The verdict on an [`Effect::Authenticate`].
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    Accepted {
        authn_id: String,
        authz_id: String,
    },
    /// `535 5.7.8` unless `reply` says otherwise.
    Rejected {
        reply: Option<Reply>,
    },
    /// `454 4.7.0` unless `reply` says otherwise.
    TemporaryFailure {
        reply: Option<Reply>,
    },
    /// Policy refused and asked to end the connection: send `reply`, then
    /// close.
    Disconnect {
        reply: Reply,
    },
}

/// The result of an [`Effect::Spool`]. `Refused`: policy refused the
/// message (e.g. a tenant the user may not use); nothing was stored.
#[derive(Debug, Clone)]
pub enum SpoolOutcome {
    Stored { id: String },
    Failed,
    Refused(Reply),
}

/// The envelope of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: Path,
    pub params: MailParams,
    pub rcpt_to: Vec<String>,
}

/// A received message and everything known about how it came.
#[derive(Debug)]
pub struct Message {
    pub envelope: Envelope,
    /// The unstuffed body, as the client sent it (no trace header yet).
    pub data: Vec<u8>,
    /// `ESMTPSA`, `ESMTPA`, `ESMTPS`, `ESMTP` or `SMTP` (RFC 3848).
    pub protocol: &'static str,
    pub helo: String,
    pub tls: Option<TlsInfo>,
    pub identity: Option<Identity>,
    /// What a trusted proxy said about the client (XCLIENT), if anything.
    pub xclient: Option<crate::xclient::Xclient>,
}

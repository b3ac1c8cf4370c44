//! The mechanisms as step machines: each step consumes the exchange and
//! returns either the next challenge (with the exchange that expects the
//! answer) or the finished [`Credentials`].

use crate::scram::{self, AwaitingFinal, ChannelBinding, ScramHash, ScramOutcome, ScramStart};
use crate::{Secret, SecretsRequest, MAX_IDENTITY_LEN, MAX_PASSWORD_LEN};

/// A SASL mechanism this crate implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    /// RFC 7628 bearer token.
    OAuthBearer,
    /// Google's XOAUTH2, the older form of OAUTHBEARER.
    XOAuth2,
    /// RFC 4422 appendix A: the identity of a verified TLS client certificate.
    External,
}

impl Mechanism {
    /// Every mechanism, strongest first (the order of the EHLO keyword).
    pub const ALL: [Mechanism; 10] = [
        Mechanism::External,
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha1,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
    ];

    /// Looks a mechanism up by its registered name, ignoring case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The IANA-registered name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::External => "EXTERNAL",
        }
    }

    /// For the SCRAM family: the hash, and whether this is the -PLUS
    /// (channel-binding) variant.
    pub fn scram(self) -> Option<(ScramHash, bool)> {
        match self {
            Mechanism::ScramSha1 => Some((ScramHash::Sha1, false)),
            Mechanism::ScramSha1Plus => Some((ScramHash::Sha1, true)),
            Mechanism::ScramSha256 => Some((ScramHash::Sha256, false)),
            Mechanism::ScramSha256Plus => Some((ScramHash::Sha256, true)),
            _ => None,
        }
    }

    /// Whether the mechanism binds to the TLS channel (so needs TLS).
    pub fn needs_channel_binding(self) -> bool {
        self.scram().is_some_and(|(_, plus)| plus)
    }

    /// The channel-binding (-PLUS) variant of a SCRAM mechanism.
    pub fn plus_variant(self) -> Option<Mechanism> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(Mechanism::ScramSha1Plus),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(Mechanism::ScramSha256Plus),
            _ => None,
        }
    }

    /// Whether the client sends the password itself (so only over TLS).
    pub fn reveals_password(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }

    /// Whether the client sends a bearer token (OAUTHBEARER, XOAUTH2).
    pub fn uses_bearer_token(self) -> bool {
        matches!(self, Mechanism::OAuthBearer | Mechanism::XOAuth2)
    }

    /// Whether the identity comes from a verified TLS client certificate
    /// (EXTERNAL), so the mechanism is usable only on such a connection.
    pub fn needs_client_certificate(self) -> bool {
        matches!(self, Mechanism::External)
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the client presented, ready to be checked against a store.
/// Non-exhaustive: new mechanisms bring new kinds of proof.
#[derive(Debug)]
#[non_exhaustive]
pub enum Credentials {
    /// PLAIN or LOGIN: the password itself.
    Password {
        authcid: String,
        authzid: Option<String>,
        password: Secret,
    },
    /// CRAM-MD5 (RFC 2195): HMAC-MD5 of our challenge keyed by the password.
    CramMd5 {
        authcid: String,
        challenge: Vec<u8>,
        digest: [u8; 16],
    },
    /// SCRAM (RFC 5802): the proof was checked inside the exchange against
    /// the secrets the driver supplied; this is how it turned out.
    Scram {
        authcid: String,
        authzid: Option<String>,
        hash: ScramHash,
        outcome: ScramOutcome,
    },
    /// OAUTHBEARER or XOAUTH2: a bearer token, and the user it is said to
    /// be for (OAUTHBEARER may leave that to the token).
    Bearer { user: Option<String>, token: Secret },
    /// EXTERNAL: `authcid` is what the verified client certificate maps to
    /// (given by the driver, not the client); `authzid` is the client's.
    External {
        authcid: String,
        authzid: Option<String>,
    },
}

impl Credentials {
    /// The authentication identity: whose secret proves this.
    pub fn authcid(&self) -> &str {
        match self {
            Credentials::Password { authcid, .. }
            | Credentials::CramMd5 { authcid, .. }
            | Credentials::Scram { authcid, .. }
            | Credentials::External { authcid, .. } => authcid,
            Credentials::Bearer { user, .. } => user.as_deref().unwrap_or(""),
        }
    }

    /// The authorization identity asked for, when it differs from the
    /// authentication identity. An empty authzid is reported as `None`.
    pub fn authzid(&self) -> Option<&str> {
        match self {
            Credentials::Password { authzid, .. }
            | Credentials::Scram { authzid, .. }
            | Credentials::External { authzid, .. } => authzid.as_deref(),
            Credentials::CramMd5 { .. } | Credentials::Bearer { .. } => None,
        }
    }

    /// Data to send the client (as a `334`) when the decision refused it,
    /// before `535`: the RFC 7628 error JSON for bearer tokens.
    pub fn failure_data(&self) -> Option<&'static [u8]> {
        match self {
            Credentials::Bearer { .. } => Some(crate::oauth::INVALID_TOKEN_JSON.as_bytes()),
            _ => None,
        }
    }

    /// Data to send the client (as a `334` it answers with an empty line)
    /// once the decision accepted it, before `235`: SCRAM's server
    /// signature, which proves the server knew the user's secrets too.
    pub fn success_data(&self) -> Option<&[u8]> {
        match self {
            Credentials::Scram {
                outcome: ScramOutcome::Verified { server_final },
                ..
            } => Some(server_final),
            _ => None,
        }
    }
}

/// Why an exchange failed: always the client's fault.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    #[error("this mechanism does not take an initial response")]
    InitialResponseNotAllowed,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("a field is longer than we accept")]
    TooLong,
    /// Well-formed, but refused by the mechanism's own rules (a channel
    /// binding downgrade, for instance): `535`, not `501`.
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// The result of one step.
#[derive(Debug)]
pub enum Step {
    /// Send this challenge (`334`); feed the answer to the exchange.
    Challenge(Exchange, Vec<u8>),
    /// The exchange is over; check these credentials.
    Done(Credentials),
    /// SCRAM needs the user's stored secrets to go on: look them up, then
    /// [`SecretsRequest::resume`].
    NeedSecrets(SecretsRequest),
}

/// What an exchange may know about the connection when it starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartContext<'a> {
    /// The CRAM-MD5 challenge (a msg-id the caller made unique, RFC 2195).
    pub unique_challenge: &'a str,
    /// The TLS channel-binding data; `None` without TLS.
    pub channel_binding: Option<&'a ChannelBinding>,
    /// Whether the -PLUS variant of the chosen SCRAM mechanism is offered
    /// on this connection (a client saying `y` is then being downgraded).
    pub plus_offered: bool,
    /// The identity a verified TLS client certificate maps to (EXTERNAL);
    /// `None` without one.
    pub external_identity: Option<&'a str>,
}

/// An exchange that is waiting for the client's next response.
#[derive(Debug)]
pub struct Exchange {
    pub(crate) state: State,
}

#[derive(Debug)]
pub(crate) enum State {
    PlainAwaitingResponse,
    LoginAwaitingUser,
    LoginAwaitingPassword {
        user: String,
    },
    CramMd5AwaitingDigest {
        challenge: Vec<u8>,
    },
    ScramAwaitingFirst {
        hash: ScramHash,
        plus: bool,
        binding: Option<ChannelBinding>,
        plus_offered: bool,
    },
    ScramAwaitingFinal(Box<AwaitingFinal>),
    OAuthAwaitingResponse {
        mechanism: Mechanism,
    },
    ExternalAwaitingAuthzid {
        identity: String,
    },
    /// A `server-error` was sent; the exchange fails whatever comes back.
    Refused(&'static str),
}

impl Exchange {
    /// Starts `mechanism`. `initial_response` is the decoded argument of
    /// `AUTH MECH <ir>` (`Some(vec![])` for `=`). `unique_challenge` is the
    /// CRAM-MD5 challenge (a msg-id the caller made unique, RFC 2195); other
    /// mechanisms ignore it.
    pub fn start(
        mechanism: Mechanism,
        initial_response: Option<Vec<u8>>,
        unique_challenge: &str,
    ) -> Result<Step, SaslError> {
        let context = StartContext {
            unique_challenge,
            ..StartContext::default()
        };
        Self::start_with(mechanism, initial_response, &context)
    }

    /// Starts `mechanism` knowing about the connection (what SCRAM needs).
    pub fn start_with(
        mechanism: Mechanism,
        initial_response: Option<Vec<u8>>,
        context: &StartContext<'_>,
    ) -> Result<Step, SaslError> {
        let unique_challenge = context.unique_challenge;
        match (mechanism, initial_response) {
            (
                Mechanism::ScramSha1
                | Mechanism::ScramSha1Plus
                | Mechanism::ScramSha256
                | Mechanism::ScramSha256Plus,
                initial_response,
            ) => start_scram(mechanism, initial_response, context),
            (Mechanism::OAuthBearer | Mechanism::XOAuth2, Some(response)) => {
                parse_bearer(mechanism, &response)
            }
            (Mechanism::OAuthBearer | Mechanism::XOAuth2, None) => {
                Ok(challenge(State::OAuthAwaitingResponse { mechanism }, b""))
            }
            (Mechanism::External, initial_response) => start_external(initial_response, context),
            (Mechanism::Plain, Some(response)) => parse_plain(&response).map(Step::Done),
            (Mechanism::Plain, None) => Ok(challenge(State::PlainAwaitingResponse, b"")),
            (Mechanism::Login, None) => Ok(challenge(State::LoginAwaitingUser, b"Username:")),
            (Mechanism::Login, Some(user)) => Exchange {
                state: State::LoginAwaitingUser,
            }
            .respond(user),
            (Mechanism::CramMd5, Some(_)) => Err(SaslError::InitialResponseNotAllowed),
            (Mechanism::CramMd5, None) => {
                let text = unique_challenge.as_bytes().to_vec();
                Ok(Step::Challenge(
                    Exchange {
                        state: State::CramMd5AwaitingDigest {
                            challenge: text.clone(),
                        },
                    },
                    text,
                ))
            }
        }
    }

    /// Feeds the client's decoded answer to the last challenge.
    pub fn respond(self, response: Vec<u8>) -> Result<Step, SaslError> {
        match self.state {
            State::PlainAwaitingResponse => parse_plain(&response).map(Step::Done),
            State::LoginAwaitingUser => {
                let user = identity(&response)?;
                if user.is_empty() {
                    return Err(SaslError::Malformed("empty user name"));
                }
                Ok(challenge(
                    State::LoginAwaitingPassword { user },
                    b"Password:",
                ))
            }
            State::LoginAwaitingPassword { user } => Ok(Step::Done(Credentials::Password {
                authcid: user,
                authzid: None,
                password: password(response)?,
            })),
            State::CramMd5AwaitingDigest { challenge } => {
                parse_cram_md5(&response, challenge).map(Step::Done)
            }
            State::ScramAwaitingFirst {
                hash,
                plus,
                binding,
                plus_offered,
            } => {
                let start = ScramStart {
                    hash,
                    plus,
                    binding: binding.as_ref(),
                    plus_offered,
                };
                scram::client_first(start, &response)
            }
            State::ScramAwaitingFinal(state) => scram::client_final(*state, &response),
            State::OAuthAwaitingResponse { mechanism } => parse_bearer(mechanism, &response),
            State::ExternalAwaitingAuthzid { identity } => {
                crate::external::finish(identity, &response).map(Step::Done)
            }
            State::Refused(reason) => Err(SaslError::Refused(reason)),
        }
    }
}

/// SCRAM: the client speaks first, in the initial response or after an
/// empty challenge.
fn start_scram(
    mechanism: Mechanism,
    initial_response: Option<Vec<u8>>,
    context: &StartContext<'_>,
) -> Result<Step, SaslError> {
    let Some((hash, plus)) = mechanism.scram() else {
        return Err(SaslError::Malformed("not a SCRAM mechanism"));
    };
    match initial_response {
        Some(message) => scram::client_first(
            ScramStart {
                hash,
                plus,
                binding: context.channel_binding,
                plus_offered: context.plus_offered,
            },
            &message,
        ),
        None => Ok(challenge(
            State::ScramAwaitingFirst {
                hash,
                plus,
                binding: context.channel_binding.cloned(),
                plus_offered: context.plus_offered,
            },
            b"",
        )),
    }
}

/// EXTERNAL: only with an identity from a verified client certificate; the
/// client's message (initial response, or answer to an empty challenge) is
/// the authzid.
fn start_external(
    initial_response: Option<Vec<u8>>,
    context: &StartContext<'_>,
) -> Result<Step, SaslError> {
    let Some(identity) = context.external_identity else {
        return Err(SaslError::Refused(crate::external::NO_EXTERNAL_IDENTITY));
    };
    match initial_response {
        Some(message) => crate::external::finish(identity.to_string(), &message).map(Step::Done),
        None => Ok(challenge(
            State::ExternalAwaitingAuthzid {
                identity: identity.to_string(),
            },
            b"",
        )),
    }
}

fn parse_bearer(mechanism: Mechanism, response: &[u8]) -> Result<Step, SaslError> {
    let credentials = match mechanism {
        Mechanism::XOAuth2 => crate::oauth::parse_xoauth2(response)?,
        _ => crate::oauth::parse_oauthbearer(response)?,
    };
    Ok(Step::Done(credentials))
}

fn challenge(state: State, text: &[u8]) -> Step {
    Step::Challenge(Exchange { state }, text.to_vec())
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn parse_plain(message: &[u8]) -> Result<Credentials, SaslError> {
    let mut fields = message.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::Malformed(
            "PLAIN needs authzid NUL authcid NUL password",
        ));
    };
    if passwd.contains(&0) {
        return Err(SaslError::Malformed("NUL inside the password"));
    }
    let authcid = identity(authcid)?;
    if authcid.is_empty() {
        return Err(SaslError::Malformed("empty authentication identity"));
    }
    let authzid = identity(authzid)?;
    Ok(Credentials::Password {
        authcid,
        authzid: (!authzid.is_empty()).then_some(authzid),
        password: password(passwd.to_vec())?,
    })
}

/// RFC 2195: `user SP 32-lowercase-hex-digits`.
fn parse_cram_md5(response: &[u8], challenge: Vec<u8>) -> Result<Credentials, SaslError> {
    let split = response
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(SaslError::Malformed("CRAM-MD5 needs user SP digest"))?;
    let (user, hex_digest) = (&response[..split], &response[split + 1..]);
    let mut digest = [0u8; 16];
    hex::decode_to_slice(hex_digest, &mut digest)
        .map_err(|_| SaslError::Malformed("CRAM-MD5 digest is not 32 hex digits"))?;
    let authcid = identity(user)?;
    if authcid.is_empty() {
        return Err(SaslError::Malformed("empty user name"));
    }
    Ok(Credentials::CramMd5 {
        authcid,
        challenge,
        digest,
    })
}

fn identity(bytes: &[u8]) -> Result<String, SaslError> {
    if bytes.len() > MAX_IDENTITY_LEN {
        return Err(SaslError::TooLong);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::Malformed("identity is not UTF-8"))
}

fn password(bytes: Vec<u8>) -> Result<Secret, SaslError> {
    if bytes.len() > MAX_PASSWORD_LEN {
        return Err(SaslError::TooLong);
    }
    Ok(Secret::new(bytes))
}

#[cfg(test)]
mod tests;

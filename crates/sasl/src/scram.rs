//! SCRAM-SHA-1 and SCRAM-SHA-256, with and without channel binding
//! (RFC 5802, RFC 7677), as a step machine that stays pure.
//!
//! A SCRAM server needs the user's stored secrets *in the middle* of the
//! exchange: the salt and iteration count go into its first message. So
//! after the client's first message the exchange stops with
//! [`Step::NeedSecrets`]; the driver fetches them (off the async workers),
//! and [`SecretsRequest::resume`] goes on. The driver also supplies the
//! server nonce, from a CSPRNG, so this crate reads no randomness. For a
//! user who does not exist the driver must hand in fake but stable secrets
//! (the same salt every time for the same name), so that the salt a client
//! sees does not reveal which names exist.
//!
//! The proof is checked here, in constant time, because the server's
//! signature must be computed from the same AuthMessage; the outcome goes
//! out in [`Credentials::Scram`] for the `auth` crate to decide on (and
//! log). The server signature (`v=`) is sent by the session only after that
//! decision accepted the client.
//!
//! Channel binding: `tls-exporter` (RFC 9266) and `tls-server-end-point`
//! (RFC 5929), whose data the driver takes from the TLS connection. A
//! client that says `y` ("I could bind, but you do not offer -PLUS") while
//! we do offer -PLUS is being downgraded and is refused, as is a -PLUS
//! exchange without binding and a binding to data other than ours.

pub(crate) mod message;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::mechanism::{Exchange, State};
use crate::{Credentials, SaslError, Secret, Step};
use message::CbFlag;

/// The hash function of a SCRAM family member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// `SHA-1` or `SHA-256`, as in the mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SHA-1",
            ScramHash::Sha256 => "SHA-256",
        }
    }

    /// Output length in octets (the length of keys and proofs).
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// HMAC with this hash.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut mac = <Hmac<Sha1>>::new_from_slice(key).expect("HMAC takes any key length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut mac =
                    <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// RFC 5802 `Hi()`: PBKDF2 with this hash's HMAC.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; self.output_len()]);
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

/// What a store keeps for SCRAM: enough to check a proof and sign the
/// answer, but not the password (RFC 5802 §3). `Debug` redacts the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecrets {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Secret,
    pub server_key: Secret,
}

impl std::fmt::Debug for ScramSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramSecrets")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramSecrets {
    /// Derives the secrets from a password, after SASLprep (RFC 4013) as
    /// RFC 5802 §2.2 asks. A password SASLprep refuses cannot be used with
    /// SCRAM at all: no client could send it either.
    pub fn derive(
        hash: ScramHash,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Self, SaslError> {
        let text = std::str::from_utf8(password)
            .map_err(|_| SaslError::Malformed("password is not UTF-8"))?;
        let prepared = Zeroizing::new(saslprep(text)?);
        let salted = hash.salted_password(prepared.as_bytes(), &salt, iterations);
        let client_key = Zeroizing::new(hash.hmac(&salted, b"Client Key"));
        Ok(ScramSecrets {
            iterations,
            stored_key: Secret::new(hash.digest(&client_key)),
            server_key: Secret::new(hash.hmac(&salted, b"Server Key")),
            salt,
        })
    }
}

/// The client's side of the maths: `(ClientProof, ServerSignature)` for
/// `auth_message`. The server never needs it; tests and tools that play
/// the client do.
pub fn client_proof(
    hash: ScramHash,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    auth_message: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let salted = hash.salted_password(password, salt, iterations);
    let client_key = hash.hmac(&salted, b"Client Key");
    let signature = hash.hmac(&hash.digest(&client_key), auth_message);
    let proof = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hash.hmac(&salted, b"Server Key");
    (proof, hash.hmac(&server_key, auth_message))
}

/// SASLprep (RFC 4013) of a user name or password.
pub fn saslprep(text: &str) -> Result<String, SaslError> {
    stringprep::saslprep(text)
        .map(|prepared| prepared.into_owned())
        .map_err(|_| SaslError::Malformed("string prohibited by SASLprep"))
}

/// The channel-binding data of one TLS connection, from the driver.
/// `Debug` does not print the data (tls-exporter output is key material).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChannelBinding {
    /// RFC 9266 `tls-exporter` (TLS 1.3 only: on TLS 1.2 it is safe only
    /// with the extended master secret, which rustls does not report).
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 `tls-server-end-point`: the hash of our certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBinding {
    fn data(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBinding")
            .field("tls_exporter", &self.tls_exporter.is_some())
            .field("tls_server_end_point", &self.tls_server_end_point.is_some())
            .finish()
    }
}

/// How a SCRAM proof turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramOutcome {
    /// The proof is right; `server_final` (`v=...`) is to be sent once the
    /// decision accepts the client.
    Verified { server_final: Vec<u8> },
    /// The proof does not match the stored key (wrong password, or a user
    /// who does not exist or has no SCRAM secrets).
    WrongProof,
    /// The client bound to different channel data than ours: a
    /// man-in-the-middle, or a client that got its binding wrong.
    ChannelBindingMismatch,
}

/// The exchange is waiting for the user's stored secrets.
#[derive(Debug)]
pub struct SecretsRequest {
    hash: ScramHash,
    authcid: String,
    pending: Box<Pending>,
}

#[derive(Debug)]
struct Pending {
    authzid: Option<String>,
    client_first_bare: String,
    client_nonce: String,
    /// What `c=` must decode to: the gs2 header and any binding data.
    expected_binding: Vec<u8>,
}

/// Waiting for `client-final-message`.
#[derive(Debug)]
pub(crate) struct AwaitingFinal {
    hash: ScramHash,
    authcid: String,
    pending: Box<Pending>,
    server_first: String,
    nonce: String,
    secrets: ScramSecrets,
}

/// What the exchange knows about the connection when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScramStart<'a> {
    pub hash: ScramHash,
    pub plus: bool,
    pub binding: Option<&'a ChannelBinding>,
    /// The -PLUS variant is advertised on this connection.
    pub plus_offered: bool,
}

impl SecretsRequest {
    /// The (SASLprepped) user whose secrets are needed.
    pub fn authcid(&self) -> &str {
        &self.authcid
    }

    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// Goes on with the user's secrets (or fake ones for an unknown user)
    /// and `server_nonce`, printable ASCII without `,` made from a CSPRNG.
    pub fn resume(self, secrets: ScramSecrets, server_nonce: &str) -> Result<Step, SaslError> {
        if server_nonce.is_empty()
            || !server_nonce
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b',')
        {
            return Err(SaslError::Malformed("server nonce must be printable"));
        }
        let nonce = format!("{}{server_nonce}", self.pending.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&secrets.salt),
            secrets.iterations
        );
        let challenge = server_first.as_bytes().to_vec();
        let state = State::ScramAwaitingFinal(Box::new(AwaitingFinal {
            hash: self.hash,
            authcid: self.authcid,
            pending: self.pending,
            server_first,
            nonce,
            secrets,
        }));
        Ok(Step::Challenge(Exchange { state }, challenge))
    }
}

/// `client-first-message`: checks the binding flag, then asks for secrets.
pub(crate) fn client_first(start: ScramStart<'_>, message: &[u8]) -> Result<Step, SaslError> {
    let first = message::client_first(message)?;
    let binding_data = match (&first.flag, start.plus) {
        (CbFlag::Bound(name), true) => match start.binding.and_then(|b| b.data(name)) {
            Some(data) => data.to_vec(),
            None => return Ok(refuse_with("e=unsupported-channel-binding-type")),
        },
        (CbFlag::Bound(_), false) => {
            return Err(SaslError::Refused(
                "channel binding asked for without -PLUS",
            ))
        }
        (_, true) => return Err(SaslError::Refused("-PLUS without channel binding")),
        (CbFlag::ClientOnly, false) if start.plus_offered => {
            // RFC 5802 §6: a downgrade from -PLUS by a man-in-the-middle.
            return Ok(refuse_with("e=server-does-support-channel-binding"));
        }
        (CbFlag::ClientOnly | CbFlag::None, false) => Vec::new(),
    };
    let authcid = saslprep(&first.username)?;
    if authcid.is_empty() {
        return Err(SaslError::Malformed("empty user name"));
    }
    let mut expected_binding = first.gs2_header.into_bytes();
    expected_binding.extend_from_slice(&binding_data);
    Ok(Step::NeedSecrets(SecretsRequest {
        hash: start.hash,
        authcid,
        pending: Box::new(Pending {
            authzid: first.authzid,
            client_first_bare: first.bare,
            client_nonce: first.nonce,
            expected_binding,
        }),
    }))
}

/// Sends a `server-error` as a challenge; whatever the client answers, the
/// exchange then fails (SMTP has no way to carry data with `535`).
fn refuse_with(server_error: &'static str) -> Step {
    Step::Challenge(
        Exchange {
            state: State::Refused(server_error),
        },
        server_error.as_bytes().to_vec(),
    )
}

/// `client-final-message`: checks nonce, binding and proof.
pub(crate) fn client_final(state: AwaitingFinal, message: &[u8]) -> Result<Step, SaslError> {
    let last = message::client_final(message)?;
    if last.nonce != state.nonce {
        return Err(SaslError::Malformed("SCRAM nonce does not match"));
    }
    let hash = state.hash;
    if last.proof.len() != hash.output_len() {
        return Err(SaslError::Malformed("SCRAM proof has the wrong length"));
    }
    let auth_message = format!(
        "{},{},{}",
        state.pending.client_first_bare, state.server_first, last.without_proof
    );
    let binding_ok =
        Secret::new(state.pending.expected_binding.clone()).ct_eq(&last.channel_binding);
    let client_signature = hash.hmac(state.secrets.stored_key.expose(), auth_message.as_bytes());
    let client_key: Zeroizing<Vec<u8>> = Zeroizing::new(
        last.proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect(),
    );
    let proof_ok = state.secrets.stored_key.ct_eq(&hash.digest(&client_key));
    let outcome = if !binding_ok {
        ScramOutcome::ChannelBindingMismatch
    } else if !proof_ok {
        ScramOutcome::WrongProof
    } else {
        let signature = hash.hmac(state.secrets.server_key.expose(), auth_message.as_bytes());
        ScramOutcome::Verified {
            server_final: format!("v={}", STANDARD.encode(signature)).into_bytes(),
        }
    };
    Ok(Step::Done(Credentials::Scram {
        authcid: state.authcid,
        authzid: state.pending.authzid,
        hash,
        outcome,
    }))
}

#[cfg(test)]
mod tests;

//! Client side of the SASL mechanisms, as step machines with no I/O.
//!
//! The session sends [`Exchange::command`] and hands every `334` challenge to
//! [`Exchange::respond`]; the exchange answers with the line to send back.
//! On `235` it is asked [`Exchange::finish`], which is where SCRAM insists
//! that the server proved it knows the password too.
//!
//! Why prebuilt: a load tool's own cost per login lowers the rate it can
//! measure, so everything that does not change between sessions (the PLAIN
//! initial response, SCRAM's salted password) is computed once in
//! [`Credentials`] and shared by every connection.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::ValueEnum;
use hmac::{Hmac, Mac};
use md5::Md5;
use zeroize::Zeroizing;

use crate::scram::{Scram, ScramCache};

/// The mechanisms portcullis-load can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mechanism {
    /// RFC 4616, always with an initial response.
    #[value(name = "PLAIN")]
    Plain,
    /// The de-facto LOGIN mechanism: user name, then password, each after a 334.
    #[value(name = "LOGIN")]
    Login,
    /// RFC 2195.
    #[value(name = "CRAM-MD5")]
    CramMd5,
    /// Google/Microsoft XOAUTH2; the password is the bearer token.
    #[value(name = "XOAUTH2")]
    XOAuth2,
    /// RFC 7677 (without channel binding).
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// No AUTH at all.
    #[value(name = "none")]
    None,
}

impl Mechanism {
    /// The name as sent in `AUTH` and advertised in EHLO.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::None => "none",
        }
    }
}

/// A password or token: redacted in `Debug`, wiped on drop.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(text: String) -> Password {
        Password(Zeroizing::new(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What the server did that the mechanism cannot go on with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MechError {
    /// A `334` the mechanism did not expect at this point.
    UnexpectedChallenge,
    /// A challenge that is not base64 or not the mechanism's syntax.
    BadChallenge,
    /// SCRAM: the server's signature does not match (it does not know the
    /// password, or something rewrote the exchange).
    ServerSignature,
    /// `235` before the mechanism was complete (SCRAM without `v=`).
    EarlySuccess,
}

impl MechError {
    /// Short key used in the error table.
    pub fn key(self) -> &'static str {
        match self {
            MechError::UnexpectedChallenge => "unexpected-334",
            MechError::BadChallenge => "bad-challenge",
            MechError::ServerSignature => "bad-server-signature",
            MechError::EarlySuccess => "235-before-end",
        }
    }
}

/// Identity and secret, plus what can be computed once for every session.
pub struct Credentials {
    pub mechanism: Mechanism,
    user: String,
    password: Password,
    /// `AUTH PLAIN <ir>\r\n` or `AUTH XOAUTH2 <ir>\r\n`, prebuilt.
    fixed_command: Zeroizing<String>,
    scram_cache: ScramCache,
}

impl Credentials {
    pub fn new(mechanism: Mechanism, user: String, password: Password) -> Credentials {
        let fixed_command = Zeroizing::new(match mechanism {
            Mechanism::Plain => {
                let raw = Zeroizing::new(format!("\0{user}\0{}", password.expose()));
                format!("AUTH PLAIN {}\r\n", B64.encode(raw.as_bytes()))
            }
            Mechanism::XOAuth2 => {
                let raw = Zeroizing::new(format!(
                    "user={user}\x01auth=Bearer {}\x01\x01",
                    password.expose()
                ));
                format!("AUTH XOAUTH2 {}\r\n", B64.encode(raw.as_bytes()))
            }
            Mechanism::Login => "AUTH LOGIN\r\n".to_string(),
            Mechanism::CramMd5 => "AUTH CRAM-MD5\r\n".to_string(),
            Mechanism::ScramSha256 | Mechanism::None => String::new(),
        });
        Credentials {
            mechanism,
            user,
            password,
            fixed_command,
            scram_cache: ScramCache::default(),
        }
    }

    /// Starts one exchange: returns it and the `AUTH ...` line to send.
    pub fn start(&self) -> (Exchange<'_>, Zeroizing<String>) {
        let state = match self.mechanism {
            Mechanism::Login => State::LoginUser,
            Mechanism::CramMd5 => State::CramMd5,
            Mechanism::XOAuth2 => State::XOAuth2,
            Mechanism::ScramSha256 => {
                let (scram, first) = Scram::start(&self.user);
                let line = format!("AUTH SCRAM-SHA-256 {}\r\n", B64.encode(first));
                let exchange = Exchange {
                    credentials: self,
                    state: State::Scram(Box::new(scram)),
                };
                return (exchange, Zeroizing::new(line));
            }
            Mechanism::Plain | Mechanism::None => State::Done,
        };
        let exchange = Exchange {
            credentials: self,
            state,
        };
        (exchange, self.fixed_command.clone())
    }
}

enum State {
    LoginUser,
    LoginPassword,
    CramMd5,
    XOAuth2,
    /// XOAUTH2 sent its error JSON; the `535` follows our empty line.
    XOAuth2Failed,
    Scram(Box<Scram>),
    Done,
}

/// One AUTH exchange in progress.
pub struct Exchange<'a> {
    credentials: &'a Credentials,
    state: State,
}

impl Exchange<'_> {
    /// The line (CRLF included) answering a `334` whose text is `challenge`.
    pub fn respond(&mut self, challenge: &str) -> Result<Zeroizing<String>, MechError> {
        let creds = self.credentials;
        let state = std::mem::replace(&mut self.state, State::Done);
        let (next, payload): (State, Zeroizing<Vec<u8>>) = match state {
            State::LoginUser => (State::LoginPassword, creds.user.as_bytes().to_vec().into()),
            State::LoginPassword => (
                State::Done,
                creds.password.expose().as_bytes().to_vec().into(),
            ),
            State::CramMd5 => {
                let challenge = decode(challenge)?;
                (State::Done, cram_md5_response(creds, &challenge).into())
            }
            // RFC-less but universal: the server's 334 carries a JSON error
            // and waits for an empty line before it sends 535.
            State::XOAuth2 => (State::XOAuth2Failed, Vec::new().into()),
            State::Scram(mut scram) => {
                let challenge = decode(challenge)?;
                let reply = scram.step(&challenge, &creds.password, &creds.scram_cache)?;
                (State::Scram(scram), reply)
            }
            State::XOAuth2Failed | State::Done => return Err(MechError::UnexpectedChallenge),
        };
        self.state = next;
        Ok(Zeroizing::new(format!("{}\r\n", B64.encode(&*payload))))
    }

    /// Called on `235`: the mechanism must have finished.
    pub fn finish(&self) -> Result<(), MechError> {
        match &self.state {
            State::Scram(scram) if !scram.verified() => Err(MechError::EarlySuccess),
            _ => Ok(()),
        }
    }
}

fn decode(challenge: &str) -> Result<Vec<u8>, MechError> {
    B64.decode(challenge.trim())
        .map_err(|_| MechError::BadChallenge)
}

/// `user SP hex(HMAC-MD5(password, challenge))` (RFC 2195).
fn cram_md5_response(creds: &Credentials, challenge: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(creds.password.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(challenge);
    let digest = mac.finalize().into_bytes();
    let mut out = creds.user.as_bytes().to_vec();
    out.push(b' ');
    for byte in digest {
        out.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(mech: Mechanism, user: &str, pass: &str) -> Credentials {
        Credentials::new(mech, user.into(), Password::new(pass.into()))
    }

    #[test]
    fn plain_sends_an_initial_response() {
        let c = creds(Mechanism::Plain, "tim", "tanstaaf");
        let (ex, line) = c.start();
        assert_eq!(line.as_str(), "AUTH PLAIN AHRpbQB0YW5zdGFhZg==\r\n");
        assert!(ex.finish().is_ok());
    }

    #[test]
    fn login_answers_user_then_password() {
        let c = creds(Mechanism::Login, "tim", "pw");
        let (mut ex, line) = c.start();
        assert_eq!(line.as_str(), "AUTH LOGIN\r\n");
        assert_eq!(ex.respond("VXNlcm5hbWU6").unwrap().as_str(), "dGlt\r\n");
        assert_eq!(ex.respond("UGFzc3dvcmQ6").unwrap().as_str(), "cHc=\r\n");
        assert_eq!(ex.respond("x").unwrap_err(), MechError::UnexpectedChallenge);
    }

    #[test]
    fn cram_md5_matches_rfc_2195() {
        let c = creds(Mechanism::CramMd5, "tim", "tanstaaftanstaaf");
        let (mut ex, _) = c.start();
        let challenge = B64.encode("<1896.697170952@postoffice.reston.mci.net>");
        let reply = ex.respond(&challenge).unwrap();
        let decoded = B64.decode(reply.trim_end()).unwrap();
        assert_eq!(decoded, b"tim b913a602c7eda7a495b4e6e7334d3890");
    }

    #[test]
    fn xoauth2_answers_an_error_challenge_with_an_empty_line() {
        let c = creds(Mechanism::XOAuth2, "u@x", "tok");
        let (mut ex, line) = c.start();
        let ir = line
            .strip_prefix("AUTH XOAUTH2 ")
            .unwrap()
            .trim_end()
            .to_string();
        assert_eq!(
            B64.decode(ir).unwrap(),
            b"user=u@x\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            ex.respond("eyJzdGF0dXMiOiI0MDEifQ==").unwrap().as_str(),
            "\r\n"
        );
    }

    #[test]
    fn password_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Password::new("s3cret".into())),
            "Password(<redacted>)"
        );
    }
}

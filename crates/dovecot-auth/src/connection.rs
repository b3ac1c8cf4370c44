//! One client connection (an MTA process): the handshake, the requests in
//! flight, and the answers.
//!
//! Every id the client opens with `AUTH` stays in flight until we answer it
//! with `OK` or `FAIL` (or the client sends `CANCEL`); between a `CONT` we
//! sent and the client's `CONT` back, the id waits for the client, and a
//! `CONT` for an id that is not waiting is a protocol error. Errors that
//! concern one request ([`ProtocolError::BadRequest`]) are answered with
//! `FAIL` for that id and the connection goes on; every other error means
//! the peer does not speak the protocol and the caller closes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use thiserror::Error;

use crate::escape::{escape, unescape};

/// The protocol version we speak: major 1 (all MTAs check only that), minor
/// 2 (multiplexed requests, `CANCEL`).
const VERSION_MAJOR: u32 = 1;
const VERSION_MINOR: u32 = 2;

/// Bounds for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Ids in flight at once; an `AUTH` beyond it is refused with `FAIL`.
    pub max_in_flight: usize,
    /// Decoded size of one client response (`resp=` or `CONT`).
    pub max_response: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 64,
            max_response: 12 * 1024,
        }
    }
}

/// The security properties a mechanism is announced with; MTAs use them to
/// apply their own policy (Postfix's `smtpd_sasl_security_options =
/// noplaintext` hides a `plaintext` mechanism until TLS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MechanismFlags {
    pub anonymous: bool,
    pub plaintext: bool,
    pub dictionary: bool,
    pub active: bool,
    pub forward_secrecy: bool,
    pub mutual_auth: bool,
    pub private: bool,
}

/// One `MECH` line of the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mechanism {
    pub name: String,
    pub flags: MechanismFlags,
}

/// What the server tells about itself in the handshake.
#[derive(Debug, Clone, Copy)]
pub struct ServerIds {
    /// `SPID`: the server's process id.
    pub pid: u32,
    /// `CUID`: a number unique to this connection.
    pub connection: u64,
    /// `COOKIE`: 16 random bytes (used by Dovecot's master process; MTAs
    /// read and ignore it).
    pub cookie: [u8; 16],
}

/// A request to begin an authentication, with the facts of the SMTP
/// connection it is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub id: u32,
    /// Upper-cased.
    pub mechanism: String,
    /// `service=` (`smtp` from an MTA).
    pub service: String,
    /// `lip`, `lport`: the MTA's own address and port for that client.
    pub local_ip: Option<IpAddr>,
    pub local_port: Option<u16>,
    /// `rip`, `rport`: the SMTP client's address and port.
    pub remote_ip: Option<IpAddr>,
    pub remote_port: Option<u16>,
    /// `secured`: the SMTP connection is encrypted (or local).
    pub secured: bool,
    /// `valid-client-cert`: the client presented a certificate the MTA
    /// verified.
    pub valid_client_cert: bool,
    /// `no-penalty`: the MTA asks for no failure delay (chasquid sends it
    /// for its own checks).
    pub no_penalty: bool,
    /// `resp=`: the initial response, decoded; `Some(empty)` for an empty
    /// one (`resp=`), `None` when the client sent none.
    pub initial_response: Option<Vec<u8>>,
}

/// A line from the client, for the caller to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A handshake line (`VERSION`, `CPID`): nothing to do.
    Handshake,
    /// Begin an authentication.
    Auth(AuthRequest),
    /// The client's answer to our `CONT` challenge for `id`, decoded.
    Continue { id: u32, response: Vec<u8> },
    /// The client gave up on `id`; it is no longer in flight.
    Cancel { id: u32 },
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("expected VERSION first")]
    NoVersion,
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u32),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("malformed {0} line")]
    Malformed(&'static str),
    #[error("request id {0} is already in flight")]
    IdInUse(u32),
    #[error("CONT for id {0}, which is not waiting for the client")]
    UnexpectedContinue(u32),
    /// A request that is answered with `FAIL` for its id; the connection
    /// goes on.
    #[error("request {id}: {reason}")]
    BadRequest { id: u32, reason: &'static str },
}

impl ProtocolError {
    /// The id to answer with `FAIL`, when the error concerns one request
    /// only; `None` means close the connection.
    pub fn failed_request(&self) -> Option<u32> {
        match self {
            ProtocolError::BadRequest { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// How a `FAIL` answer reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// `reason=`: shown by Postfix after "authentication failed:".
    pub reason: Option<String>,
    /// `temp`: a temporary failure (Postfix answers `454 4.7.0`).
    pub temporary: bool,
    /// `user=`: the user name the request was for, when known.
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// We owe the next answer.
    Server,
    /// We sent `CONT` and wait for the client's.
    Client,
}

/// The state of one client connection.
#[derive(Debug)]
pub struct Connection {
    limits: Limits,
    versioned: bool,
    client_pid: Option<u32>,
    in_flight: HashMap<u32, Phase>,
}

impl Connection {
    pub fn new(limits: Limits) -> Self {
        Connection {
            limits,
            versioned: false,
            client_pid: None,
            in_flight: HashMap::new(),
        }
    }

    /// The handshake the server sends as soon as a client connects (it
    /// does not wait for the client's `VERSION`).
    pub fn greeting(mechanisms: &[Mechanism], ids: &ServerIds) -> String {
        let mut out = format!("VERSION\t{VERSION_MAJOR}\t{VERSION_MINOR}\n");
        for mech in mechanisms {
            out.push_str("MECH\t");
            out.push_str(&escape(&mech.name));
            let f = mech.flags;
            for (on, name) in [
                (f.anonymous, "anonymous"),
                (f.plaintext, "plaintext"),
                (f.dictionary, "dictionary"),
                (f.active, "active"),
                (f.forward_secrecy, "forward-secrecy"),
                (f.mutual_auth, "mutual-auth"),
                (f.private, "private"),
            ] {
                if on {
                    out.push('\t');
                    out.push_str(name);
                }
            }
            out.push('\n');
        }
        let _ = writeln!(out, "SPID\t{}", ids.pid);
        let _ = writeln!(out, "CUID\t{}", ids.connection);
        out.push_str("COOKIE\t");
        for b in ids.cookie {
            let _ = write!(out, "{b:02x}");
        }
        out.push_str("\nDONE\n");
        out
    }

    /// The process id the client announced with `CPID`.
    pub fn client_pid(&self) -> Option<u32> {
        self.client_pid
    }

    /// Ids waiting for an answer or for the client.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes one line (without its LF).
    pub fn feed(&mut self, line: &[u8]) -> Result<Request, ProtocolError> {
        let mut fields = line.split(|&b| b == b'\t');
        let command = fields.next().unwrap_or_default();
        if !self.versioned && command != b"VERSION" {
            return Err(ProtocolError::NoVersion);
        }
        match command {
            b"VERSION" => {
                let major = number(fields.next()).ok_or(ProtocolError::Malformed("VERSION"))?;
                if major != VERSION_MAJOR {
                    return Err(ProtocolError::UnsupportedVersion(major));
                }
                self.versioned = true;
                Ok(Request::Handshake)
            }
            b"CPID" => {
                let pid = number(fields.next()).ok_or(ProtocolError::Malformed("CPID"))?;
                self.client_pid = Some(pid);
                Ok(Request::Handshake)
            }
            b"AUTH" => self.auth(fields),
            b"CONT" => {
                let id = number(fields.next()).ok_or(ProtocolError::Malformed("CONT"))?;
                if self.in_flight.get(&id) != Some(&Phase::Client) {
                    return Err(ProtocolError::UnexpectedContinue(id));
                }
                let data = fields.next().unwrap_or_default();
                let response = self.decode(id, data)?;
                self.in_flight.insert(id, Phase::Server);
                Ok(Request::Continue { id, response })
            }
            b"CANCEL" => {
                let id = number(fields.next()).ok_or(ProtocolError::Malformed("CANCEL"))?;
                self.in_flight.remove(&id);
                Ok(Request::Cancel { id })
            }
            other => Err(ProtocolError::UnknownCommand(
                String::from_utf8_lossy(&other[..other.len().min(32)]).into_owned(),
            )),
        }
    }

    fn auth<'a>(
        &mut self,
        mut fields: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Request, ProtocolError> {
        let id = number(fields.next()).ok_or(ProtocolError::Malformed("AUTH"))?;
        if self.in_flight.contains_key(&id) {
            return Err(ProtocolError::IdInUse(id));
        }
        let bad = |reason| ProtocolError::BadRequest { id, reason };
        let mechanism = fields
            .next()
            .filter(|m| !m.is_empty() && m.len() <= 64)
            .and_then(|m| std::str::from_utf8(m).ok())
            .filter(|m| {
                m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .ok_or(bad("bad mechanism name"))?
            .to_ascii_uppercase();
        if self.in_flight.len() >= self.limits.max_in_flight {
            return Err(bad("too many requests in flight"));
        }
        let mut request = AuthRequest {
            id,
            mechanism,
            service: String::new(),
            local_ip: None,
            local_port: None,
            remote_ip: None,
            remote_port: None,
            secured: false,
            valid_client_cert: false,
            no_penalty: false,
            initial_response: None,
        };
        for field in fields {
            let (name, value) = match field.iter().position(|&b| b == b'=') {
                Some(at) => (&field[..at], Some(&field[at + 1..])),
                None => (field, None),
            };
            match (name, value) {
                (b"service", Some(v)) => {
                    request.service = text(v).ok_or(bad("bad service"))?;
                }
                (b"lip", Some(v)) => request.local_ip = Some(parse(v).ok_or(bad("bad lip"))?),
                (b"rip", Some(v)) => request.remote_ip = Some(parse(v).ok_or(bad("bad rip"))?),
                (b"lport", Some(v)) => request.local_port = Some(parse(v).ok_or(bad("bad lport"))?),
                (b"rport", Some(v)) => {
                    request.remote_port = Some(parse(v).ok_or(bad("bad rport"))?)
                }
                (b"secured", _) => request.secured = true,
                (b"valid-client-cert", _) => request.valid_client_cert = true,
                (b"no-penalty", _) => request.no_penalty = true,
                (b"resp", Some(v)) => request.initial_response = Some(self.decode(id, v)?),
                // Unknown parameters are ignored, as the protocol says.
                _ => {}
            }
        }
        if request.service.is_empty() {
            return Err(bad("no service"));
        }
        self.in_flight.insert(id, Phase::Server);
        Ok(Request::Auth(request))
    }

    fn decode(&self, id: u32, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        // Base64 of `max_response` bytes is at most 4/3 of it, plus padding.
        if data.len() > self.limits.max_response / 3 * 4 + 4 {
            return Err(ProtocolError::BadRequest {
                id,
                reason: "response too long",
            });
        }
        STANDARD
            .decode(unescape(data))
            .map_err(|_| ProtocolError::BadRequest {
                id,
                reason: "response is not base64",
            })
    }

    /// Answers `id` with success; the id is no longer in flight.
    pub fn ok(&mut self, id: u32, user: &str) -> String {
        self.in_flight.remove(&id);
        format!("OK\t{id}\tuser={}\n", escape(user))
    }

    /// Sends a challenge for `id`; the id now waits for the client.
    pub fn cont(&mut self, id: u32, challenge: &[u8]) -> String {
        self.in_flight.insert(id, Phase::Client);
        format!("CONT\t{id}\t{}\n", STANDARD.encode(challenge))
    }

    /// Answers `id` with failure; the id is no longer in flight.
    pub fn fail(&mut self, id: u32, failure: &Failure) -> String {
        self.in_flight.remove(&id);
        let mut out = format!("FAIL\t{id}");
        if let Some(user) = &failure.user {
            out.push_str("\tuser=");
            out.push_str(&escape(user));
        }
        if failure.temporary {
            out.push_str("\ttemp");
        }
        if let Some(reason) = &failure.reason {
            out.push_str("\treason=");
            out.push_str(&escape(reason));
        }
        out.push('\n');
        out
    }
}

fn text(value: &[u8]) -> Option<String> {
    String::from_utf8(unescape(value)).ok()
}

fn parse<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn number(field: Option<&[u8]>) -> Option<u32> {
    let field = field?;
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse(field)
}

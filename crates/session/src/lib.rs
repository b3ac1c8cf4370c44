//! The ESMTP session as a deterministic state machine.
//!
//! [`Session::feed`] takes the bytes the client sent and writes replies into
//! an output buffer; when the session needs the outside world (a TLS
//! handshake, a credential check, a durable write) it stops and returns an
//! [`Effect`], and the driver hands the result back through
//! [`Session::tls_established`], [`Session::auth_finished`] or
//! [`Session::spool_finished`]. The session never touches a socket, a file
//! or a clock, so every SMTP rule here (what may come when, which reply,
//! which limit) is tested with plain byte strings.
//!
//! Replies are only ever appended to the caller's buffer; the driver flushes
//! it when the session wants more input. That is all PIPELINING (RFC 2920)
//! asks for: a pipelined group is answered with one write.

mod auth;
mod config;
mod effect;
mod mail;
mod script_auth;
mod sender;
mod session;
mod xclient;

pub use config::{AuthPolicy, SessionConfig};
pub use effect::{
    AuthMechanism, AuthOutcome, ClientCertificate, Effect, Envelope, Flow, Identity, Message,
    ScramLookup, ScriptStepOutcome, SpoolOutcome, TlsInfo,
};
pub use script_auth::MAX_SCRIPT_ROUNDS;
pub use sender::SenderRule;
pub use session::{ConnectionInfo, Progress, Session};
pub use xclient::Xclient;

#[cfg(test)]
mod tests;

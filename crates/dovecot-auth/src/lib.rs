//! The server side of Dovecot's authentication protocol (version 1), as
//! Postfix (`smtpd_sasl_type = dovecot`), Exim's `dovecot` authenticator and
//! chasquid speak it.
//!
//! Those MTAs do no SASL themselves: each smtpd process keeps one connection
//! to an auth server, announces itself (`VERSION`, `CPID`), reads the list
//! of mechanisms, and then relays every AUTH its SMTP clients send as an
//! `AUTH` request with an id, the mechanism, the connection facts (`rip`,
//! `lip`, `secured`, ...) and the client's initial response; the server
//! answers each id with `CONT` (a challenge), `OK` or `FAIL`. Requests are
//! multiplexed: several ids may be in flight on one connection, answered in
//! any order.
//!
//! This crate is only the wire format and the per-connection rules, with no
//! I/O and no clock, so that every rule (what may come when, which ids are
//! valid, how long a line may be) is tested with plain strings and fuzzed:
//! [`Framer`] cuts bytes into bounded lines, [`Connection::feed`] turns a
//! line into a [`Request`], and [`Connection::ok`], [`Connection::cont`] and
//! [`Connection::fail`] write the answers. Which mechanism runs and whether a
//! password is right is the caller's business.

mod connection;
mod escape;
mod framer;

pub use connection::{
    AuthRequest, Connection, Failure, Limits, Mechanism, MechanismFlags, ProtocolError, Request,
    ServerIds,
};
pub use escape::{escape, unescape};
pub use framer::{Framer, FramerError};

#[cfg(test)]
mod tests;

//! Harness for the end-to-end tests of portcullis.
//!
//! What it is: helpers that start the *real* `portcullis` binary on free
//! loopback ports with a throw-away data directory, and run third-party SMTP
//! clients (swaks, curl, Python's `smtplib`; lettre in process) against it.
//! What it is not: a test of any crate's internals. The unit and session
//! tests live beside the code; here only what a client sees on the wire and
//! what lands in the spool counts.
//!
//! Key decision: every test owns its server. Ports are picked by binding
//! `127.0.0.1:0`, so tests run in parallel without fixed ports, and the
//! server is killed when the [`TestServer`] is dropped (its log is printed
//! if the test is panicking, which is the first thing one needs to read).
//!
//! The binary is not built by this crate: `cargo build --workspace --bins`
//! must run first (the workspace test script does). Set `PORTCULLIS_BIN` to
//! test another build.

mod raw;
mod server;
mod services;
mod tools;

pub use raw::{RawClient, Reply};
pub use server::{free_port, portcullis_bin, Builder, SpooledMessage, TestServer, ALICE, BOB};
pub use services::{PostgresServer, RedisServer};
pub use tools::{curl, gsasl, msmtp, python, swaks, ToolOutput};

/// Envelope sender every test uses.
pub const FROM: &str = "alice@example.test";
/// Envelope recipient every test uses.
pub const TO: &str = "rcpt@example.test";

/// A small RFC 5322 message with CRLF line ends.
pub fn sample_message(subject: &str) -> String {
    format!(
        "From: <{FROM}>\r\nTo: <{TO}>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@client.test>\r\n\r\nHello from the portcullis tests.\r\n"
    )
}

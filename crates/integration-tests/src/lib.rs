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

mod ldap;
mod load;
mod postfix;
mod raw;
mod server;
mod services;
mod tools;

pub use ldap::{LdapServer, LDAP_ADMIN_DN, LDAP_ADMIN_PASSWORD, LDAP_SUFFIX};
pub use load::{load_bin, load_report};
pub use postfix::{PostfixBuilder, PostfixRelay, PostfixServer};
pub use raw::{RawClient, Reply};
pub use server::{free_port, portcullis_bin, Builder, SpooledMessage, TestServer, ALICE, BOB};
pub use services::{BaoServer, DovecotSubmission, HttpUserApi, PostgresServer, RedisServer};
pub use tools::{curl, gsasl, msmtp, python, swaks, swaks_plain, ToolOutput};

/// Envelope sender every test uses.
pub const FROM: &str = "alice@example.test";
/// Envelope recipient every test uses.
pub const TO: &str = "rcpt@example.test";

/// Submits one message as alice over STARTTLS, from [`FROM`] to `rcpts`:
/// `headers` (each ending in CRLF) after `From:` and `Subject:`, then a
/// short body with a dot-stuffed line. Panics unless it is queued (`250`).
pub fn submit_as_alice(server: &TestServer, rcpts: &[&str], subject: &str, headers: &str) {
    let (mut c, _) = RawClient::connect(server.submission_port());
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    c.starttls();
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.auth_plain(ALICE.0, ALICE.1).code, 235);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    for r in rcpts {
        assert_eq!(c.cmd(&format!("RCPT TO:<{r}>")).code, 250);
    }
    assert_eq!(c.cmd("DATA").code, 354);
    let body = format!(
        "From: <{FROM}>\r\nSubject: {subject}\r\n{headers}\r\nHello.\r\n..leading dot\r\n.\r\n"
    );
    c.send(body.as_bytes()).expect("the message can be sent");
    let reply = c.read_reply();
    assert_eq!(reply.code, 250, "{reply:?}");
    let _ = c.cmd("QUIT");
}

/// Polls `done` until it holds; panics with the server's log after `limit`.
pub fn wait_until(
    server: &TestServer,
    what: &str,
    limit: std::time::Duration,
    mut done: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}\nlog:\n{}", server.log());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A small RFC 5322 message with CRLF line ends.
pub fn sample_message(subject: &str) -> String {
    format!(
        "From: <{FROM}>\r\nTo: <{TO}>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@client.test>\r\n\r\nHello from the portcullis tests.\r\n"
    )
}

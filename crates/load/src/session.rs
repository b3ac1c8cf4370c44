//! The steps of one client session, and the bytes they send, built once.
//!
//! greeting `220` → `EHLO` `250` → [`STARTTLS` `220`, handshake, `EHLO` `250`]
//! → AUTH (`235`) → N × (`MAIL` `250`, `RCPT` `250`/`251`, `DATA` `354`,
//! message + `.` `250`) → `QUIT` `221`.
//!
//! With PIPELINING advertised (and not turned off), MAIL, every RCPT and DATA
//! go out in one write and their replies are read afterwards (RFC 2920: DATA
//! ends the group). Everything else waits for its reply, as clients do.
//! The first reply that is not the expected one ends the session; the
//! connection is dropped and the failure is returned with its step.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::args::{Plan, TlsMode};
use crate::conn::{Conn, Reply, WireError};
use crate::mech::{Credentials, MechError, Mechanism};
use crate::message;
use crate::stats::{Clock, Live, Recorder, Step};
use crate::tls::TlsClient;

/// Why a session ended early.
#[derive(Debug)]
pub struct Failure {
    pub step: Step,
    pub kind: FailureKind,
}

#[derive(Debug)]
pub enum FailureKind {
    /// The server answered with an unexpected reply.
    Reply(Reply),
    /// Below SMTP: timeout, close, socket or TLS error, malformed reply.
    Wire(WireError),
    /// The SASL exchange could not go on.
    Mech(MechError),
}

impl Failure {
    /// (error key, example) for the error table.
    pub fn describe(&self) -> (String, String) {
        match &self.kind {
            FailureKind::Reply(reply) => (reply.code.to_string(), reply.first_line()),
            FailureKind::Wire(e) => (e.key(), e.detail()),
            FailureKind::Mech(e) => (format!("sasl:{}", e.key()), e.key().to_string()),
        }
    }

    /// Records this failure in `rec`.
    pub fn record(&self, rec: &mut Recorder, live: &Live) {
        let (key, example) = self.describe();
        rec.error(live, self.step, key, example);
    }
}

/// `?` on a wire result inside a step.
trait At<T> {
    fn at(self, step: Step) -> Result<T, Failure>;
}

impl<T> At<T> for Result<T, WireError> {
    fn at(self, step: Step) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            step,
            kind: FailureKind::Wire(e),
        })
    }
}

fn expect(step: Step, reply: Reply, codes: &[u16]) -> Result<Reply, Failure> {
    if codes.contains(&reply.code) {
        Ok(reply)
    } else {
        Err(Failure {
            step,
            kind: FailureKind::Reply(reply),
        })
    }
}

/// Everything a session sends, prebuilt from the [`Plan`] and shared.
pub struct Script {
    address: SocketAddr,
    step_timeout: Duration,
    tls_mode: TlsMode,
    tls: Option<TlsClient>,
    ehlo: Vec<u8>,
    /// One per user (empty: no AUTH), taken round-robin.
    credentials: Vec<Credentials>,
    /// Sessions that took credentials so far.
    next_user: AtomicUsize,
    /// Each session takes a user at random, not the next one.
    random_users: bool,
    messages: u32,
    pipelining: bool,
    mail: Vec<u8>,
    rcpts: Vec<Vec<u8>>,
    /// MAIL + RCPTs + DATA in one buffer, for PIPELINING.
    group: Vec<u8>,
    /// The message, dot-terminated.
    body: Vec<u8>,
}

impl Script {
    pub fn new(plan: &Plan, tls: Option<TlsClient>) -> Script {
        let mail = format!("MAIL FROM:<{}>\r\n", plan.from).into_bytes();
        let rcpts: Vec<Vec<u8>> = plan
            .recipients
            .iter()
            .map(|to| format!("RCPT TO:<{to}>\r\n").into_bytes())
            .collect();
        let mut group = mail.clone();
        rcpts.iter().for_each(|r| group.extend_from_slice(r));
        group.extend_from_slice(b"DATA\r\n");
        let mut body = message::build(plan.size, &plan.from, &plan.recipients[0]);
        body.extend_from_slice(b".\r\n");
        let credentials = match plan.mechanism {
            Mechanism::None => Vec::new(),
            mechanism => plan
                .users
                .iter()
                .map(|u| Credentials::new(mechanism, u.name.clone(), u.password.clone()))
                .collect(),
        };
        Script {
            address: plan.address,
            step_timeout: plan.step_timeout,
            tls_mode: plan.tls,
            tls,
            ehlo: format!("EHLO {}\r\n", plan.ehlo).into_bytes(),
            credentials,
            next_user: AtomicUsize::new(0),
            random_users: plan.random_users,
            messages: plan.messages,
            pipelining: plan.pipelining,
            mail,
            rcpts,
            group,
            body,
        }
    }

    /// Bytes of one message as sent, without the final dot line.
    pub fn message_size(&self) -> usize {
        self.body.len() - 3
    }

    /// The next user's credentials, round-robin or at random; `None`
    /// without AUTH.
    fn next_credentials(&self) -> Option<&Credentials> {
        if self.credentials.is_empty() {
            return None;
        }
        let k = match self.random_users {
            true => rand::random::<usize>(),
            false => self.next_user.fetch_add(1, Ordering::Relaxed),
        };
        self.credentials.get(k % self.credentials.len())
    }
}

/// An open, greeted, (TLS-ed,) authenticated connection.
pub struct Ready {
    pub conn: Conn,
    pub pipelining: bool,
}

/// Connect through AUTH. Records the AUTH latency on success.
pub async fn open(
    script: &Script,
    rec: &mut Recorder,
    clock: &Clock,
    live: &Live,
) -> Result<Ready, Failure> {
    let mut conn = Conn::connect(script.address, script.step_timeout)
        .await
        .at(Step::Connect)?;
    if script.tls_mode == TlsMode::Implicit {
        handshake(script, &mut conn).await?;
    }
    let greeting = conn.reply().await.at(Step::Greeting)?;
    expect(Step::Greeting, greeting, &[220])?;
    let mut ehlo = ehlo(script, &mut conn).await?;
    if script.tls_mode == TlsMode::StartTls {
        let reply = conn.command(b"STARTTLS\r\n").await.at(Step::StartTls)?;
        expect(Step::StartTls, reply, &[220])?;
        handshake(script, &mut conn).await?;
        ehlo = self::ehlo(script, &mut conn).await?;
    }
    if let Some(credentials) = script.next_credentials() {
        let started = Instant::now();
        authenticate(credentials, &mut conn).await?;
        rec.auth_done(clock, live, started);
    }
    let pipelining = script.pipelining && advertises(&ehlo, "PIPELINING");
    Ok(Ready { conn, pipelining })
}

/// A whole session: open, the messages, QUIT. Records what completed.
pub async fn run(
    script: &Script,
    rec: &mut Recorder,
    clock: &Clock,
    live: &Live,
) -> Result<(), Failure> {
    let started = Instant::now();
    let Ready {
        mut conn,
        pipelining,
    } = open(script, rec, clock, live).await?;
    for _ in 0..script.messages {
        let sent = Instant::now();
        transaction(script, &mut conn, pipelining).await?;
        rec.message_done(clock, live, sent);
    }
    quit(&mut conn).await?;
    rec.session_done(clock, live, started);
    Ok(())
}

/// `QUIT`, expecting `221`.
pub async fn quit(conn: &mut Conn) -> Result<(), Failure> {
    let reply = conn.command(b"QUIT\r\n").await.at(Step::Quit)?;
    expect(Step::Quit, reply, &[221]).map(drop)
}

async fn handshake(script: &Script, conn: &mut Conn) -> Result<(), Failure> {
    let tls = script
        .tls
        .as_ref()
        .expect("a TLS client is built whenever the plan uses TLS");
    conn.start_tls(&tls.connector, tls.name.clone())
        .await
        .at(Step::Tls)
}

async fn ehlo(script: &Script, conn: &mut Conn) -> Result<Reply, Failure> {
    let reply = conn.command(&script.ehlo).await.at(Step::Ehlo)?;
    expect(Step::Ehlo, reply, &[250])
}

/// Whether an EHLO reply lists `keyword` (first word of a line after the first).
fn advertises(ehlo: &Reply, keyword: &str) -> bool {
    ehlo.lines.iter().skip(1).any(|line| {
        line.split_ascii_whitespace()
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
    })
}

async fn authenticate(credentials: &Credentials, conn: &mut Conn) -> Result<(), Failure> {
    let (mut exchange, command) = credentials.start();
    let mut reply = conn.command(command.as_bytes()).await.at(Step::Auth)?;
    // Each mechanism needs at most three round trips; a server that keeps
    // sending 334 is cut off by the exchange itself (UnexpectedChallenge).
    while reply.code == 334 {
        let answer = exchange.respond(reply.text()).map_err(|e| Failure {
            step: Step::Auth,
            kind: FailureKind::Mech(e),
        })?;
        reply = conn.command(answer.as_bytes()).await.at(Step::Auth)?;
    }
    expect(Step::Auth, reply, &[235])?;
    exchange.finish().map_err(|e| Failure {
        step: Step::Auth,
        kind: FailureKind::Mech(e),
    })
}

/// MAIL, RCPT(s), DATA, message: one message, `250` at the end.
async fn transaction(script: &Script, conn: &mut Conn, pipelining: bool) -> Result<(), Failure> {
    if pipelining {
        conn.send(&script.group).await.at(Step::Mail)?;
        let reply = conn.reply().await.at(Step::Mail)?;
        expect(Step::Mail, reply, &[250])?;
        for _ in &script.rcpts {
            let reply = conn.reply().await.at(Step::Rcpt)?;
            expect(Step::Rcpt, reply, &[250, 251])?;
        }
        let reply = conn.reply().await.at(Step::Data)?;
        expect(Step::Data, reply, &[354])?;
    } else {
        let reply = conn.command(&script.mail).await.at(Step::Mail)?;
        expect(Step::Mail, reply, &[250])?;
        for rcpt in &script.rcpts {
            let reply = conn.command(rcpt).await.at(Step::Rcpt)?;
            expect(Step::Rcpt, reply, &[250, 251])?;
        }
        let reply = conn.command(b"DATA\r\n").await.at(Step::Data)?;
        expect(Step::Data, reply, &[354])?;
    }
    let reply = conn.command(&script.body).await.at(Step::Message)?;
    expect(Step::Message, reply, &[250]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelining_is_found_in_ehlo_lines_only() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "mx.test PIPELINING".into(),
                "SIZE 100".into(),
                "pipelining".into(),
            ],
        };
        assert!(advertises(&reply, "PIPELINING"));
        let greeting_only = Reply {
            code: 250,
            lines: vec!["PIPELINING".into()],
        };
        assert!(!advertises(&greeting_only, "PIPELINING"));
    }
}

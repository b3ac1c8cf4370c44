//! A small SMTP and LMTP client on tokio, written for this crate.
//!
//! Why not lettre: lettre speaks SMTP only (no LMTP, whose per-recipient
//! replies after the dot are the point of LMTP), hides per-recipient RCPT
//! outcomes behind one error, and does not send XCLIENT. What we need is
//! small: greeting, EHLO/LHLO, STARTTLS, AUTH PLAIN, XCLIENT, then
//! MAIL/RCPT/DATA, pipelined when offered (RFC 2920), reading one reply per
//! command with [`crate::reply::parse_reply`]. Every read and write has a
//! timeout; credentials are never logged.
//!
//! A [`Client`] is one connection in the "ready for MAIL" state; the engine
//! keeps idle ones per route and reuses them for later messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis_config::delivery::{Relay, RelayTls, Target};
use portcullis_sasl::Secret;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use zeroize::Zeroizing;

use portcullis_spool::DsnMeta;

use crate::error::DeliveryError;
use crate::message::dot_stuffed;
use crate::outcome::{outcome_of, Outcome};
use crate::reply::{parse_reply, ReplyClass, ServerReply};

/// A byte stream we can speak SMTP over: TCP, a Unix socket, or TLS on one.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach and greet a next hop.
pub struct Settings<'a> {
    pub relay: &'a Relay,
    pub lmtp: bool,
    /// Our name in EHLO/LHLO.
    pub helo_name: &'a str,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub tls: Arc<ClientConfig>,
}

/// One transaction's envelope.
pub struct Envelope<'a> {
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    /// The message was submitted with BODY=8BITMIME.
    pub eight_bit: bool,
    /// The message was submitted with SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// The DSN requests (RFC 3461), passed on when the next hop offers DSN.
    pub dsn: Option<&'a DsnMeta>,
}

impl Envelope<'_> {
    /// `MAIL FROM` with the parameters this next hop takes.
    fn mail_command(&self, ehlo: &ServerReply, size: usize) -> String {
        let mut mail = format!("MAIL FROM:<{}>", self.mail_from);
        if self.eight_bit && ehlo.has_extension("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        if ehlo.has_extension("SIZE") {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if self.smtputf8 && ehlo.has_extension("SMTPUTF8") {
            mail.push_str(" SMTPUTF8");
        }
        if let Some(dsn) = self.dsn.filter(|_| ehlo.has_extension("DSN")) {
            if let Some(ret) = &dsn.ret {
                mail.push_str(&format!(" RET={ret}"));
            }
            if let Some(envid) = &dsn.envid {
                mail.push_str(&format!(" ENVID={}", xtext(envid)));
            }
        }
        mail
    }

    /// `RCPT TO` for `rcpt`, with its DSN parameters when the next hop
    /// offers DSN.
    fn rcpt_command(&self, ehlo: &ServerReply, rcpt: &str) -> String {
        let mut line = format!("RCPT TO:<{rcpt}>");
        let params = self
            .dsn
            .filter(|_| ehlo.has_extension("DSN"))
            .and_then(|dsn| dsn.recipient(rcpt));
        if let Some(params) = params {
            if let Some(notify) = &params.notify {
                line.push_str(&format!(" NOTIFY={notify}"));
            }
            if let Some((kind, address)) = params.orcpt.as_deref().and_then(|o| o.split_once(';')) {
                line.push_str(&format!(" ORCPT={kind};{}", xtext(address)));
            }
        }
        line
    }

    /// Whether the message cannot be sent without SMTPUTF8: it asked for
    /// it and an address or the header section is not ASCII. One that
    /// asked but is all ASCII goes to a next hop without SMTPUTF8 as is.
    fn needs_smtputf8(&self, message: &[u8]) -> bool {
        self.smtputf8
            && (!self.mail_from.is_ascii()
                || self.rcpt_to.iter().any(|r| !r.is_ascii())
                || !crate::message::headers(message).is_ascii())
    }
}

/// A connection ready for `MAIL FROM`.
pub struct Client {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    ehlo: ServerReply,
    lmtp: bool,
    tls: bool,
    command_timeout: Duration,
    broken: bool,
    /// When the connection last finished a transaction.
    pub idle_since: Instant,
}

impl Client {
    /// Connects, reads the greeting, says EHLO (LHLO), does STARTTLS and
    /// AUTH as the route says.
    pub async fn connect(s: &Settings<'_>) -> Result<Client, DeliveryError> {
        let stream = open(&s.relay.target, s.connect_timeout).await?;
        let mut client = Client {
            stream,
            buf: Vec::new(),
            ehlo: ServerReply {
                code: 250,
                status: None,
                lines: Vec::new(),
            },
            lmtp: s.lmtp,
            tls: false,
            command_timeout: s.connect_timeout,
            broken: false,
            idle_since: Instant::now(),
        };
        client.expect("greeting", 220).await?;
        client.command_timeout = s.command_timeout;
        client.hello(s.helo_name).await?;
        let offered = client.ehlo.has_extension("STARTTLS");
        match (s.relay.tls, offered) {
            (RelayTls::StartTls, false) => return Err(DeliveryError::TlsNotOffered),
            (RelayTls::StartTls, true) | (RelayTls::Opportunistic, true) => {
                client.starttls(s).await?;
                client.hello(s.helo_name).await?;
            }
            _ => {}
        }
        if let Some(auth) = &s.relay.auth {
            if !client.tls {
                return Err(DeliveryError::AuthWithoutTls);
            }
            let line = auth_plain_line(&auth.username, &auth.password);
            client.write(&line, "AUTH").await?;
            client.expect("AUTH", 235).await?;
        }
        Ok(client)
    }

    /// Whether the connection may carry another transaction.
    pub fn reusable(&self) -> bool {
        !self.broken
    }

    /// Whether the next hop offers DSN (RFC 3461): if it does, the DSN
    /// requests went with the message and reporting is its job from here.
    pub fn offers_dsn(&self) -> bool {
        self.ehlo.has_extension("DSN")
    }

    /// Sends `XCLIENT LOGIN=<user>` (Postfix) when offered with LOGIN, then
    /// greets again; returns whether it was sent. The connection must not be
    /// reused afterwards: the next hop now believes we are that user.
    pub async fn xclient_login(
        &mut self,
        user: &str,
        helo_name: &str,
    ) -> Result<bool, DeliveryError> {
        let offers_login = self.ehlo.extension("XCLIENT").is_some_and(|attrs| {
            attrs
                .split_whitespace()
                .any(|a| a.eq_ignore_ascii_case("LOGIN"))
        });
        if !offers_login {
            return Ok(false);
        }
        self.broken = true; // one identity per connection
        self.write(
            format!("XCLIENT LOGIN={}\r\n", xtext(user)).as_bytes(),
            "XCLIENT",
        )
        .await?;
        self.expect("XCLIENT", 220).await?;
        self.hello(helo_name).await?;
        Ok(true)
    }

    /// One transaction: an outcome per recipient, in envelope order.
    pub async fn send(
        &mut self,
        env: &Envelope<'_>,
        message: &[u8],
    ) -> Result<Vec<Outcome>, DeliveryError> {
        let result = self.transaction(env, message).await;
        if result.is_err() {
            self.broken = true;
        }
        self.idle_since = Instant::now();
        result
    }

    async fn transaction(
        &mut self,
        env: &Envelope<'_>,
        message: &[u8],
    ) -> Result<Vec<Outcome>, DeliveryError> {
        // RFC 6531 §3.6.3: no downgrade of an internationalised message;
        // it fails here, before any command, and is bounced with 5.6.7.
        if env.needs_smtputf8(message) && !self.ehlo.has_extension("SMTPUTF8") {
            let failure = DeliveryError::Smtputf8NotOffered.failure();
            return Ok(vec![Outcome::NotDelivered(failure); env.rcpt_to.len()]);
        }
        let mail = env.mail_command(&self.ehlo, message.len());
        let rcpts: Vec<String> = env
            .rcpt_to
            .iter()
            .map(|r| env.rcpt_command(&self.ehlo, r))
            .collect();
        let (mail_reply, rcpt_replies, data_reply) = if self.ehlo.has_extension("PIPELINING") {
            let mut group = format!("{mail}\r\n");
            for r in &rcpts {
                group.push_str(r);
                group.push_str("\r\n");
            }
            group.push_str("DATA\r\n");
            self.write(group.as_bytes(), "MAIL/RCPT/DATA").await?;
            let mail_reply = self.read_reply("MAIL FROM").await?;
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            for _ in &rcpts {
                rcpt_replies.push(self.read_reply("RCPT TO").await?);
            }
            (
                mail_reply,
                rcpt_replies,
                Some(self.read_reply("DATA").await?),
            )
        } else {
            self.lockstep(&mail, &rcpts).await?
        };
        if mail_reply.class() != ReplyClass::Positive {
            self.abandon(data_reply.as_ref()).await?;
            let failure = DeliveryError::Rejected {
                during: "MAIL FROM",
                reply: mail_reply,
            }
            .failure();
            return Ok(vec![Outcome::NotDelivered(failure); env.rcpt_to.len()]);
        }
        let mut outcomes: Vec<Outcome> = rcpt_replies.iter().map(outcome_of).collect();
        let accepted: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i] == Outcome::Delivered)
            .collect();
        let data_reply = match data_reply {
            Some(r) if r.code == 354 && !accepted.is_empty() => r,
            other => {
                self.abandon(other.as_ref()).await?;
                if let Some(r) = other {
                    let failed = match r.class() {
                        // A 2xx to DATA is nonsense; treat it as transient.
                        ReplyClass::Positive => outcome_of(&ServerReply { code: 451, ..r }),
                        _ => outcome_of(&r),
                    };
                    accepted.iter().for_each(|&i| outcomes[i] = failed.clone());
                }
                return Ok(outcomes);
            }
        };
        debug_assert_eq!(data_reply.code, 354);
        self.write(&dot_stuffed(message), "message data").await?;
        if self.lmtp {
            for &i in &accepted {
                outcomes[i] = outcome_of(&self.read_reply("end of data").await?);
            }
        } else {
            let reply = self.read_reply("end of data").await?;
            accepted
                .iter()
                .for_each(|&i| outcomes[i] = outcome_of(&reply));
        }
        Ok(outcomes)
    }

    /// MAIL, RCPT and DATA one at a time, stopping early on failure.
    async fn lockstep(
        &mut self,
        mail: &str,
        rcpts: &[String],
    ) -> Result<(ServerReply, Vec<ServerReply>, Option<ServerReply>), DeliveryError> {
        let mail_reply = self.command(mail, "MAIL FROM").await?;
        if mail_reply.class() != ReplyClass::Positive {
            return Ok((mail_reply, Vec::new(), None));
        }
        let mut replies = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            replies.push(self.command(r, "RCPT TO").await?);
        }
        let any = replies.iter().any(|r| r.class() == ReplyClass::Positive);
        let data = if any {
            Some(self.command("DATA", "DATA").await?)
        } else {
            None
        };
        Ok((mail_reply, replies, data))
    }

    /// Ends a transaction that will not carry the message: an empty body
    /// if the server (wrongly) said 354, then RSET.
    async fn abandon(&mut self, data_reply: Option<&ServerReply>) -> Result<(), DeliveryError> {
        if data_reply.is_some_and(|r| r.code == 354) {
            self.write(b".\r\n", "empty data").await?;
            let n = if self.lmtp { 0 } else { 1 };
            for _ in 0..n {
                self.read_reply("end of data").await?;
            }
            self.broken |= self.lmtp; // LMTP would answer per recipient: do not guess
        }
        let reply = self.command("RSET", "RSET").await?;
        self.broken |= reply.class() != ReplyClass::Positive;
        Ok(())
    }

    /// Sends QUIT and closes, ignoring errors: the work is done.
    pub async fn quit(mut self) {
        let _ = timeout(Duration::from_secs(5), async {
            let _ = self.stream.write_all(b"QUIT\r\n").await;
            let _ = self.stream.flush().await;
            let _ = self.stream.read(&mut [0u8; 512]).await;
        })
        .await;
    }

    async fn hello(&mut self, name: &str) -> Result<(), DeliveryError> {
        let verb = if self.lmtp { "LHLO" } else { "EHLO" };
        self.ehlo = self.command(&format!("{verb} {name}"), "EHLO").await?;
        if self.ehlo.code != 250 {
            return Err(DeliveryError::Rejected {
                during: "EHLO",
                reply: self.ehlo.clone(),
            });
        }
        Ok(())
    }

    async fn starttls(&mut self, s: &Settings<'_>) -> Result<(), DeliveryError> {
        self.write(b"STARTTLS\r\n", "STARTTLS").await?;
        self.expect("STARTTLS", 220).await?;
        if !self.buf.is_empty() {
            return Err(DeliveryError::Protocol {
                during: "STARTTLS",
                detail: "plaintext after the 220 (possible injection)".into(),
            });
        }
        let host = match &s.relay.target {
            Target::Tcp { host, .. } => host.clone(),
            Target::Unix(_) => "localhost".to_string(),
        };
        let name = ServerName::try_from(host).map_err(|e| DeliveryError::Tls(e.to_string()))?;
        let placeholder: Box<dyn Io> = Box::new(tokio::io::duplex(1).0);
        let plain = std::mem::replace(&mut self.stream, placeholder);
        let connector = tokio_rustls::TlsConnector::from(s.tls.clone());
        let tls = timeout(self.command_timeout, connector.connect(name, plain))
            .await
            .map_err(|_| DeliveryError::Timeout {
                during: "TLS handshake",
            })?
            .map_err(|e| DeliveryError::Tls(e.to_string()))?;
        self.stream = Box::new(tls);
        self.tls = true;
        Ok(())
    }

    async fn command(
        &mut self,
        line: &str,
        during: &'static str,
    ) -> Result<ServerReply, DeliveryError> {
        self.write(format!("{line}\r\n").as_bytes(), during).await?;
        self.read_reply(during).await
    }

    async fn expect(
        &mut self,
        during: &'static str,
        code: u16,
    ) -> Result<ServerReply, DeliveryError> {
        let reply = self.read_reply(during).await?;
        if reply.code != code {
            return Err(DeliveryError::Rejected { during, reply });
        }
        Ok(reply)
    }

    async fn write(&mut self, bytes: &[u8], during: &'static str) -> Result<(), DeliveryError> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match timeout(self.command_timeout, io).await {
            Ok(result) => result.map_err(|source| DeliveryError::Io { during, source }),
            Err(_) => Err(DeliveryError::Timeout { during }),
        }
    }

    async fn read_reply(&mut self, during: &'static str) -> Result<ServerReply, DeliveryError> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(DeliveryError::Protocol {
                        during,
                        detail: format!("{e:?}"),
                    });
                }
            }
            let mut chunk = [0u8; 4096];
            let n = match timeout(self.command_timeout, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(DeliveryError::Timeout { during }),
                Ok(Err(source)) => return Err(DeliveryError::Io { during, source }),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                let source =
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
                return Err(DeliveryError::Io { during, source });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

async fn open(target: &Target, limit: Duration) -> Result<Box<dyn Io>, DeliveryError> {
    let describe = || match target {
        Target::Tcp { host, port } => format!("{host}:{port}"),
        Target::Unix(path) => path.display().to_string(),
    };
    let connect = async {
        match target {
            Target::Tcp { host, port } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                Ok(Box::new(tcp) as Box<dyn Io>)
            }
            #[cfg(unix)]
            Target::Unix(path) => {
                Ok(Box::new(tokio::net::UnixStream::connect(path).await?) as Box<dyn Io>)
            }
            #[cfg(not(unix))]
            Target::Unix(_) => Err(std::io::Error::other("Unix sockets need a Unix system")),
        }
    };
    match timeout(limit, connect).await {
        Ok(result) => result.map_err(|source| DeliveryError::Connect {
            target: describe(),
            source,
        }),
        Err(_) => Err(DeliveryError::Timeout { during: "connect" }),
    }
}

/// `AUTH PLAIN <base64(\0user\0password)>` CRLF, in buffers sized up front
/// (no reallocation leaves a copy behind) that are wiped when dropped.
fn auth_plain_line(username: &str, password: &Secret) -> Zeroizing<Vec<u8>> {
    let mut plain = Zeroizing::new(Vec::with_capacity(2 + username.len() + password.len()));
    plain.push(0);
    plain.extend_from_slice(username.as_bytes());
    plain.push(0);
    plain.extend_from_slice(password.expose());
    let encoded_len = base64::encoded_len(plain.len(), true).unwrap_or(usize::MAX / 4);
    let mut line = Zeroizing::new(Vec::with_capacity(13 + encoded_len));
    line.extend_from_slice(b"AUTH PLAIN ");
    let start = line.len();
    line.resize(start + encoded_len, 0);
    // Invariant: the buffer was sized with `encoded_len` for this input.
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(&*plain, &mut line[start..])
        .expect("the buffer fits the encoding");
    line.truncate(start + written);
    line.extend_from_slice(b"\r\n");
    line
}

/// xtext (RFC 3461 §4): `+HH` for `+`, `=` and anything outside `!`..`~`.
pub fn xtext(value: &str) -> String {
    portcullis_proto::command::encode_xtext(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_plain_line_encodes_user_and_secret() {
        let line = auth_plain_line("bob", &Secret::from("battery staple"));
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "AUTH PLAIN AGJvYgBiYXR0ZXJ5IHN0YXBsZQ==\r\n"
        );
    }

    fn ehlo(keywords: &[&str]) -> ServerReply {
        let mut lines = vec!["mx.test".to_string()];
        lines.extend(keywords.iter().map(|k| k.to_string()));
        ServerReply {
            code: 250,
            status: None,
            lines,
        }
    }

    /// SMTPUTF8 is needed only for a UTF-8 address or header; the DSN
    /// parameters go only to a next hop that offers DSN, xtext-encoded.
    #[test]
    fn parameters_follow_what_the_next_hop_offers() {
        let dsn = DsnMeta {
            ret: Some("HDRS".into()),
            envid: Some("a b".into()),
            recipients: vec![portcullis_spool::RcptDsnMeta {
                rcpt: "r@x".into(),
                notify: Some("NEVER".into()),
                orcpt: Some("rfc822;o+1@x".into()),
            }],
        };
        let rcpts = ["r@x".to_string()];
        let env = Envelope {
            mail_from: "s@x",
            rcpt_to: &rcpts,
            eight_bit: true,
            smtputf8: true,
            dsn: Some(&dsn),
        };
        assert!(!env.needs_smtputf8(b"Subject: ascii\r\n\r\nb\xc3\xbcdy\r\n"));
        assert!(env.needs_smtputf8("Subject: gr\u{fc}n\r\n\r\n".as_bytes()));
        let full = ehlo(&["8BITMIME", "SIZE 100", "SMTPUTF8", "DSN"]);
        assert_eq!(
            env.mail_command(&full, 42),
            "MAIL FROM:<s@x> BODY=8BITMIME SIZE=42 SMTPUTF8 RET=HDRS ENVID=a+20b"
        );
        assert_eq!(
            env.rcpt_command(&full, "r@x"),
            "RCPT TO:<r@x> NOTIFY=NEVER ORCPT=rfc822;o+2B1@x"
        );
        let bare = ehlo(&["PIPELINING"]);
        assert_eq!(env.mail_command(&bare, 42), "MAIL FROM:<s@x>");
        assert_eq!(env.rcpt_command(&bare, "r@x"), "RCPT TO:<r@x>");
        let utf8 = ["\u{7528}@x".to_string()];
        let env = Envelope {
            rcpt_to: &utf8,
            ..env
        };
        assert!(env.needs_smtputf8(b"Subject: ascii\r\n\r\n"));
    }

    #[test]
    fn xtext_escapes() {
        assert_eq!(xtext("alice"), "alice");
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("é"), "+C3+A9");
    }
}

//! A deliberately minimal blocking SMTP client for the few checks no
//! third-party client can make: bytes in the same packet as STARTTLS, an
//! over-long line, a SIGKILL the instant 250 arrives.
//!
//! It trusts any certificate: the server under test generates a
//! self-signed one, and certificate checking is not what these tests guard.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The lines without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// `"<code> <first line>"`, handy for `starts_with` assertions.
    pub fn first_line(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }

    /// Whether any line (case-insensitively) starts with `keyword`, as EHLO
    /// extensions do.
    pub fn has_line(&self, keyword: &str) -> bool {
        let keyword = keyword.to_ascii_uppercase();
        self.lines
            .iter()
            .any(|l| l.to_ascii_uppercase().starts_with(&keyword))
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Upgrading,
}

/// A raw SMTP connection to 127.0.0.1.
pub struct RawClient {
    stream: Stream,
    buffer: Vec<u8>,
}

impl RawClient {
    /// Plain TCP connection; the greeting is read and returned with it.
    pub fn connect(port: u16) -> (RawClient, Reply) {
        let tcp = tcp(port);
        let mut client = RawClient {
            stream: Stream::Plain(tcp),
            buffer: Vec::new(),
        };
        let greeting = client.read_reply();
        (client, greeting)
    }

    /// TLS from the first byte (implicit TLS listener).
    pub fn connect_tls(port: u16) -> (RawClient, Reply) {
        let mut client = RawClient {
            stream: Stream::Plain(tcp(port)),
            buffer: Vec::new(),
        };
        client.upgrade();
        let greeting = client.read_reply();
        (client, greeting)
    }

    /// Sends raw bytes in one write.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Stream::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Stream::Upgrading => unreachable!("stream is only Upgrading inside upgrade()"),
        }
    }

    /// Sends `line` + CRLF and reads the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes())
            .expect("command can be sent");
        self.read_reply()
    }

    /// `AUTH PLAIN` with an initial response and an empty authzid.
    pub fn auth_plain(&mut self, user: &str, password: &str) -> Reply {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.cmd(&format!("AUTH PLAIN {token}"))
    }

    /// `STARTTLS`, expecting 220, then the handshake.
    pub fn starttls(&mut self) -> Reply {
        let reply = self.cmd("STARTTLS");
        assert_eq!(reply.code, 220, "STARTTLS refused: {reply:?}");
        self.upgrade();
        reply
    }

    /// Runs the TLS handshake on the current TCP stream. Panics if the
    /// server sent plaintext bytes we have not consumed yet: anything after
    /// the 220 and before the handshake is a protocol violation.
    pub fn upgrade(&mut self) {
        assert!(
            self.buffer.is_empty(),
            "server sent plaintext after its STARTTLS reply: {:?}",
            String::from_utf8_lossy(&self.buffer)
        );
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            panic!("upgrade() on a stream that is already TLS");
        };
        let name = ServerName::try_from("localhost").expect("`localhost` is a valid server name");
        let conn =
            ClientConnection::new(tls_config(), name).expect("client connection can be built");
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .expect("TLS handshake completes");
        }
        self.stream = Stream::Tls(Box::new(tls));
    }

    /// Reads one complete reply. Panics on EOF or timeout.
    pub fn read_reply(&mut self) -> Reply {
        match self.try_read_reply() {
            Ok(Some(reply)) => reply,
            Ok(None) => panic!("connection closed while waiting for a reply"),
            Err(e) => panic!("error waiting for a reply: {e}"),
        }
    }

    /// Reads one reply; `Ok(None)` on a clean EOF before any byte of it.
    pub fn try_read_reply(&mut self) -> std::io::Result<Option<Reply>> {
        let mut lines = Vec::new();
        loop {
            let Some(line) = self.read_line()? else {
                if lines.is_empty() {
                    return Ok(None);
                }
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "EOF inside a multi-line reply",
                ));
            };
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| bad_line(&line))?;
            let separator = line.as_bytes().get(3).copied().unwrap_or(b' ');
            lines.push(line.get(4..).unwrap_or("").to_string());
            match separator {
                b'-' => continue,
                b' ' => return Ok(Some(Reply { code, lines })),
                _ => return Err(bad_line(&line)),
            }
        }
    }

    /// True if the server has closed the connection (EOF or reset) within
    /// the read timeout; any reply read meanwhile is discarded.
    pub fn is_closed(&mut self) -> bool {
        loop {
            match self.try_read_reply() {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    fn read_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            if let Some(pos) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..pos + 2).take(pos).collect();
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            let mut chunk = [0u8; 4096];
            let n = match &mut self.stream {
                Stream::Plain(s) => s.read(&mut chunk),
                Stream::Tls(s) => s.read(&mut chunk),
                Stream::Upgrading => unreachable!("stream is only Upgrading inside upgrade()"),
            };
            let n = match n {
                // rustls reports a peer that closed without close_notify as UnexpectedEof.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof && self.buffer.is_empty() => 0,
                other => other?,
            };
            if n == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn bad_line(line: &str) -> std::io::Error {
    std::io::Error::new(
        ErrorKind::InvalidData,
        format!("not an SMTP reply line: {line:?}"),
    )
}

fn tcp(port: u16) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("server accepts TCP connections");
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout can be set");
    tcp.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout can be set");
    tcp
}

fn tls_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(
            portcullis_dangerous_tls::DangerousAcceptAnyCertificate::new(provider),
        )
        .with_no_client_auth();
    Arc::new(config)
}

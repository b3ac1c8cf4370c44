//! One SMTP client connection: a TCP or TLS stream, a bounded reply reader,
//! and a per-step timeout on everything that waits for the server.
//!
//! Bounds: a reply line longer than [`MAX_LINE`] or a multi-line reply with
//! more than [`MAX_LINES`] lines is an error, not a bigger buffer, so a
//! broken or hostile server cannot make the load tool grow without limit.
//! Every wait (connect, handshake, each reply) is cut by the step timeout.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Longest reply line we accept (RFC 5321 says 512; servers exceed it).
pub const MAX_LINE: usize = 2048;
/// Most lines in one multi-line reply (EHLO lists are the longest).
pub const MAX_LINES: usize = 100;
/// Read buffer size per connection.
const READ_CHUNK: usize = 4096;

/// Why a step failed below the SMTP level.
#[derive(Debug)]
pub enum WireError {
    /// No answer within the step timeout.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// Socket error.
    Io(io::ErrorKind),
    /// TLS handshake failed (the rustls message).
    Tls(String),
    /// The bytes are not an SMTP reply (the reason).
    Malformed(&'static str),
}

impl WireError {
    /// Short key used in the error table.
    pub fn key(&self) -> String {
        match self {
            WireError::Timeout => "timeout".into(),
            WireError::Closed => "closed".into(),
            WireError::Io(kind) => format!("io:{kind:?}"),
            WireError::Tls(_) => "tls".into(),
            WireError::Malformed(why) => format!("malformed:{why}"),
        }
    }

    /// Detail shown as the example of this error.
    pub fn detail(&self) -> String {
        match self {
            WireError::Tls(message) => message.clone(),
            other => other.key(),
        }
    }
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => WireError::Closed,
            kind => match e.get_ref().map(|inner| inner.to_string()) {
                // tokio-rustls reports TLS alerts as InvalidData with the
                // rustls error inside.
                Some(text) if kind == io::ErrorKind::InvalidData => WireError::Tls(text),
                _ => WireError::Io(kind),
            },
        }
    }
}

/// One SMTP reply: the code and the text of each line (code stripped).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The first line as the server sent it, for error examples.
    pub fn first_line(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }

    /// The text after `334 `, for SASL challenges.
    pub fn text(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a handshake has taken the TCP stream.
    Gone,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// A connection with its unread input.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Start of unread bytes in `buf`.
    pos: usize,
    timeout: Duration,
}

impl Conn {
    /// Connects, bounded by `timeout`; sets TCP_NODELAY (SMTP is
    /// request/reply: Nagle would add a delay to every pipelined group).
    pub async fn connect(addr: std::net::SocketAddr, timeout: Duration) -> Result<Conn, WireError> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| WireError::Timeout)??;
        tcp.set_nodelay(true)?;
        Ok(Conn {
            stream: Stream::Plain(tcp),
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            timeout,
        })
    }

    /// Runs the TLS handshake on the TCP stream (implicit TLS, or after
    /// `220` to STARTTLS). Unread plaintext at this point means the server
    /// sent something before the handshake: a protocol error (the STARTTLS
    /// injection pattern), never fed to the TLS layer.
    pub async fn start_tls(
        &mut self,
        connector: &TlsConnector,
        name: ServerName<'static>,
    ) -> Result<(), WireError> {
        if self.pos < self.buf.len() {
            return Err(WireError::Malformed("data-before-tls"));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(WireError::Malformed("tls-twice"));
        };
        let tls = tokio::time::timeout(self.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| WireError::Timeout)??;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Writes `bytes` (one command or a pipelined group) in one go.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| WireError::Timeout)??;
        Ok(())
    }

    /// Reads one complete reply, bounded in size and time.
    pub async fn reply(&mut self) -> Result<Reply, WireError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.read_reply())
            .await
            .map_err(|_| WireError::Timeout)?
    }

    /// `send` then `reply`.
    pub async fn command(&mut self, line: &[u8]) -> Result<Reply, WireError> {
        self.send(line).await?;
        self.reply().await
    }

    async fn read_reply(&mut self) -> Result<Reply, WireError> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.read_line().await?;
            let (this_code, last, text) = parse_line(&line)?;
            if *code.get_or_insert(this_code) != this_code {
                return Err(WireError::Malformed("code-changed"));
            }
            lines.push(text);
            if last {
                return Ok(Reply {
                    code: this_code,
                    lines,
                });
            }
            if lines.len() >= MAX_LINES {
                return Err(WireError::Malformed("too-many-lines"));
            }
        }
    }

    /// One line without its line end; LF alone is accepted.
    async fn read_line(&mut self) -> Result<String, WireError> {
        loop {
            let unread = &self.buf[self.pos..];
            if let Some(end) = unread.iter().position(|&b| b == b'\n') {
                let line = &unread[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let text = String::from_utf8_lossy(line).into_owned();
                self.pos += end + 1;
                return Ok(text);
            }
            if unread.len() > MAX_LINE {
                return Err(WireError::Malformed("line-too-long"));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), WireError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let read = self.stream.read(&mut self.buf[start..]).await;
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(start);
                return Err(e.into());
            }
        };
        self.buf.truncate(start + n);
        if n == 0 {
            return Err(WireError::Closed);
        }
        Ok(())
    }

    /// Frees the read buffer while the connection idles (--hold).
    pub fn shrink(&mut self) {
        if self.pos == self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

/// `250-text` / `250 text` / `250` → (code, is last line, text).
fn parse_line(line: &str) -> Result<(u16, bool, String), WireError> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return Err(WireError::Malformed("no-code"));
    }
    let code: u16 = line[..3]
        .parse()
        .expect("three ASCII digits parse as a number");
    match bytes.get(3) {
        None => Ok((code, true, String::new())),
        Some(b' ') => Ok((code, true, line[4..].to_string())),
        Some(b'-') => Ok((code, false, line[4..].to_string())),
        Some(_) => Err(WireError::Malformed("bad-separator")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        assert_eq!(
            parse_line("250-PIPELINING").unwrap(),
            (250, false, "PIPELINING".into())
        );
        assert_eq!(parse_line("221 bye").unwrap(), (221, true, "bye".into()));
        assert_eq!(parse_line("354").unwrap(), (354, true, String::new()));
        assert!(parse_line("25").is_err());
        assert!(parse_line("250_x").is_err());
        assert!(parse_line("abc def").is_err());
    }
}

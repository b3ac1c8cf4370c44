//! The one reply catalog: every reply code, enhanced status code (RFC 3463)
//! and default text the server sends is a named constructor here, so the
//! RFC mapping lives in one place and handlers never spell out `"535 5.7.8"`.
//! Policy can still change a reply's text or code through [`Reply::with_text`]
//! and [`Reply::new`].

use std::borrow::Cow;
use std::fmt;

/// An enhanced status code `class.subject.detail` (RFC 3463).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply, possibly of several lines.
///
/// The first line is held apart from the rest: nearly every reply has one
/// line, and several are made per message, so one line costs no list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<EnhancedCode>,
    first: Cow<'static, str>,
    more: Vec<Cow<'static, str>>,
}

macro_rules! catalog {
    ($( $(#[$doc:meta])* $name:ident => $code:literal $(($c:literal, $s:literal, $d:literal))? $text:literal; )*) => {
        impl Reply {
            $(
                $(#[$doc])*
                pub fn $name() -> Reply {
                    Reply::new($code, catalog!(@status $(($c, $s, $d))?), $text)
                }
            )*
        }
    };
    (@status ($c:literal, $s:literal, $d:literal)) => { Some(EnhancedCode($c, $s, $d)) };
    (@status) => { None };
}

catalog! {
    /// `250` after NOOP, RSET and other commands with nothing to say.
    ok => 250 (2, 0, 0) "OK";
    /// `250` after an accepted MAIL FROM.
    sender_ok => 250 (2, 1, 0) "Sender OK";
    /// `250` after an accepted RCPT TO.
    recipient_ok => 250 (2, 1, 5) "Recipient OK";
    /// `354` after DATA.
    start_data => 354 (0, 0, 0) "End data with <CR><LF>.<CR><LF>";
    /// `221` after QUIT.
    closing => 221 (2, 0, 0) "Bye";
    /// `220` after STARTTLS: the handshake starts next.
    ready_for_tls => 220 (2, 0, 0) "Ready to start TLS";
    /// `235` after a successful AUTH.
    auth_succeeded => 235 (2, 7, 0) "Authentication successful";
    /// `252` for VRFY: we never confirm addresses (RFC 5321 §3.5.3).
    cannot_verify => 252 (2, 5, 0) "Cannot VRFY user, but will accept message and attempt delivery";
    /// `214` for HELP.
    help => 214 (2, 0, 0) "See RFC 5321, RFC 4954; commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT";
    /// `421` when the server is going down.
    shutting_down => 421 (4, 3, 2) "Service shutting down, try again later";
    /// `421` after too long a silence.
    idle_timeout => 421 (4, 4, 2) "Idle timeout, closing connection";
    /// `421` when a command line did not arrive whole in time (a client
    /// sending it byte by byte to hold the connection).
    command_timeout => 421 (4, 4, 2) "Command not received in time, closing connection";
    /// `421` when message data arrives slower than the minimum rate.
    data_too_slow => 421 (4, 4, 2) "Message data too slow, closing connection";
    /// `421` when the connection limit is reached.
    too_many_connections => 421 (4, 7, 0) "Too many connections, try again later";
    /// `421` after too many commands without authenticating.
    too_many_unauthenticated_commands => 421 (4, 7, 0) "Too many commands without authentication, closing connection";
    /// `421` after too many failed AUTH attempts on one connection.
    too_many_auth_failures => 421 (4, 7, 0) "Too many failed authentication attempts, closing connection";
    /// `421` after too many unknown or malformed commands.
    too_many_invalid_commands => 421 (4, 7, 0) "Too many invalid commands, closing connection";
    /// `421` at the greeting: the address is banned (brute-force defence).
    banned => 421 (4, 7, 0) "Too many failed logins from your address, try again later";
    /// `421` at connect: too many connections or too many lately from one address.
    too_many_connections_from_address => 421 (4, 7, 0) "Too many connections from your address, try again later";
    /// `421` at connect: too many open connections from the client's /24 (IPv4) or /64 (IPv6).
    too_many_connections_from_network => 421 (4, 7, 0) "Too many connections from your network, try again later";
    /// `553` for a MAIL FROM the authenticated user does not own.
    sender_not_owned => 553 (5, 7, 1) "Sender address not owned by the authenticated user";
    /// `550` after DATA for a `From:` address the authenticated user does not own.
    from_header_not_owned => 550 (5, 7, 1) "From: header address not owned by the authenticated user";
    /// `550` after DATA when `From:` is checked and the message has no or
    /// several `From:` fields (RFC 5322 §3.6 allows exactly one).
    from_header_not_single => 550 (5, 7, 1) "Exactly one From: header is required";
    /// `550` for a message naming a tenant its authorization identity may not use.
    tenant_not_authorized => 550 (5, 7, 1) "Not authorized to send for this tenant";
    /// `550` for several tenant headers, or a tenant value that is not one
    /// plain token (encoded, quoted, commented): which tenant it names
    /// would depend on the reader.
    tenant_header_ambiguous => 550 (5, 7, 1) "Exactly one tenant header with a plain tenant name is required";
    /// `550` for a message the policy script refused (`smtp_server_message_received`).
    message_refused_by_policy => 550 (5, 7, 1) "Message refused by policy";
    /// `451` for a message the policy script deferred, or could not judge.
    message_deferred_by_policy => 451 (4, 7, 1) "Message deferred by policy, try again later";
    /// `451` at MAIL or RCPT when the identity is over a sending limit
    /// (the text names the limit: [`Reply::sending_limit_reached`]).
    sending_limit => 451 (4, 7, 1) "Sending limit reached, try again later";
    /// `451` for new messages from an identity a compromise signal deferred.
    sending_deferred => 451 (4, 7, 1) "Sending from this account is deferred, try again later";
    /// `421` to an open session whose identity was suspended.
    identity_suspended => 421 (4, 7, 1) "Account suspended, closing connection";
    /// `454` during a user's cool-down after repeated failed logins.
    auth_cooling_down => 454 (4, 7, 0) "Temporary authentication failure, try again later";
    /// `451` when the message could not be stored.
    local_error => 451 (4, 3, 0) "Local error in processing, message not accepted, try again later";
    /// `452` when a transaction has too many recipients.
    too_many_recipients => 452 (4, 5, 3) "Too many recipients";
    /// `454` when the credential store cannot be reached.
    auth_temporary_failure => 454 (4, 7, 0) "Temporary authentication failure";
    /// `454` when STARTTLS is asked for but no certificate is configured.
    tls_unavailable => 454 (4, 7, 0) "TLS not available";
    /// `500` for a verb we do not know.
    unknown_command => 500 (5, 5, 1) "Command unrecognized";
    /// `500` for a command line or AUTH response over the limit.
    line_too_long => 500 (5, 5, 6) "Line too long";
    /// `501` when the client cancels AUTH with `*`.
    auth_cancelled => 501 (5, 7, 0) "Authentication cancelled";
    /// `501` for invalid base64 in an AUTH exchange.
    invalid_base64 => 501 (5, 5, 2) "Invalid base64 data";
    /// `501` for a SASL message that does not follow its mechanism's syntax.
    malformed_auth_data => 501 (5, 5, 2) "Malformed authentication data";
    /// `501` for an initial response to a mechanism that must speak first.
    initial_response_not_allowed => 501 (5, 5, 4) "This mechanism does not take an initial response";
    /// `501` for an invalid address.
    invalid_address => 501 (5, 1, 3) "Invalid address syntax";
    /// `502` for AUTH on a listener that offers none.
    auth_not_offered => 502 (5, 5, 1) "AUTH not available on this port";
    /// `502` for a command we recognize but do not implement (EXPN, TURN…).
    not_implemented => 502 (5, 5, 1) "Command not implemented";
    /// `503` for MAIL, AUTH or STARTTLS before EHLO/HELO.
    need_ehlo => 503 (5, 5, 1) "Send EHLO or HELO first";
    /// `503` for a second AUTH after success.
    already_authenticated => 503 (5, 5, 1) "Already authenticated";
    /// `503` for AUTH during a mail transaction.
    auth_in_transaction => 503 (5, 5, 1) "AUTH not allowed during a mail transaction";
    /// `503` for a nested MAIL.
    nested_mail => 503 (5, 5, 1) "Sender already specified";
    /// `503` for RCPT before MAIL.
    need_mail => 503 (5, 5, 1) "Need MAIL command first";
    /// `503` for DATA before any accepted RCPT.
    need_rcpt => 503 (5, 5, 1) "Need RCPT command first";
    /// `503` for STARTTLS inside TLS.
    already_tls => 503 (5, 5, 1) "TLS already active";
    /// `503` for XCLIENT inside a mail transaction (as Postfix).
    xclient_in_transaction => 503 (5, 5, 1) "Error: MAIL transaction in progress";
    /// `550` for XCLIENT from a client outside the trusted networks (as Postfix).
    xclient_refused => 550 (5, 7, 0) "Error: insufficient authorization";
    /// `504` for a SASL mechanism we do not offer.
    unknown_mechanism => 504 (5, 5, 4) "Unrecognized authentication mechanism";
    /// `530` for MAIL before AUTH where AUTH is required.
    auth_required => 530 (5, 7, 0) "Authentication required";
    /// `530` for a command that needs TLS first.
    tls_required => 530 (5, 7, 0) "Must issue a STARTTLS command first";
    /// `535` for wrong credentials (whatever the internal reason).
    auth_failed => 535 (5, 7, 8) "Authentication credentials invalid";
    /// `525` for the right credentials of a disabled account (RFC 5248
    /// 5.7.13); a wrong password to it gets `535` like any.
    account_disabled => 525 (5, 7, 13) "User account disabled";
    /// `534` for a right secret used in a way the account does not allow
    /// (RFC 4954 §6, 5.7.9): its own password where app passwords are required.
    auth_mechanism_too_weak => 534 (5, 7, 9) "Authentication mechanism is too weak; use an app password";
    /// `500` for a well-formed SASL response whose user name, password or
    /// token is longer than any we store (RFC 4954 §4), not a syntax error.
    auth_exchange_too_long => 500 (5, 5, 6) "Authentication Exchange line is too long";
    /// `538` for AUTH before TLS (RFC 4954 §6).
    encryption_required => 538 (5, 7, 11) "Encryption required for requested authentication mechanism";
    /// `552` for a message or SIZE= over the limit.
    message_too_big => 552 (5, 3, 4) "Message size exceeds fixed maximum message size";
    /// `555` for an unknown MAIL/RCPT parameter.
    unknown_parameter => 555 (5, 5, 4) "Unsupported parameter";
    /// `553` for a non-ASCII address in a transaction without `SMTPUTF8`
    /// (RFC 6531 §3.5).
    non_ascii_address => 553 (5, 6, 7) "Non-ASCII address requires SMTPUTF8";
    /// `503` for DATA in a transaction that began with BDAT (RFC 3030 §3:
    /// the two are not mixed).
    data_after_bdat => 503 (5, 5, 1) "DATA not allowed after BDAT in one transaction";
}

impl Reply {
    /// `451 4.7.1` naming the sending limit that was reached.
    pub fn sending_limit_reached(limit: &str) -> Reply {
        Reply::sending_limit()
            .with_text(format!("Sending limit reached ({limit}), try again later"))
    }

    /// A reply with a code, optional enhanced code and one line of text.
    pub fn new(
        code: u16,
        status: Option<EnhancedCode>,
        text: impl Into<Cow<'static, str>>,
    ) -> Reply {
        // `0.0.0` in the catalog marks replies that carry no enhanced code
        // (354 is an intermediate reply, RFC 2034 §3).
        let status = status.filter(|s| s.0 != 0);
        Reply {
            code,
            status,
            first: text.into(),
            more: Vec::new(),
        }
    }

    /// A multi-line reply (`code-…` lines, then `code …`): one line per
    /// entry of `lines`; none is a reply with an empty text.
    pub fn multiline(code: u16, status: Option<EnhancedCode>, lines: Vec<String>) -> Reply {
        let mut lines = lines.into_iter().map(Cow::Owned);
        let mut reply = Reply::new(code, status, lines.next().unwrap_or_default());
        reply.more = lines.collect();
        reply
    }

    /// The `220` greeting. RFC 2034 gives greetings no enhanced code.
    pub fn greeting(hostname: &str) -> Reply {
        Reply::new(220, None, [hostname, " ESMTP portcullis"].concat())
    }

    /// The `250` answer to HELO.
    pub fn helo(hostname: &str) -> Reply {
        Reply::new(250, None, hostname.to_string())
    }

    /// `250` after a BDAT chunk other than the last (RFC 3030 §2).
    pub fn chunk_received(octets: u64) -> Reply {
        Reply::new(
            250,
            Some(EnhancedCode(2, 0, 0)),
            format!("{octets} octets received"),
        )
    }

    /// `250 2.0.0 OK queued as <id>` once the message is durable.
    pub fn queued(id: &str) -> Reply {
        Reply::new(
            250,
            Some(EnhancedCode(2, 0, 0)),
            ["OK queued as ", id].concat(),
        )
    }

    /// A `334` SASL challenge, already base64-encoded.
    pub fn auth_challenge(base64: String) -> Reply {
        Reply::new(334, None, base64)
    }

    /// A `501` that names the expected syntax.
    pub fn syntax_error(expected: &'static str) -> Reply {
        Reply::new(
            501,
            Some(EnhancedCode(5, 5, 4)),
            format!("Syntax: {expected}"),
        )
    }

    /// Replaces the text, keeping code and enhanced code.
    pub fn with_text(mut self, text: impl Into<Cow<'static, str>>) -> Reply {
        self.first = text.into();
        self.more = Vec::new();
        self
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn status(&self) -> Option<EnhancedCode> {
        self.status
    }

    /// The text, lines joined by a space (policy keeps it when it changes
    /// only the code).
    pub fn text(&self) -> String {
        self.lines().collect::<Vec<_>>().join(" ")
    }

    fn lines(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.first)
            .chain(&self.more)
            .map(|line| line.as_ref())
    }

    /// Whether this is a positive completion (2xx) or intermediate (3xx).
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the wire form (`code[-| ]status text CRLF` per line).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // The code and the status are written once, on the stack, by hand:
        // `write!` through the formatting machinery cost about a thousand
        // instructions per reply, several times per message. At most
        // "65535" and "255.65535.65535": 32 bytes always suffice.
        let mut buf = [0u8; 32];
        let mut at = push_decimal(&mut buf, 0, u32::from(self.code));
        let code_end = at;
        if let Some(EnhancedCode(class, subject, detail)) = self.status {
            at = push_decimal(&mut buf, at, u32::from(class));
            buf[at] = b'.';
            at = push_decimal(&mut buf, at + 1, u32::from(subject));
            buf[at] = b'.';
            at = push_decimal(&mut buf, at + 1, u32::from(detail));
        }
        let (code, status) = (&buf[..code_end], &buf[code_end..at]);
        let last = self.more.len();
        for (i, line) in self.lines().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(code);
            out.push(sep as u8);
            if self.status.is_some() {
                out.extend_from_slice(status);
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The multi-line `250` answer to EHLO, written straight into the output:
/// our name, then one keyword per line, the last one with `250 `. Every
/// session says EHLO, and built as a [`Reply`] it cost a vector, a string
/// per line that is not fixed, and a pass over them.
pub struct EhloReply<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> EhloReply<'a> {
    /// Writes `250-<hostname> greets <client_name>`.
    pub fn start(out: &'a mut Vec<u8>, hostname: &str, client_name: &str) -> EhloReply<'a> {
        out.extend_from_slice(b"250-");
        out.extend_from_slice(hostname.as_bytes());
        out.extend_from_slice(b" greets ");
        out.extend_from_slice(client_name.as_bytes());
        out.extend_from_slice(b"\r\n");
        EhloReply { out }
    }

    /// A keyword line, more lines to follow.
    pub fn keyword(&mut self, keyword: &str) {
        self.line(b'-', keyword, []);
    }

    /// A keyword line with its parameters (each preceded by a space), more
    /// lines to follow.
    pub fn keyword_with<'p>(&mut self, keyword: &str, params: impl IntoIterator<Item = &'p str>) {
        self.line(b'-', keyword, params);
    }

    /// The last keyword line (`250 <keyword>`).
    pub fn finish(mut self, keyword: &str) {
        self.line(b' ', keyword, []);
    }

    fn line<'p>(&mut self, sep: u8, keyword: &str, params: impl IntoIterator<Item = &'p str>) {
        self.out.extend_from_slice(b"250");
        self.out.push(sep);
        self.out.extend_from_slice(keyword.as_bytes());
        for param in params {
            self.out.push(b' ');
            self.out.extend_from_slice(param.as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Writes `n` in decimal into `buf` at `at`; returns the end.
fn push_decimal(buf: &mut [u8; 32], at: usize, n: u32) -> usize {
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (n, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, digit) in digits[..len].iter().rev().enumerate() {
        buf[at + i] = *digit;
    }
    at + len
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(String::from_utf8_lossy(&out).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_line_with_enhanced_code() {
        assert_eq!(
            wire(&Reply::auth_failed()),
            "535 5.7.8 Authentication credentials invalid\r\n"
        );
        assert_eq!(
            wire(&Reply::encryption_required()).get(..10),
            Some("538 5.7.11")
        );
    }

    #[test]
    fn intermediate_replies_carry_no_enhanced_code() {
        assert_eq!(
            wire(&Reply::start_data()),
            "354 End data with <CR><LF>.<CR><LF>\r\n"
        );
        assert_eq!(wire(&Reply::auth_challenge(String::new())), "334 \r\n");
    }

    #[test]
    fn multi_line_ehlo() {
        let mut out = Vec::new();
        let mut r = EhloReply::start(&mut out, "mx", "[127.0.0.1]");
        r.keyword("PIPELINING");
        r.keyword_with("SIZE", ["1024"]);
        r.keyword_with("AUTH", ["PLAIN", "LOGIN"]);
        r.keyword_with("NONE", []);
        r.finish("8BITMIME");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "250-mx greets [127.0.0.1]\r\n250-PIPELINING\r\n250-SIZE 1024\r\n\
             250-AUTH PLAIN LOGIN\r\n250-NONE\r\n250 8BITMIME\r\n"
        );
    }

    #[test]
    fn text_can_be_replaced() {
        let r = Reply::auth_failed().with_text("Go away");
        assert_eq!(r.to_string(), "535 5.7.8 Go away");
        assert_eq!(r.code(), 535);
    }

    #[test]
    fn widest_code_and_status_on_every_line() {
        let status = Some(EnhancedCode(255, 65535, 65535));
        let r = Reply::multiline(65535, status, vec!["a".into(), String::new(), "c".into()]);
        assert_eq!(
            wire(&r),
            "65535-255.65535.65535 a\r\n65535-255.65535.65535\r\n65535 255.65535.65535 c\r\n"
        );
        let r = Reply::multiline(250, None, vec!["x".into(), "y".into()]);
        assert_eq!(wire(&r), "250-x\r\n250 y\r\n");
    }

    #[test]
    fn a_multiline_reply_is_whole_through_text_and_replacement() {
        let r = Reply::multiline(550, None, vec!["one".into(), "two".into(), "three".into()]);
        assert_eq!(r.text(), "one two three");
        assert_eq!(wire(&r.clone().with_text("only")), "550 only\r\n");
        let empty = Reply::multiline(250, None, Vec::new());
        assert_eq!(wire(&empty), "250 \r\n");
        assert_eq!(empty, Reply::new(250, None, ""));
    }
}

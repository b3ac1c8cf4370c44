//! One command line to one typed [`Command`].
//!
//! The parser recognises the whole line before anything acts on it and, when
//! it cannot, says what syntax it expected. Verbs are case-insensitive;
//! `MAIL FROM: <a@b>` (with a space) is accepted because real clients send it.

mod params;
mod xclient;

pub use params::{
    encode_xtext, Body, MailParams, Notify, RcptParams, Ret, MAX_ENVID_LEN, MAX_ORCPT_LEN,
};
pub use xclient::{XclientAttribute, XclientAttributes};

/// An SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    StartTls,
    /// `AUTH mechanism [initial-response]`; the response is still base64.
    Auth {
        mechanism: String,
        initial_response: Option<Vec<u8>>,
    },
    Mail(Path, MailParams),
    Rcpt(Path, RcptParams),
    Data,
    /// `BDAT size [LAST]` (RFC 3030): `size` octets of message data follow
    /// the line at once, read by length.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    /// A verb we know and refuse (EXPN, TURN, ETRN…).
    NotImplemented,
    /// `XCLIENT attr=value ...` (Postfix), values xtext-decoded.
    Xclient(XclientAttributes),
}

/// A reverse- or forward-path; `Null` is `<>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    Null,
    Mailbox(String),
}

impl Path {
    /// The address without angle brackets; empty for `<>`.
    pub fn as_str(&self) -> &str {
        match self {
            Path::Null => "",
            Path::Mailbox(m) => m,
        }
    }
}

/// Why a line is not a command we can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error("unknown command")]
    UnknownCommand,
    #[error("syntax error, expected: {0}")]
    Syntax(&'static str),
    #[error("invalid address")]
    InvalidAddress,
    #[error("unsupported parameter {0}")]
    UnsupportedParameter(String),
    #[error("command line too long")]
    TooLong,
}

/// Longest address we take, in octets (RFC 5321 §4.5.3.1.3: 256 for a path).
pub const MAX_ADDRESS_LEN: usize = 256;

/// Parses one line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::UnknownCommand)?;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_matches(' ')),
        None => (line, ""),
    };
    if !verb.eq_ignore_ascii_case("AUTH") && line.len() > crate::MAX_PLAIN_COMMAND_LEN {
        return Err(CommandError::TooLong);
    }
    // Upper-cased on the stack: no verb we know is longer than eight
    // letters, and a command line is parsed for every command.
    let mut upper = [0u8; 8];
    let verb = match upper.get_mut(..verb.len()) {
        Some(upper) => {
            upper.copy_from_slice(verb.as_bytes());
            upper.make_ascii_uppercase();
            &*upper
        }
        None => return Err(CommandError::UnknownCommand),
    };
    match verb {
        b"EHLO" => domain_arg(rest, "EHLO domain").map(Command::Ehlo),
        b"HELO" => domain_arg(rest, "HELO domain").map(Command::Helo),
        b"STARTTLS" => no_arg(rest, "STARTTLS", Command::StartTls),
        b"AUTH" => parse_auth(rest),
        b"MAIL" => parse_mail(rest),
        b"RCPT" => parse_rcpt(rest),
        b"DATA" => no_arg(rest, "DATA", Command::Data),
        b"BDAT" => parse_bdat(rest),
        b"RSET" => no_arg(rest, "RSET", Command::Rset),
        b"NOOP" => Ok(Command::Noop),
        b"QUIT" => no_arg(rest, "QUIT", Command::Quit),
        b"VRFY" if !rest.is_empty() => Ok(Command::Vrfy),
        b"VRFY" => Err(CommandError::Syntax("VRFY string")),
        b"HELP" => Ok(Command::Help),
        b"XCLIENT" => xclient::parse_xclient(rest),
        b"EXPN" | b"TURN" | b"ETRN" | b"SEND" | b"SOML" | b"SAML" => Ok(Command::NotImplemented),
        _ => Err(CommandError::UnknownCommand),
    }
}

fn no_arg(rest: &str, syntax: &'static str, command: Command) -> Result<Command, CommandError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax(syntax))
    }
}

fn domain_arg(rest: &str, syntax: &'static str) -> Result<String, CommandError> {
    let valid = !rest.is_empty()
        && !rest.contains(' ')
        && rest.len() <= 255
        && rest.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(rest.to_string())
    } else {
        Err(CommandError::Syntax(syntax))
    }
}

fn parse_auth(rest: &str) -> Result<Command, CommandError> {
    const SYNTAX: &str = "AUTH mechanism [initial-response]";
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or(CommandError::Syntax(SYNTAX))?;
    let initial_response = words.next().map(|w| w.as_bytes().to_vec());
    let valid_name = mechanism.len() <= 20
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if words.next().is_some() || !valid_name {
        return Err(CommandError::Syntax(SYNTAX));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial_response,
    })
}

fn parse_mail(rest: &str) -> Result<Command, CommandError> {
    const SYNTAX: &str = "MAIL FROM:<address> [parameters]";
    let after = strip_prefix_ignore_case(rest, "FROM:").ok_or(CommandError::Syntax(SYNTAX))?;
    let (path, params) = split_path(after).ok_or(CommandError::Syntax(SYNTAX))?;
    let path = parse_path(path, true)?;
    Ok(Command::Mail(path, params::parse_mail_params(params)?))
}

fn parse_rcpt(rest: &str) -> Result<Command, CommandError> {
    const SYNTAX: &str = "RCPT TO:<address> [parameters]";
    let after = strip_prefix_ignore_case(rest, "TO:").ok_or(CommandError::Syntax(SYNTAX))?;
    let (path, params) = split_path(after).ok_or(CommandError::Syntax(SYNTAX))?;
    let params = params::parse_rcpt_params(params)?;
    match parse_path(path, false)? {
        Path::Null => Err(CommandError::InvalidAddress),
        mailbox => Ok(Command::Rcpt(mailbox, params)),
    }
}

/// `BDAT chunk-size [LAST]`: the size is at most 20 digits (RFC 3030 §2
/// says 1*DIGIT; a `u64` holds any size a client could mean).
fn parse_bdat(rest: &str) -> Result<Command, CommandError> {
    const SYNTAX: &str = "BDAT chunk-size [LAST]";
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.len() <= 20 && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse().ok())
        .ok_or(CommandError::Syntax(SYNTAX))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax(SYNTAX)),
    };
    match words.next() {
        None => Ok(Command::Bdat { size, last }),
        Some(_) => Err(CommandError::Syntax(SYNTAX)),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s[prefix.len()..].trim_start_matches(' '))
}

/// Splits `<path> params` at the closing bracket.
fn split_path(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('<')?;
    let close = inner.find('>')?;
    Some((&inner[..close], &inner[close + 1..]))
}

fn parse_path(path: &str, null_allowed: bool) -> Result<Path, CommandError> {
    if path.is_empty() {
        return if null_allowed {
            Ok(Path::Null)
        } else {
            Err(CommandError::InvalidAddress)
        };
    }
    // Drop a source route (`@a,@b:user@d`, RFC 5321 §4.1.2): obsolete, ignored.
    let mailbox = match path.strip_prefix('@') {
        Some(_) => path
            .split_once(':')
            .map(|(_, m)| m)
            .ok_or(CommandError::InvalidAddress)?,
        None => path,
    };
    let valid = !mailbox.is_empty()
        && mailbox.len() <= MAX_ADDRESS_LEN
        && mailbox
            .bytes()
            .all(|b| b > b' ' && b != 0x7f && b != b'<' && b != b'>')
        && mailbox
            .rfind('@')
            .is_none_or(|i| i > 0 && i + 1 < mailbox.len());
    if valid {
        Ok(Path::Mailbox(mailbox.to_string()))
    } else {
        Err(CommandError::InvalidAddress)
    }
}

#[cfg(test)]
mod tests;

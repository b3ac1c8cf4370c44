//! The ESMTP parameters of MAIL FROM and RCPT TO: SIZE (RFC 1870), BODY
//! (RFC 6152), AUTH (RFC 4954 §5), SMTPUTF8 (RFC 6531) and the DSN
//! parameters RET, ENVID, NOTIFY and ORCPT (RFC 3461).
//!
//! Each value is recognised whole and bounded here, so the session and the
//! spool only ever see typed, decoded values: an xtext value is decoded
//! once, and one longer than its RFC allows is a syntax error, not a
//! truncation. A parameter given twice is a syntax error too: which one a
//! later reader would honour is not ours to guess.

use super::CommandError;

/// Longest ENVID, decoded (RFC 3461 §4.4: 100 characters).
pub const MAX_ENVID_LEN: usize = 100;
/// Longest ORCPT, decoded, address type included (RFC 3461 §4.2: 500).
pub const MAX_ORCPT_LEN: usize = 500;

/// The body type declared with `BODY=` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
}

impl Body {
    pub fn as_str(self) -> &'static str {
        match self {
            Body::SevenBit => "7bit",
            Body::EightBitMime => "8bitmime",
        }
    }
}

/// What a DSN returns of the message (`RET=`, RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// The whole message.
    Full,
    /// The header section only.
    Hdrs,
}

impl Ret {
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }

    /// The keyword as sent (any case), if it is one.
    pub fn parse(s: &str) -> Option<Ret> {
        match s.to_ascii_uppercase().as_str() {
            "FULL" => Some(Ret::Full),
            "HDRS" => Some(Ret::Hdrs),
            _ => None,
        }
    }
}

/// When a recipient's DSN is wanted (`NOTIFY=`, RFC 3461 §4.1). `NEVER`
/// is all three false; it cannot be combined with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    /// `NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// `NEVER` or a comma-separated list of SUCCESS, FAILURE and DELAY.
    pub fn parse(s: &str) -> Option<Notify> {
        if s.eq_ignore_ascii_case("NEVER") {
            return Some(Notify::NEVER);
        }
        let mut notify = Notify::NEVER;
        for word in s.split(',') {
            let flag = match word.to_ascii_uppercase().as_str() {
                "SUCCESS" => &mut notify.success,
                "FAILURE" => &mut notify.failure,
                "DELAY" => &mut notify.delay,
                _ => return None,
            };
            if *flag {
                return None;
            }
            *flag = true;
        }
        Some(notify)
    }

    /// The value as sent to a next hop: `NEVER` or e.g. `SUCCESS,FAILURE`.
    pub fn to_value(self) -> String {
        let words: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(on, word)| on.then_some(word))
        .collect();
        match words.is_empty() {
            true => "NEVER".to_string(),
            false => words.join(","),
        }
    }
}

/// Parameters of MAIL FROM we understand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152).
    pub body: Body,
    /// `AUTH=` (RFC 4954 §5), xtext-decoded; `<>` kept as `<>`.
    pub auth: Option<String>,
    /// `SMTPUTF8` (RFC 6531): UTF-8 in the envelope and the headers.
    pub smtputf8: bool,
    /// `RET=` (RFC 3461 §4.3).
    pub ret: Option<Ret>,
    /// `ENVID=` (RFC 3461 §4.4), xtext-decoded.
    pub envid: Option<String>,
}

/// Parameters of RCPT TO we understand (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    /// `NOTIFY=`.
    pub notify: Option<Notify>,
    /// `ORCPT=`, decoded: `addr-type;address`, e.g. `rfc822;a@b.example`.
    pub orcpt: Option<String>,
}

/// Splits `KEY[=VALUE]`.
fn key_value(param: &str) -> (String, Option<&str>) {
    match param.split_once('=') {
        Some((key, value)) => (key.to_ascii_uppercase(), Some(value)),
        None => (param.to_ascii_uppercase(), None),
    }
}

/// `Err` unless `slot` is still empty.
fn once<T>(slot: &Option<T>, syntax: &'static str) -> Result<(), CommandError> {
    match slot {
        Some(_) => Err(CommandError::Syntax(syntax)),
        None => Ok(()),
    }
}

pub(super) fn parse_mail_params(params: &str) -> Result<MailParams, CommandError> {
    let mut parsed = MailParams::default();
    let mut body_seen = false;
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = key_value(param);
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                once(&parsed.size, "SIZE=<octets>")?;
                let size = v
                    .parse()
                    .map_err(|_| CommandError::Syntax("SIZE=<octets>"))?;
                parsed.size = Some(size);
            }
            ("BODY", Some(v)) if !body_seen => {
                body_seen = true;
                parsed.body = match v.to_ascii_uppercase().as_str() {
                    "8BITMIME" => Body::EightBitMime,
                    "7BIT" => Body::SevenBit,
                    _ => return Err(CommandError::UnsupportedParameter(key)),
                };
            }
            ("AUTH", Some(v)) => {
                once(&parsed.auth, "AUTH=<> or AUTH=xtext")?;
                parsed.auth = Some(decode_xtext(v, "AUTH=<> or AUTH=xtext")?);
            }
            ("SMTPUTF8", None) if !parsed.smtputf8 => parsed.smtputf8 = true,
            ("RET", Some(v)) => {
                once(&parsed.ret, "RET=FULL or RET=HDRS")?;
                parsed.ret =
                    Some(Ret::parse(v).ok_or(CommandError::Syntax("RET=FULL or RET=HDRS"))?);
            }
            ("ENVID", Some(v)) => {
                const SYNTAX: &str = "ENVID=xtext (at most 100 characters)";
                once(&parsed.envid, SYNTAX)?;
                let envid = decode_xtext(v, SYNTAX)?;
                if envid.is_empty() || envid.len() > MAX_ENVID_LEN || !printable(&envid) {
                    return Err(CommandError::Syntax(SYNTAX));
                }
                parsed.envid = Some(envid);
            }
            ("BODY" | "SMTPUTF8", _) => {
                return Err(CommandError::Syntax("one BODY=, SMTPUTF8 without a value"))
            }
            _ => return Err(CommandError::UnsupportedParameter(key)),
        }
    }
    Ok(parsed)
}

pub(super) fn parse_rcpt_params(params: &str) -> Result<RcptParams, CommandError> {
    const NOTIFY: &str = "NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY";
    const ORCPT: &str = "ORCPT=addr-type;xtext (at most 500 characters)";
    let mut parsed = RcptParams::default();
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = key_value(param);
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => {
                once(&parsed.notify, NOTIFY)?;
                parsed.notify = Some(Notify::parse(v).ok_or(CommandError::Syntax(NOTIFY))?);
            }
            ("ORCPT", Some(v)) => {
                once(&parsed.orcpt, ORCPT)?;
                let (kind, address) = v.split_once(';').ok_or(CommandError::Syntax(ORCPT))?;
                let address = decode_xtext(address, ORCPT)?;
                let valid_kind = !kind.is_empty()
                    && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                let orcpt = format!("{kind};{address}");
                if !valid_kind
                    || address.is_empty()
                    || orcpt.len() > MAX_ORCPT_LEN
                    || !printable(&address)
                {
                    return Err(CommandError::Syntax(ORCPT));
                }
                parsed.orcpt = Some(orcpt);
            }
            _ => return Err(CommandError::UnsupportedParameter(key)),
        }
    }
    Ok(parsed)
}

/// No control characters (a decoded value ends up in header fields of a
/// report, where a CR or LF would start a new field).
fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Decodes xtext (RFC 3461 §4): `+XX` is a hex-encoded octet.
/// `syntax` is what a malformed value is told to look like.
pub(super) fn decode_xtext(s: &str, syntax: &'static str) -> Result<String, CommandError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+' {
            let hex = s.get(i + 1..i + 3).ok_or(CommandError::Syntax(syntax))?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CommandError::Syntax(syntax));
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| CommandError::Syntax(syntax))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| CommandError::Syntax(syntax))
}

/// Encodes xtext (RFC 3461 §4): `+HH` for `+`, `=` and anything outside
/// `!`..`~`, UTF-8 octets included.
pub fn encode_xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

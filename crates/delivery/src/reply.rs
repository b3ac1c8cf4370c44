//! Parses the next hop's replies (client side of RFC 5321 §4.2).
//!
//! The server side of portcullis builds replies from the catalog in
//! `portcullis-proto`; this is the other direction, reading what a smarthost
//! or LMTP server says. It is incremental and borrows nothing from I/O: give
//! it the bytes read so far, it returns a complete reply and how many bytes
//! it used, or asks for more. Lines and line counts are bounded, so a
//! hostile next hop cannot make us buffer without end.

use portcullis_proto::EnhancedCode;

/// Longest reply line we accept (RFC 5321 says 512; servers exceed it).
pub const MAX_REPLY_LINE: usize = 8192;
/// Most lines in one multi-line reply (EHLO replies are the longest).
pub const MAX_REPLY_LINES: usize = 256;

/// A reply from the next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    /// The enhanced status code of the first line, if it has one (RFC 2034).
    pub status: Option<EnhancedCode>,
    /// The text of each line, without code and separator.
    pub lines: Vec<String>,
}

/// What class of answer a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyClass {
    /// 2xx and 3xx.
    Positive,
    /// 4xx: try again later.
    Transient,
    /// 5xx: give up.
    Permanent,
}

impl ServerReply {
    pub fn class(&self) -> ReplyClass {
        match self.code {
            200..=399 => ReplyClass::Positive,
            500..=599 => ReplyClass::Permanent,
            // 4xx, and any nonsense code, is treated as transient: retrying is
            // the safe side when a next hop says something we do not understand.
            _ => ReplyClass::Transient,
        }
    }

    /// `"550 5.1.1 No such user"`: for logs and the DSN's Diagnostic-Code.
    pub fn summary(&self) -> String {
        let text = self.lines.join(" / ");
        format!("{} {}", self.code, text.trim())
    }

    /// Whether an EHLO reply line (after the first) announces `keyword`.
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.extension(keyword).is_some()
    }

    /// The parameters of an EHLO keyword, e.g. `"LOGIN ADDR"` for XCLIENT.
    pub fn extension(&self, keyword: &str) -> Option<&str> {
        self.lines.iter().skip(1).find_map(|line| {
            let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            word.eq_ignore_ascii_case(keyword).then_some(rest)
        })
    }
}

/// Why bytes from the next hop are not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A line that is not `DDD[ -]text`.
    Malformed(String),
    /// A line over [`MAX_REPLY_LINE`] or a reply over [`MAX_REPLY_LINES`].
    TooLong,
    /// The lines of one reply carry different codes.
    MixedCodes,
}

/// Tries to take one complete reply from the front of `input`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((reply, consumed)))`: the
/// reply and the bytes it used; the rest is the next reply (PIPELINING).
pub fn parse_reply(input: &[u8]) -> Result<Option<(ServerReply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let Some(end) = input[pos..].iter().position(|&b| b == b'\n') else {
            if input.len() - pos > MAX_REPLY_LINE {
                return Err(ReplyError::TooLong);
            }
            return Ok(None);
        };
        let raw = &input[pos..pos + end];
        pos += end + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > MAX_REPLY_LINE || lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooLong);
        }
        let line = String::from_utf8_lossy(raw);
        let (this_code, last, text) = split_line(&line)?;
        if *code.get_or_insert(this_code) != this_code {
            return Err(ReplyError::MixedCodes);
        }
        lines.push(text.to_string());
        if last {
            let code = this_code;
            let status = enhanced_code(code, &lines[0]);
            return Ok(Some((
                ServerReply {
                    code,
                    status,
                    lines,
                },
                pos,
            )));
        }
    }
}

fn split_line(line: &str) -> Result<(u16, bool, &str), ReplyError> {
    let malformed = || ReplyError::Malformed(line.chars().take(80).collect());
    let digits = line
        .get(..3)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let code: u16 = digits.and_then(|d| d.parse().ok()).ok_or_else(malformed)?;
    if !(200..=599).contains(&code) {
        return Err(malformed());
    }
    match line.as_bytes().get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(malformed()),
    }
}

/// Reads `x.y.z` at the start of `text` when its class matches the code's.
fn enhanced_code(code: u16, text: &str) -> Option<EnhancedCode> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    let matches_code = u16::from(class) == code / 100;
    (parts.next().is_none() && matches!(class, 2 | 4 | 5) && matches_code)
        .then_some(EnhancedCode(class, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str) -> ServerReply {
        let (reply, used) = parse_reply(input.as_bytes()).unwrap().unwrap();
        assert_eq!(used, input.len());
        reply
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let r = one("550 5.1.1 No such user\r\n");
        assert_eq!(r.code, 550);
        assert_eq!(r.status, Some(EnhancedCode(5, 1, 1)));
        assert_eq!(r.class(), ReplyClass::Permanent);
        assert_eq!(r.summary(), "550 5.1.1 No such user");
    }

    #[test]
    fn multi_line_ehlo_and_extensions() {
        let r = one(
            "250-mx.test greets us\r\n250-PIPELINING\r\n250-XCLIENT LOGIN ADDR\r\n250 STARTTLS\r\n",
        );
        assert_eq!(r.lines.len(), 4);
        assert!(r.has_extension("pipelining"));
        assert!(r.has_extension("STARTTLS"));
        assert_eq!(r.extension("XCLIENT"), Some("LOGIN ADDR"));
        assert!(
            !r.has_extension("mx.test"),
            "the greeting line is not an extension"
        );
        assert_eq!(r.status, None);
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        assert_eq!(parse_reply(b"250-first\r\n250 sec"), Ok(None));
        assert_eq!(parse_reply(b""), Ok(None));
    }

    #[test]
    fn pipelined_replies_come_one_at_a_time() {
        let input = b"250 2.1.0 ok\r\n451 4.3.0 later\r\n354 go\r\n";
        let (a, used) = parse_reply(input).unwrap().unwrap();
        assert_eq!(a.code, 250);
        let (b, used2) = parse_reply(&input[used..]).unwrap().unwrap();
        assert_eq!((b.code, b.class()), (451, ReplyClass::Transient));
        let (c, _) = parse_reply(&input[used + used2..]).unwrap().unwrap();
        assert_eq!((c.code, c.status), (354, None));
    }

    #[test]
    fn bare_lf_and_code_only_lines_are_accepted() {
        assert_eq!(one("250\n").code, 250);
        assert_eq!(one("221 bye\n").lines, vec!["bye"]);
    }

    #[test]
    fn enhanced_code_must_match_the_class() {
        assert_eq!(one("250 5.1.1 odd\r\n").status, None);
        assert_eq!(one("451 4.7.0\r\n").status, Some(EnhancedCode(4, 7, 0)));
        assert_eq!(one("250 2.0.0.1 odd\r\n").status, None);
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            "hello\r\n",
            "25 x\r\n",
            "250x\r\n",
            "999 nine\r\n",
            "abc def\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad.as_bytes()), Err(ReplyError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::MixedCodes)
        );
        assert_eq!(
            parse_reply(&vec![b'2'; MAX_REPLY_LINE + 10]),
            Err(ReplyError::TooLong)
        );
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(parse_reply(many.as_bytes()), Err(ReplyError::TooLong));
    }
}

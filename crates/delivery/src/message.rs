//! Preparing spooled bytes for the wire: the identity header, and DATA's
//! dot-stuffing (RFC 5321 §4.5.2).

/// The header that carries the submitter's identity when a route says so.
pub const IDENTITY_HEADER: &str = "X-Authenticated-User";

/// Removes every `X-Authenticated-User` field from the header section (a
/// client must not be able to forge it) and, when `user` is given, puts
/// ours first. The body is left alone.
pub fn with_identity_header(message: &[u8], user: Option<&str>) -> Vec<u8> {
    let header_end = header_section_len(message);
    let mut out = Vec::with_capacity(message.len() + 64);
    if let Some(user) = user {
        let clean: String = user.chars().filter(|c| !c.is_control()).collect();
        out.extend_from_slice(format!("{IDENTITY_HEADER}: {clean}\r\n").as_bytes());
    }
    let mut skipping = false;
    for line in message[..header_end].split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation {
            skipping = is_field(line, IDENTITY_HEADER);
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&message[header_end..]);
    out
}

/// Length of the header section up to (not including) the empty line.
pub(crate) fn header_section_len(message: &[u8]) -> usize {
    let mut pos = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            return pos;
        }
        pos += line.len();
    }
    pos
}

/// Whether `line` starts the field `name` (any case, blanks before the colon).
pub(crate) fn is_field(line: &[u8], name: &str) -> bool {
    line.len() > name.len()
        && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        && line[name.len()..]
            .iter()
            .find(|b| **b != b' ' && **b != b'\t')
            == Some(&b':')
}

/// The DATA payload: dot-stuffed, ending in CRLF, then `.` CRLF.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        if out.ends_with(b"\n") {
            out.pop();
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The header section alone (for a DSN's `text/rfc822-headers` part).
pub fn headers(message: &[u8]) -> &[u8] {
    &message[..header_section_len(message)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffs_leading_dots_and_terminates() {
        assert_eq!(
            dot_stuffed(b"a\r\n.b\r\n..\r\n"),
            b"a\r\n..b\r\n...\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuffed(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuffed(b""), b"\r\n.\r\n");
    }

    #[test]
    fn identity_header_replaces_forged_ones() {
        let msg = b"Received: x\r\nX-Authenticated-User: mallory\r\n\tcontinued\r\nx-authenticated-user : eve\r\nSubject: hi\r\n\r\nX-Authenticated-User: body stays\r\n";
        let out = String::from_utf8(with_identity_header(msg, Some("alice"))).unwrap();
        assert_eq!(
            out,
            "X-Authenticated-User: alice\r\nReceived: x\r\nSubject: hi\r\n\r\nX-Authenticated-User: body stays\r\n"
        );
        let none = String::from_utf8(with_identity_header(msg, None)).unwrap();
        assert!(!none.contains("mallory") && none.starts_with("Received: x\r\n"));
        let crlf =
            String::from_utf8(with_identity_header(b"S: x\r\n\r\nb", Some("a\r\nBcc: x"))).unwrap();
        assert!(
            crlf.starts_with("X-Authenticated-User: aBcc: x\r\nS: x"),
            "{crlf:?}"
        );
    }

    #[test]
    fn header_section() {
        assert_eq!(headers(b"A: 1\r\nB: 2\r\n\r\nbody"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(headers(b"A: 1\r\n"), b"A: 1\r\n");
    }
}

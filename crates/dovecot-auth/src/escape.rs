//! Dovecot's tab-escaping: a value may not hold TAB, CR, LF or NUL on the
//! wire, so each is written as `\x01` followed by a letter.
//!
//! `\x01 0` is NUL, `\x01 1` is `\x01`, `\x01 t` TAB, `\x01 r` CR, `\x01 n`
//! (or `l`) LF; any other letter stands for itself. Postfix sends no escapes,
//! newer Dovecot clients may; what we send back (a user name, a reason) is
//! escaped so that a value can never end a line or add a parameter.

/// Escapes a value for the wire.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\0' => out.push_str("\u{1}0"),
            '\u{1}' => out.push_str("\u{1}1"),
            '\t' => out.push_str("\u{1}t"),
            '\r' => out.push_str("\u{1}r"),
            '\n' => out.push_str("\u{1}n"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape`]; a trailing lone `\x01` is dropped.
pub fn unescape(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b != 1 {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'0') => out.push(0),
            Some(b'1') => out.push(1),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') | Some(b'l') => out.push(b'\n'),
            Some(&other) => out.push(other),
            None => {}
        }
    }
    out
}

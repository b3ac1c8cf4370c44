//! Reading the header section of a received message (RFC 5322 §2.2): the
//! fields with a given name, unfolded, with their byte ranges so a caller
//! can remove them; and the addresses in a `From:`-style mailbox list.
//!
//! Deliberately small: enough to authorize (`From:` against the user's
//! addresses, the tenant header against its authz list), not a MIME parser.
//! The header section ends at the first empty line; fields after it (in the
//! body) are never seen.
//!
//! A check is only as good as its agreement with the readers after us. A
//! field's name is therefore the bytes before the colon *with trailing
//! whitespace removed* (RFC 5322 §4.5.3 obs-syntax `X-Tenant : acme`, which
//! KumoMTA's parser and our own delivery code both accept), and a value is
//! unfolded (line breaks before whitespace removed) and trimmed before it
//! is compared. Callers that authorize on a value also insist on exactly one
//! field and a plain value ([`is_plain_token`]): anything a later reader
//! could decode or pick differently (a second field, an RFC 2047 encoded
//! word) is refused rather than guessed at.

use std::ops::Range;

/// One header field: its unfolded, trimmed value and where it lies in the
/// message (continuation lines included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub value: String,
    pub range: Range<usize>,
}

/// Every field named `name` (ASCII case-insensitive) in the header section.
pub fn fields(data: &[u8], name: &str) -> Vec<Field> {
    let mut found: Vec<Field> = Vec::new();
    let mut current = false;
    let mut start = 0;
    while start < data.len() {
        let end = data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| start + i + 1);
        let line = &data[start..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            break;
        }
        if content[0] == b' ' || content[0] == b'\t' {
            if let (true, Some(field)) = (current, found.last_mut()) {
                field.range.end = end;
                let more = String::from_utf8_lossy(content);
                field.value = format!("{} {}", field.value, more.trim())
                    .trim()
                    .to_string();
            }
        } else {
            let colon = content.iter().position(|&b| b == b':');
            current = colon
                .is_some_and(|c| field_name(&content[..c]).eq_ignore_ascii_case(name.as_bytes()));
            if let (true, Some(c)) = (current, colon) {
                found.push(Field {
                    value: String::from_utf8_lossy(&content[c + 1..])
                        .trim()
                        .to_string(),
                    range: start..end,
                });
            }
        }
        start = end;
    }
    found
}

/// The name of a field from the bytes before its colon: trailing spaces and
/// tabs are not part of it (RFC 5322 §4.5.3 allows them before the colon).
fn field_name(before_colon: &[u8]) -> &[u8] {
    let end = before_colon
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &before_colon[..end]
}

/// Whether `value` is one plain token that no later reader can decode into
/// something else: non-empty visible ASCII without spaces and without the
/// MIME `tspecials` (RFC 2045 §5.1) `()<>@,;:\"/[]?=`. That rules out
/// RFC 2047 encoded words (`=?utf-8?q?acme?=`), quoted strings, comments
/// and several words.
pub fn is_plain_token(value: &str) -> bool {
    const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !TSPECIALS.contains(&b))
}

/// The addresses in a mailbox list such as `"Doe, J" <j@example.com>,
/// k@example.com (K)`: the part in angle brackets, else the word with an
/// `@`. Commas inside quotes, comments and angle brackets do not split.
pub fn mailbox_addresses(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let (mut quoted, mut depth, mut angle, mut item) = (false, 0u32, false, String::new());
    for c in value.chars() {
        match c {
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            '<' if !quoted && depth == 0 => angle = true,
            '>' if !quoted && depth == 0 => angle = false,
            ',' if !quoted && depth == 0 && !angle => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    items.push(item);
    items.iter().filter_map(|i| address_of(i)).collect()
}

fn address_of(mailbox: &str) -> Option<String> {
    if let (Some(open), Some(close)) = (mailbox.rfind('<'), mailbox.rfind('>')) {
        if open < close {
            return Some(mailbox[open + 1..close].trim().to_string());
        }
    }
    mailbox
        .split_whitespace()
        .find(|word| word.contains('@') && !word.starts_with('('))
        .map(|word| word.trim_matches(|c| c == '"' || c == ',').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_unfolded_and_located_in_the_header_only() {
        let data = b"From: a@b\r\nX-Tenant: acme\r\nx-tenant:  other\r\n\tpart\r\nSubject: s\r\n\r\nX-Tenant: body\r\n";
        let found = fields(data, "X-Tenant");
        let values: Vec<&str> = found.iter().map(|f| f.value.as_str()).collect();
        assert_eq!(values, ["acme", "other part"]);
        let mut rest = data.to_vec();
        for f in found.iter().rev() {
            rest.drain(f.range.clone());
        }
        assert_eq!(rest, b"From: a@b\r\nSubject: s\r\n\r\nX-Tenant: body\r\n");
        assert!(fields(b"Subject: x\n\nbody", "X-Tenant").is_empty());
        assert!(fields(b"X-Tenantless: y\r\n\r\n", "X-Tenant").is_empty());
    }

    #[test]
    fn a_name_with_whitespace_before_the_colon_is_the_same_field() {
        let data = b"X-Tenant : acme\r\nX-TENANT\t: globex\r\nX-Tenant2: no\r\nSubject: s\r\n\r\n";
        let found = fields(data, "X-Tenant");
        let values: Vec<&str> = found.iter().map(|f| f.value.as_str()).collect();
        assert_eq!(values, ["acme", "globex"]);
        let mut rest = data.to_vec();
        for f in found.iter().rev() {
            rest.drain(f.range.clone());
        }
        assert_eq!(rest, b"X-Tenant2: no\r\nSubject: s\r\n\r\n");
        let from = fields(b"From: <a@x>\r\nFrom : <b@x>\r\n\r\n", "From");
        assert_eq!(from.len(), 2);
    }

    #[test]
    fn a_value_folded_from_an_empty_first_line_is_trimmed() {
        let found = fields(b"X-Tenant:\r\n acme\r\n\r\n", "X-Tenant");
        assert_eq!(found[0].value, "acme");
        let found = fields(b"X-Tenant: ac\r\n\tme\r\n\r\n", "X-Tenant");
        assert_eq!(found[0].value, "ac me");
    }

    #[test]
    fn only_plain_tokens_are_plain() {
        for plain in ["acme", "my-tenant_2", "a.b", "x+y"] {
            assert!(is_plain_token(plain), "{plain}");
        }
        for not in [
            "",
            "=?utf-8?q?acme?=",
            "\"acme\"",
            "acme (comment)",
            "ac me",
            "acme\u{0}",
            "acmé",
            "a@b",
        ] {
            assert!(!is_plain_token(not), "{not:?}");
        }
    }

    #[test]
    fn mailbox_lists() {
        let list = r#""Doe, Jane" <jane@example.com>, k@example.com (K, here), <l@x.test>"#;
        assert_eq!(
            mailbox_addresses(list),
            ["jane@example.com", "k@example.com", "l@x.test"]
        );
        assert_eq!(mailbox_addresses("Undisclosed"), Vec::<String>::new());
    }
}

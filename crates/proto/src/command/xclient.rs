//! `XCLIENT` (Postfix's extension): a trusted proxy tells us who the real
//! client is. This module only recognises the line; whether this client
//! may send it, and what the attributes change, is the session's business.
//!
//! Syntax: `XCLIENT attribute=value [attribute=value ...]`, names
//! case-insensitive, values xtext-encoded, and `[UNAVAILABLE]` (or
//! `[TEMPUNAVAIL]`) meaning "not known". An unknown attribute is a syntax
//! error, as in Postfix, so a typo never passes silently.

use super::params::decode_xtext;
use super::{Command, CommandError};

const SYNTAX: &str =
    "XCLIENT attribute=value ... (NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT)";

/// Longest attribute value we take, in octets (after xtext decoding).
const MAX_VALUE_LEN: usize = 255;

/// An attribute of `XCLIENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XclientAttribute {
    /// The client's host name (reverse DNS).
    Name,
    /// The client's IP address (an `IPV6:` prefix is removed).
    Addr,
    /// The client's TCP port.
    Port,
    /// `SMTP` or `ESMTP`: how the client greeted the proxy.
    Proto,
    /// The HELO/EHLO name the client gave the proxy.
    Helo,
    /// The SASL login name the proxy authenticated.
    Login,
    /// The server address the client connected to.
    DestAddr,
    /// The server port the client connected to.
    DestPort,
}

impl XclientAttribute {
    /// Every attribute, in the order of the EHLO keyword.
    pub const ALL: [XclientAttribute; 8] = [
        XclientAttribute::Name,
        XclientAttribute::Addr,
        XclientAttribute::Port,
        XclientAttribute::Proto,
        XclientAttribute::Helo,
        XclientAttribute::Login,
        XclientAttribute::DestAddr,
        XclientAttribute::DestPort,
    ];

    pub fn name(self) -> &'static str {
        match self {
            XclientAttribute::Name => "NAME",
            XclientAttribute::Addr => "ADDR",
            XclientAttribute::Port => "PORT",
            XclientAttribute::Proto => "PROTO",
            XclientAttribute::Helo => "HELO",
            XclientAttribute::Login => "LOGIN",
            XclientAttribute::DestAddr => "DESTADDR",
            XclientAttribute::DestPort => "DESTPORT",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }
}

/// `XCLIENT` attributes in the order given; `None` is `[UNAVAILABLE]`.
pub type XclientAttributes = Vec<(XclientAttribute, Option<String>)>;

pub(super) fn parse_xclient(rest: &str) -> Result<Command, CommandError> {
    let mut attributes = Vec::new();
    for word in rest.split(' ').filter(|w| !w.is_empty()) {
        let (name, value) = word.split_once('=').ok_or(CommandError::Syntax(SYNTAX))?;
        let attribute = XclientAttribute::from_name(name).ok_or(CommandError::Syntax(SYNTAX))?;
        attributes.push((attribute, value_of(attribute, value)?));
    }
    if attributes.is_empty() {
        return Err(CommandError::Syntax(SYNTAX));
    }
    Ok(Command::Xclient(attributes))
}

fn value_of(attribute: XclientAttribute, raw: &str) -> Result<Option<String>, CommandError> {
    if raw.eq_ignore_ascii_case("[UNAVAILABLE]") || raw.eq_ignore_ascii_case("[TEMPUNAVAIL]") {
        return Ok(None);
    }
    let value = decode_xtext(raw, SYNTAX)?;
    let valid = match attribute {
        // A real address or nothing: a value that only looks like one
        // (`1.2.3`) would leave the defence counting the proxy instead.
        XclientAttribute::Addr | XclientAttribute::DestAddr => strip_ipv6_prefix(&value)
            .parse::<std::net::IpAddr>()
            .is_ok(),
        XclientAttribute::Port | XclientAttribute::DestPort => value.parse::<u16>().is_ok(),
        XclientAttribute::Proto => {
            value.eq_ignore_ascii_case("SMTP") || value.eq_ignore_ascii_case("ESMTP")
        }
        _ => !value.is_empty() && !value.chars().any(char::is_control),
    };
    if !valid || value.len() > MAX_VALUE_LEN {
        return Err(CommandError::Syntax(SYNTAX));
    }
    Ok(Some(match attribute {
        XclientAttribute::Addr | XclientAttribute::DestAddr => {
            strip_ipv6_prefix(&value).to_string()
        }
        XclientAttribute::Proto => value.to_ascii_uppercase(),
        _ => value,
    }))
}

/// Postfix writes IPv6 addresses as `IPV6:2001:db8::1`.
fn strip_ipv6_prefix(value: &str) -> &str {
    match value.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("IPV6:") => &value[5..],
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    fn attributes(line: &str) -> XclientAttributes {
        match parse(line.as_bytes()) {
            Ok(Command::Xclient(attributes)) => attributes,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn every_attribute_with_xtext_and_unavailable() {
        let got = attributes(
            "xclient NAME=mail.example ADDR=192.0.2.7 PORT=4711 PROTO=esmtp \
             HELO=[UNAVAILABLE] LOGIN=ann+40example.test DESTADDR=IPV6:2001:db8::1 DESTPORT=587",
        );
        use XclientAttribute::*;
        assert_eq!(
            got,
            vec![
                (Name, Some("mail.example".into())),
                (Addr, Some("192.0.2.7".into())),
                (Port, Some("4711".into())),
                (Proto, Some("ESMTP".into())),
                (Helo, None),
                (Login, Some("ann@example.test".into())),
                (DestAddr, Some("2001:db8::1".into())),
                (DestPort, Some("587".into())),
            ]
        );
        assert_eq!(
            attributes("XCLIENT login=[TEMPUNAVAIL]"),
            vec![(Login, None)]
        );
    }

    #[test]
    fn bad_lines_are_syntax_errors() {
        for line in [
            "XCLIENT",
            "XCLIENT FOO=bar",
            "XCLIENT ADDR",
            "XCLIENT ADDR=not-an-ip",
            "XCLIENT ADDR=1.2.3",
            "XCLIENT ADDR=::::",
            "XCLIENT ADDR=IPV6:1.2.3.4.5",
            "XCLIENT PORT=70000",
            "XCLIENT PROTO=LMTP",
            "XCLIENT LOGIN=",
            "XCLIENT LOGIN=a+0Db",
            "XCLIENT NAME=+zz",
        ] {
            assert!(
                matches!(parse(line.as_bytes()), Err(CommandError::Syntax(_))),
                "{line}"
            );
        }
    }
}

//! `[[auth_listener]]`: sockets where an MTA (Postfix, Exim, chasquid)
//! asks portcullis its questions instead of a person's mail client.
//!
//! Two protocols: Dovecot's authentication protocol (`protocol =
//! "dovecot"`, the default), where the MTA relays each SMTP AUTH for us to
//! decide (`smtpd_sasl_type = dovecot`); and Postfix's policy delegation
//! (`protocol = "postfix-policy"`, `check_policy_service`), where it asks
//! whether an authenticated user may send this message.
//!
//! Either listens on a Unix socket (the usual setup: the MTA on the same
//! host; the socket's mode decides who may connect) or on TCP. On TCP the
//! peer is trusted to tell the truth about its clients (`rip=` becomes the
//! address bans and delays apply to), so only the networks listed in
//! `trusted` may connect, loopback when none are.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::invalid;
use crate::{ConfigError, IpNet};

/// `[[auth_listener]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthListener {
    pub name: Option<String>,
    /// `"dovecot"` (default) or `"postfix-policy"`.
    pub protocol: Option<AuthProtocol>,
    /// A Unix socket path (relative to the data directory).
    pub path: Option<PathBuf>,
    /// The socket's mode, octal text (`"0660"`; default `"0600"`).
    pub mode: Option<String>,
    /// The socket's owner and group (names or numeric ids; default: the
    /// server's).
    pub owner: Option<String>,
    pub group: Option<String>,
    /// `ip:port` for TCP.
    pub address: Option<String>,
    /// Networks (CIDR) that may connect over TCP (default: loopback).
    pub trusted: Option<Vec<IpNet>>,
    /// Connections at once (default 256).
    pub max_connections: Option<usize>,
    /// Requests in flight on one connection (default 64).
    pub max_in_flight: Option<usize>,
    /// Longest line, in bytes (default 16384).
    pub max_line: Option<usize>,
    /// SASL mechanisms offered (default: those the stores serve, without
    /// the -PLUS variants, which need a channel binding no MTA passes).
    pub mechanisms: Option<Vec<String>>,
}

/// Which protocol an auth listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthProtocol {
    /// Dovecot's authentication protocol, server side.
    Dovecot,
    /// Postfix's SMTP access policy delegation.
    PostfixPolicy,
}

/// Where an auth listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthEndpoint {
    Unix {
        path: PathBuf,
        mode: u32,
        /// User and group to give the socket (names or numeric ids).
        owner: Option<String>,
        group: Option<String>,
    },
    Tcp {
        address: SocketAddr,
        /// Peers outside these networks are closed at once.
        trusted: Vec<IpNet>,
    },
}

/// A validated `[[auth_listener]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthListener {
    pub name: String,
    pub protocol: AuthProtocol,
    pub endpoint: AuthEndpoint,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub max_line: usize,
    /// Upper-case names; `None`: every mechanism the stores serve that
    /// needs no channel binding.
    pub mechanisms: Option<Vec<String>>,
}

/// The longest line we accept at most (Dovecot's own bound is 16 KiB; a
/// larger one lets a peer make us buffer more).
pub const MAX_AUTH_LINE: usize = 64 * 1024;

pub(crate) fn validate(
    raw: Vec<RawAuthListener>,
    in_data_dir: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<Vec<AuthListener>, ConfigError> {
    let mut listeners: Vec<AuthListener> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let listener = one(index, raw, in_data_dir)?;
        if listeners.iter().any(|l| l.name == listener.name) {
            return Err(invalid(
                "auth_listener.name",
                format!("{:?} is used twice", listener.name),
            ));
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

fn one(
    index: usize,
    raw: RawAuthListener,
    in_data_dir: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<AuthListener, ConfigError> {
    let name = raw.name.unwrap_or_else(|| format!("auth{index}"));
    let key = |field: &str| format!("auth_listener.{name}.{field}");
    let protocol = raw.protocol.unwrap_or(AuthProtocol::Dovecot);
    let endpoint = match (raw.path, raw.address) {
        (Some(path), None) => {
            if raw.trusted.is_some() {
                return Err(invalid(key("trusted"), "only for a TCP address"));
            }
            let mode = match raw.mode.as_deref() {
                None => 0o600,
                Some(text) => u32::from_str_radix(text, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        invalid(key("mode"), format!("{text:?} is not an octal mode"))
                    })?,
            };
            AuthEndpoint::Unix {
                path: in_data_dir(path),
                mode,
                owner: raw.owner,
                group: raw.group,
            }
        }
        (None, Some(address)) => {
            for (field, set) in [
                ("mode", raw.mode.is_some()),
                ("owner", raw.owner.is_some()),
                ("group", raw.group.is_some()),
            ] {
                if set {
                    return Err(invalid(key(field), "only for a Unix socket path"));
                }
            }
            let address = address
                .parse()
                .map_err(|_| invalid(key("address"), format!("{address:?} is not ip:port")))?;
            let trusted = match raw.trusted {
                None => ["127.0.0.0/8", "::1/128"]
                    .iter()
                    .map(|net| net.parse())
                    .collect::<Result<Vec<IpNet>, _>>()
                    .map_err(|e| invalid(key("trusted"), e.to_string()))?,
                Some(list) => list,
            };
            AuthEndpoint::Tcp { address, trusted }
        }
        _ => {
            return Err(invalid(
                key("path"),
                "give either path (a Unix socket) or address (TCP)",
            ))
        }
    };
    let positive = |value: Option<usize>, default: usize, field: &str| match value {
        None => Ok(default),
        Some(0) => Err(invalid(key(field), "must be at least 1")),
        Some(n) => Ok(n),
    };
    let max_line = positive(raw.max_line, 16 * 1024, "max_line")?;
    if !(1024..=MAX_AUTH_LINE).contains(&max_line) {
        return Err(invalid(
            key("max_line"),
            format!("between 1024 and {MAX_AUTH_LINE}"),
        ));
    }
    if raw.mechanisms.is_some() && protocol == AuthProtocol::PostfixPolicy {
        return Err(invalid(
            key("mechanisms"),
            "only for protocol = \"dovecot\"",
        ));
    }
    Ok(AuthListener {
        protocol,
        endpoint,
        max_connections: positive(raw.max_connections, 256, "max_connections")?,
        max_in_flight: positive(raw.max_in_flight, 64, "max_in_flight")?,
        max_line,
        mechanisms: raw
            .mechanisms
            .map(|names| names.iter().map(|n| n.to_ascii_uppercase()).collect()),
        name,
    })
}

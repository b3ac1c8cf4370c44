//! `[[listener]]`: the sockets, and how each one's sessions behave.

use std::collections::HashSet;
use std::net::SocketAddr;

use thiserror::Error;

use crate::error::invalid;
use crate::raw::{ClientCertificateMode, RawListener};
use crate::{ConfigError, Listener, ListenerAuth, ListenerTls};

/// Every listener, or the two loopback defaults; names and addresses once
/// each.
pub(crate) fn validate(raw: Vec<RawListener>) -> Result<Vec<Listener>, ConfigError> {
    let listeners = if raw.is_empty() {
        default_listeners()
    } else {
        raw.into_iter()
            .enumerate()
            .map(|(i, l)| listener(i, l))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    for l in &listeners {
        if !names.insert(l.name.clone()) {
            return Err(invalid(
                "listener.name",
                format!("{:?} is used twice", l.name),
            ));
        }
        if !addresses.insert(l.address) {
            return Err(invalid(
                "listener.address",
                format!("{} is used twice", l.address),
            ));
        }
    }
    Ok(listeners)
}

fn default_listeners() -> Vec<Listener> {
    let listener = |name: &str, address: &str, tls| Listener {
        name: name.to_string(),
        // Invariant: literal loopback addresses parse.
        address: address.parse().expect("valid literal address"),
        tls,
        auth: ListenerAuth::Required,
        allow_insecure_auth: false,
        auth_required_message: None,
        mechanisms: None,
        xclient_trusted: Vec::new(),
        proxy_trusted: Vec::new(),
        request_client_certificate: false,
    };
    vec![
        listener("submission", "127.0.0.1:2587", ListenerTls::StartTls),
        listener("submissions", "127.0.0.1:2465", ListenerTls::Implicit),
    ]
}

fn listener(index: usize, raw: RawListener) -> Result<Listener, ConfigError> {
    let key = |field: &str| format!("listener[{index}].{field}");
    let address: SocketAddr = raw
        .address
        .parse()
        .map_err(|_| invalid(key("address"), format!("{:?} is not ip:port", raw.address)))?;
    let tls = raw.tls.unwrap_or(ListenerTls::StartTls);
    let auth = raw.auth.unwrap_or(ListenerAuth::Required);
    let allow_insecure_auth = raw.allow_insecure_auth.unwrap_or(false);
    if auth != ListenerAuth::Disabled && tls == ListenerTls::None && !allow_insecure_auth {
        return Err(invalid(
            key("auth"),
            "AUTH on a listener without TLS would never be offered; set tls, or allow_insecure_auth = true",
        ));
    }
    let auth_required_message = raw
        .auth_required_message
        .map(|text| {
            auth_required_message(text, auth)
                .map_err(|e| invalid(key("auth_required_message"), e.to_string()))
        })
        .transpose()?;
    let mechanisms = raw
        .mechanisms
        .map(|names| names.iter().map(|n| n.to_ascii_uppercase()).collect());
    let xclient_trusted = raw.xclient_trusted.unwrap_or_default();
    let proxy_trusted = raw.proxy_trusted.unwrap_or_default();
    match (
        raw.proxy_protocol.unwrap_or(false),
        proxy_trusted.is_empty(),
    ) {
        (true, true) => {
            return Err(invalid(
                key("proxy_trusted"),
                "proxy_protocol needs the networks of the load balancers",
            ))
        }
        (false, false) => return Err(invalid(key("proxy_trusted"), "set proxy_protocol = true")),
        _ => {}
    }
    let request_client_certificate = match raw.client_certificate {
        None | Some(ClientCertificateMode::Verify) => false,
        Some(ClientCertificateMode::Request) if tls == ListenerTls::None => {
            return Err(invalid(
                key("client_certificate"),
                "needs tls on this listener",
            ))
        }
        Some(ClientCertificateMode::Request) => true,
    };
    Ok(Listener {
        request_client_certificate,
        name: raw.name.unwrap_or_else(|| format!("listener{index}")),
        address,
        tls,
        auth,
        allow_insecure_auth,
        auth_required_message,
        mechanisms,
        xclient_trusted,
        proxy_trusted,
    })
}

/// Why a listener's `auth_required_message` cannot be sent.
#[derive(Debug, Error)]
enum MessageError {
    #[error("only used where auth = \"required\" (this listener is {0})")]
    NotRequired(ListenerAuth),
    #[error("must not be empty")]
    Empty,
    #[error("{0:?} is not allowed: one line of printable ASCII")]
    NotPrintable(char),
    #[error("at most {} characters", crate::MAX_AUTH_REQUIRED_MESSAGE)]
    TooLong,
}

/// Checks the text of a listener's `530 5.7.0`: it goes onto the wire as
/// is, so one non-empty line of printable ASCII (no CR, LF or other control
/// that could end the reply early or forge another), bounded; and only
/// where a `530` for missing AUTH is ever sent.
fn auth_required_message(text: String, auth: ListenerAuth) -> Result<String, MessageError> {
    if auth != ListenerAuth::Required {
        return Err(MessageError::NotRequired(auth));
    }
    if text.trim().is_empty() {
        return Err(MessageError::Empty);
    }
    if let Some(c) = text.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(MessageError::NotPrintable(c));
    }
    if text.len() > crate::MAX_AUTH_REQUIRED_MESSAGE {
        return Err(MessageError::TooLong);
    }
    Ok(text)
}

//! Raw config to [`Config`]: defaults, paths, and every cross-field rule.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::raw::{RawConfig, RawListener};
use crate::*;

/// RFC 5321 §4.5.3.2 asks servers to wait 5 minutes for a command.
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// As Postfix's `smtpd_min_data_rate`.
const DEFAULT_MIN_DATA_RATE: u64 = 500;

/// What is wrong with a config, naming the file or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

pub(crate) fn validate(
    raw: RawConfig,
    base: &Path,
    data_dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let data_dir = data_dir
        .map(Path::to_path_buf)
        .or(raw.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let in_data_dir = |p: PathBuf| if p.is_absolute() { p } else { data_dir.join(p) };
    let beside_config = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

    let tls = match (raw.tls.certificate, raw.tls.private_key) {
        (Some(certificate), Some(private_key)) => TlsSource::Files {
            certificate: beside_config(certificate),
            private_key: beside_config(private_key),
        },
        (None, None) => TlsSource::SelfSigned {
            dir: data_dir.join("tls"),
        },
        _ => {
            return Err(invalid(
                "tls",
                "give both certificate and private_key, or neither",
            ))
        }
    };

    let client_certificates =
        client_certificates(raw.tls.client_ca, raw.tls.client_identity)?.map(|(ca, identity)| {
            ClientCertificates {
                ca: beside_config(ca),
                identity,
            }
        });

    let users = match raw.users.backend.as_deref().unwrap_or("sqlite") {
        "sqlite" => UserBackend::Sqlite {
            path: in_data_dir(raw.users.path.unwrap_or_else(|| "users.sqlite".into())),
        },
        "file" => UserBackend::File {
            path: in_data_dir(
                raw.users
                    .path
                    .ok_or_else(|| invalid("users.path", "the file backend needs a path"))?,
            ),
        },
        "postgres" => UserBackend::Postgres {
            url: defence::DatabaseUrl(
                raw.users
                    .url
                    .ok_or_else(|| invalid("users.url", "the postgres backend needs a url"))?,
            ),
            password_query: raw.users.password_query,
        },
        other => {
            return Err(invalid(
                "users.backend",
                format!("unknown backend {other:?} (sqlite, file, postgres)"),
            ))
        }
    };

    let l = raw.limits;
    let (store, defence) = crate::defence::validate(crate::defence::RawDefence {
        backend: l.backend,
        max_connections_per_address: l.max_connections_per_address,
        max_connections_per_network: l.max_connections_per_network,
        max_connection_rate: l.max_connection_rate,
        connection_rate_window: l.connection_rate_window,
        auth: l.auth,
    })?;
    let limits = Limits {
        max_message_size: l.max_message_size.unwrap_or(25 * 1024 * 1024),
        max_recipients: l.max_recipients.unwrap_or(100),
        max_unauthenticated_commands: l.max_unauthenticated_commands.unwrap_or(10),
        max_auth_failures: l.max_auth_failures.unwrap_or(3),
        idle_timeout: Duration::from_secs(l.idle_timeout_secs.unwrap_or(300)),
        command_timeout: match l.command_timeout {
            None => DEFAULT_COMMAND_TIMEOUT,
            Some(text) => crate::delivery::parse_duration(&text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    invalid(
                        "limits.command_timeout",
                        format!("{text:?} is not a positive duration like 30s or 5m"),
                    )
                })?,
        },
        min_data_rate: l.min_data_rate.unwrap_or(DEFAULT_MIN_DATA_RATE),
        max_connections: l.max_connections.unwrap_or(1000),
        max_invalid_commands: l.max_invalid_commands.unwrap_or(10),
        store,
        defence,
    };
    if limits.max_message_size == 0 || limits.max_recipients == 0 || limits.max_connections == 0 {
        return Err(invalid("limits", "sizes and counts must be positive"));
    }
    if limits.max_auth_failures == 0 {
        return Err(invalid("limits.max_auth_failures", "must be at least 1"));
    }

    let auth = AuthTuning {
        verified_cache_ttl: Duration::from_secs(raw.auth.verified_cache_ttl_secs.unwrap_or(300)),
        max_concurrent_verifications: raw.auth.max_concurrent_verifications,
        failure_floor: Duration::from_millis(raw.auth.failure_floor_ms.unwrap_or(0)),
        slot_wait: match &raw.auth.slot_wait {
            None => None,
            Some(text) => Some(
                crate::delivery::parse_duration(text)
                    .filter(|d| *d <= crate::MAX_SLOT_WAIT)
                    .ok_or_else(|| {
                        invalid(
                            "auth.slot_wait",
                            format!("{text:?} is not a duration from 0s to 10s, like 2s"),
                        )
                    })?,
            ),
        },
        slot_queue: raw.auth.slot_queue,
    };
    if auth.slot_queue.is_some_and(|n| n > crate::MAX_SLOT_QUEUE) {
        return Err(invalid(
            "auth.slot_queue",
            format!("at most {}", crate::MAX_SLOT_QUEUE),
        ));
    }
    if auth.failure_floor > Duration::from_secs(1) {
        return Err(invalid("auth.failure_floor_ms", "at most 1000"));
    }
    if auth.max_concurrent_verifications == Some(0) {
        return Err(invalid(
            "auth.max_concurrent_verifications",
            "must be at least 1",
        ));
    }
    let admin = match raw.admin.address {
        None => None,
        Some(text) => Some(
            text.parse::<SocketAddr>()
                .map_err(|_| invalid("admin.address", format!("{text:?} is not ip:port")))?,
        ),
    };

    let listeners = if raw.listeners.is_empty() {
        default_listeners()
    } else {
        raw.listeners
            .into_iter()
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

    let auth_listeners = crate::auth_listener::validate(raw.auth_listeners, &in_data_dir)?;

    let delivery = crate::delivery::validate(raw.delivery, raw.routes, &in_data_dir)?;

    let policy = crate::policy::validate(raw.policy, raw.lua, base, &data_dir)?;
    let oauth = crate::oauth::validate(raw.oauth, base)?;
    let authorization = crate::authorization::validate(raw.senders, raw.tenants, raw.tenant)?;

    if raw.workers == Some(0) {
        return Err(invalid("workers", "must be at least 1"));
    }

    Ok(Config {
        workers: raw.workers,
        authorization,
        oauth,
        policy,
        delivery,
        hostname: raw.hostname.unwrap_or_else(|| "localhost".to_string()),
        spool_dir: in_data_dir(raw.spool.path.unwrap_or_else(|| "spool".into())),
        cram_md5: raw.users.cram_md5.unwrap_or(true),
        store_timeout: match &raw.users.timeout {
            None => crate::DEFAULT_STORE_TIMEOUT,
            Some(text) => crate::delivery::parse_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    invalid(
                        "users.timeout",
                        format!("{text:?} is not a positive duration like 500ms or 3s"),
                    )
                })?,
        },
        data_dir,
        tls,
        client_certificates,
        users,
        limits,
        auth,
        admin,
        listeners,
        auth_listeners,
    })
}

/// `[tls] client_ca` and `client_identity`: the identity needs a CA.
fn client_certificates(
    ca: Option<PathBuf>,
    identity: Option<String>,
) -> Result<Option<(PathBuf, ClientIdentity)>, ConfigError> {
    if ca.is_none() && identity.is_some() {
        return Err(invalid("tls.client_identity", "needs tls.client_ca"));
    }
    let identity = match identity.as_deref() {
        None | Some("cn") => ClientIdentity::CommonName,
        Some("email") => ClientIdentity::Email,
        Some(other) => {
            return Err(invalid(
                "tls.client_identity",
                format!("{other:?}: use cn or email"),
            ))
        }
    };
    Ok(ca.map(|ca| (ca, identity)))
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
    let tls = match raw.tls.as_deref().unwrap_or("starttls") {
        "starttls" => ListenerTls::StartTls,
        "implicit" => ListenerTls::Implicit,
        "none" => ListenerTls::None,
        other => {
            return Err(invalid(
                key("tls"),
                format!("{other:?}: use starttls, implicit or none"),
            ))
        }
    };
    let auth = match raw.auth.as_deref().unwrap_or("required") {
        "required" => ListenerAuth::Required,
        "disabled" => ListenerAuth::Disabled,
        "optional" => ListenerAuth::Optional,
        other => {
            return Err(invalid(
                key("auth"),
                format!("{other:?}: use required, optional or disabled"),
            ))
        }
    };
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
            auth_required_message(text, auth).map_err(|m| invalid(key("auth_required_message"), m))
        })
        .transpose()?;
    let mechanisms = raw
        .mechanisms
        .map(|names| names.iter().map(|n| n.to_ascii_uppercase()).collect());
    let networks = |list: Option<Vec<String>>, field: &str| {
        list.unwrap_or_default()
            .iter()
            .map(|net| net.parse())
            .collect::<Result<Vec<portcullis_limits::IpNet>, String>>()
            .map_err(|message| invalid(key(field), message))
    };
    let xclient_trusted = networks(raw.xclient_trusted, "xclient_trusted")?;
    let proxy_trusted = networks(raw.proxy_trusted, "proxy_trusted")?;
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
    Ok(Listener {
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

/// Checks the text of a listener's `530 5.7.0`: it goes onto the wire as
/// is, so one non-empty line of printable ASCII (no CR, LF or other control
/// that could end the reply early or forge another), bounded; and only
/// where a `530` for missing AUTH is ever sent.
fn auth_required_message(text: String, auth: ListenerAuth) -> Result<String, String> {
    if auth != ListenerAuth::Required {
        return Err(format!(
            "only used where auth = \"required\" (this listener is {auth})"
        ));
    }
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = text.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!("{c:?} is not allowed: one line of printable ASCII"));
    }
    if text.len() > crate::MAX_AUTH_REQUIRED_MESSAGE {
        return Err(format!(
            "at most {} characters",
            crate::MAX_AUTH_REQUIRED_MESSAGE
        ));
    }
    Ok(text)
}

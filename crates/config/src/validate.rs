//! Raw config to [`Config`]: defaults, paths, and the rules within each
//! section, one function per section. Rules that span sections (a
//! listener's mechanisms against the stores) are checked by the server
//! when it binds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::{renamed, Unit};
use crate::error::{invalid, Deprecation};
use crate::raw::{RawAuth, RawConfig, RawLimits, RawTls, RawUsers, UsersBackend};
use crate::*;

/// RFC 5321 §4.5.3.2 asks servers to wait 5 minutes for a command.
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// As Postfix's `smtpd_min_data_rate`.
const DEFAULT_MIN_DATA_RATE: u64 = 500;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_VERIFIED_CACHE_TTL: Duration = Duration::from_secs(300);

/// Where relative paths are taken from.
pub(crate) struct Paths<'a> {
    /// The config file's directory (certificates, scripts, key files).
    pub base: &'a Path,
    /// The data directory (stores, spool).
    pub data_dir: &'a Path,
}

impl Paths<'_> {
    pub(crate) fn in_data_dir(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.data_dir.join(p)
        }
    }

    pub(crate) fn beside_config(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }
}

pub(crate) fn validate(
    mut raw: RawConfig,
    base: &Path,
    data_dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let data_dir = data_dir
        .map(Path::to_path_buf)
        .or(raw.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let paths = Paths {
        base,
        data_dir: &data_dir,
    };
    let mut deprecations = Vec::new();

    let (tls, client_certificates) = tls(raw.tls, &paths)?;
    let username_profile = match raw.users.username_profile.as_deref() {
        None => portcullis_sasl::UsernameProfile::default(),
        Some(name) => portcullis_sasl::UsernameProfile::from_name(name).ok_or_else(|| {
            invalid(
                "users.username_profile",
                format!("{name:?}: expected \"case_mapped\" or \"exact\""),
            )
        })?,
    };
    let (users, store_timeout, cram_md5) = users(raw.users, &paths)?;
    let sending = crate::containment::validate_sending(raw.limits.sending.take())?;
    let containment = crate::containment::validate(raw.containment.take())?;
    let limits = limits(raw.limits, &mut deprecations)?;
    let auth = auth(raw.auth, &mut deprecations)?;
    let admin = match raw.admin.address {
        None => None,
        Some(text) => Some(
            text.parse::<SocketAddr>()
                .map_err(|_| invalid("admin.address", format!("{text:?} is not ip:port")))?,
        ),
    };
    let listeners = crate::listener::validate(raw.listeners)?;
    let auth_listeners =
        crate::auth_listener::validate(raw.auth_listeners, &|p| paths.in_data_dir(p))?;
    let delivery = crate::delivery::validate(raw.delivery, raw.routes, &paths)?;
    let policy = crate::policy::validate(raw.policy, raw.lua, &paths, &mut deprecations)?;
    let oauth = crate::oauth::validate(raw.oauth, base, &mut deprecations)?;
    let authorization = crate::authorization::validate(raw.senders, raw.tenants, raw.tenant)?;
    if raw.workers == Some(0) {
        return Err(invalid("workers", "must be at least 1"));
    }

    Ok(Config {
        sending,
        containment,
        workers: raw.workers,
        authorization,
        oauth,
        policy,
        delivery,
        hostname: raw.hostname.unwrap_or_else(|| "localhost".to_string()),
        spool_dir: paths.in_data_dir(raw.spool.path.unwrap_or_else(|| "spool".into())),
        cram_md5,
        store_timeout,
        username_profile,
        data_dir,
        tls,
        client_certificates,
        users,
        limits,
        auth,
        admin,
        listeners,
        deprecations,
        auth_listeners,
    })
}

/// `[tls]`: the server certificate, and client certificates (EXTERNAL).
fn tls(raw: RawTls, paths: &Paths) -> Result<(TlsSource, Option<ClientCertificates>), ConfigError> {
    let source = match (raw.certificate, raw.private_key) {
        (Some(certificate), Some(private_key)) => TlsSource::Files {
            certificate: paths.beside_config(certificate),
            private_key: paths.beside_config(private_key),
        },
        (None, None) => TlsSource::SelfSigned {
            dir: paths.data_dir.join("tls"),
        },
        _ => {
            return Err(invalid(
                "tls",
                "give both certificate and private_key, or neither",
            ))
        }
    };
    // The identity needs a CA.
    let client = match (raw.client_ca, raw.client_identity) {
        (None, Some(_)) => return Err(invalid("tls.client_identity", "needs tls.client_ca")),
        (None, None) => None,
        (Some(ca), identity) => Some(ClientCertificates {
            ca: paths.beside_config(ca),
            identity: identity.unwrap_or(ClientIdentity::CommonName),
        }),
    };
    Ok((source, client))
}

/// `[users]`: the credential store, how long a call to it may take, and
/// whether CRAM-MD5 keys are kept.
fn users(raw: RawUsers, paths: &Paths) -> Result<(UserBackend, Duration, bool), ConfigError> {
    let backend = match raw.backend.unwrap_or(UsersBackend::Sqlite) {
        UsersBackend::Sqlite => UserBackend::Sqlite {
            path: paths.in_data_dir(raw.path.unwrap_or_else(|| "users.sqlite".into())),
        },
        UsersBackend::File => UserBackend::File {
            path: paths.in_data_dir(
                raw.path
                    .ok_or_else(|| invalid("users.path", "the file backend needs a path"))?,
            ),
        },
        UsersBackend::Postgres => UserBackend::Postgres {
            url: defence::DatabaseUrl(
                raw.url
                    .ok_or_else(|| invalid("users.url", "the postgres backend needs a url"))?,
            ),
            password_query: raw.password_query,
        },
        UsersBackend::Ldap => UserBackend::Ldap(Box::new(ldap(&raw, paths)?)),
    };
    let timeout = raw.timeout.unwrap_or(crate::DEFAULT_STORE_TIMEOUT);
    if timeout.is_zero() {
        return Err(invalid(
            "users.timeout",
            "must be positive, like 500ms or 3s",
        ));
    }
    Ok((backend, timeout, raw.cram_md5.unwrap_or(true)))
}

/// `[users] backend = "ldap"`.
fn ldap(raw: &RawUsers, paths: &Paths) -> Result<crate::LdapUsers, ConfigError> {
    let url = raw
        .url
        .clone()
        .ok_or_else(|| invalid("users.url", "the ldap backend needs a url"))?;
    if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
        return Err(invalid("users.url", "an ldap:// or ldaps:// URL"));
    }
    let user_filter = raw
        .user_filter
        .clone()
        .unwrap_or_else(|| "(&(objectClass=inetOrgPerson)(uid=%u))".into());
    if !user_filter.contains("%u") {
        return Err(invalid("users.user_filter", "must contain %u"));
    }
    if raw.user_dn.as_ref().is_some_and(|d| !d.contains("%u")) {
        return Err(invalid("users.user_dn", "must contain %u"));
    }
    Ok(crate::LdapUsers {
        url,
        starttls: raw.starttls.unwrap_or(false),
        base_dn: raw
            .base_dn
            .clone()
            .ok_or_else(|| invalid("users.base_dn", "the ldap backend needs a base_dn"))?,
        user_filter,
        name_attribute: raw.name_attribute.clone().unwrap_or_else(|| "uid".into()),
        bind_dn: raw.bind_dn.clone(),
        bind_password_file: raw.bind_password_file.clone().map(|p| paths.in_data_dir(p)),
        user_dn: raw.user_dn.clone(),
    })
}

/// `[limits]` and `[limits.auth]`.
fn limits(l: RawLimits, deprecations: &mut Vec<Deprecation>) -> Result<Limits, ConfigError> {
    let (store, defence) = crate::defence::validate(crate::defence::RawDefence {
        backend: l.backend,
        max_connections_per_address: l.max_connections_per_address,
        max_connections_per_network: l.max_connections_per_network,
        max_connection_rate: l.max_connection_rate,
        connection_rate_window: l.connection_rate_window,
        auth: l.auth,
    })?;
    let idle_timeout = renamed(
        ("limits.idle_timeout", l.idle_timeout),
        ("limits.idle_timeout_secs", l.idle_timeout_secs),
        Unit::Seconds,
        deprecations,
    )?
    .unwrap_or(DEFAULT_IDLE_TIMEOUT);
    let limits = Limits {
        max_message_size: l.max_message_size.unwrap_or(25 * 1024 * 1024),
        max_recipients: l.max_recipients.unwrap_or(100),
        max_unauthenticated_commands: l.max_unauthenticated_commands.unwrap_or(10),
        max_auth_failures: l.max_auth_failures.unwrap_or(3),
        idle_timeout,
        command_timeout: l.command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        min_data_rate: l.min_data_rate.unwrap_or(DEFAULT_MIN_DATA_RATE),
        max_connections: l.max_connections.unwrap_or(1000),
        max_invalid_commands: l.max_invalid_commands.unwrap_or(10),
        store,
        defence,
    };
    if limits.command_timeout.is_zero() {
        return Err(invalid(
            "limits.command_timeout",
            "must be positive, like 30s or 5m",
        ));
    }
    if limits.idle_timeout.is_zero() {
        return Err(invalid("limits.idle_timeout", "must be positive, like 5m"));
    }
    if limits.max_message_size == 0 || limits.max_recipients == 0 || limits.max_connections == 0 {
        return Err(invalid("limits", "sizes and counts must be positive"));
    }
    if limits.max_auth_failures == 0 {
        return Err(invalid("limits.max_auth_failures", "must be at least 1"));
    }
    Ok(limits)
}

/// `[auth]`: how much the AUTH decision may cost.
fn auth(raw: RawAuth, deprecations: &mut Vec<Deprecation>) -> Result<AuthTuning, ConfigError> {
    let verified_cache_ttl = renamed(
        ("auth.verified_cache_ttl", raw.verified_cache_ttl),
        ("auth.verified_cache_ttl_secs", raw.verified_cache_ttl_secs),
        Unit::Seconds,
        deprecations,
    )?
    .unwrap_or(DEFAULT_VERIFIED_CACHE_TTL);
    let failure_floor = renamed(
        ("auth.failure_floor", raw.failure_floor),
        ("auth.failure_floor_ms", raw.failure_floor_ms),
        Unit::Millis,
        deprecations,
    )?
    .unwrap_or(Duration::ZERO);
    let auth = AuthTuning {
        verified_cache_ttl,
        max_concurrent_verifications: raw.max_concurrent_verifications,
        failure_floor,
        slot_wait: raw.slot_wait,
        slot_queue: raw.slot_queue,
        password_max_age: raw.password_max_age,
    };
    if auth.slot_wait.is_some_and(|d| d > crate::MAX_SLOT_WAIT) {
        return Err(invalid("auth.slot_wait", "from 0s to 10s, like 2s"));
    }
    if auth.slot_queue.is_some_and(|n| n > crate::MAX_SLOT_QUEUE) {
        return Err(invalid(
            "auth.slot_queue",
            format!("at most {}", crate::MAX_SLOT_QUEUE),
        ));
    }
    if auth.failure_floor > Duration::from_secs(1) {
        return Err(invalid("auth.failure_floor", "at most 1s"));
    }
    if auth.max_concurrent_verifications == Some(0) {
        return Err(invalid(
            "auth.max_concurrent_verifications",
            "must be at least 1",
        ));
    }
    if auth.password_max_age.is_some_and(|d| d.is_zero()) {
        return Err(invalid(
            "auth.password_max_age",
            "must be positive, like 90d",
        ));
    }
    Ok(auth)
}

//! The `[delivery]` section and the `[[route]]` tables: how spooled messages
//! leave the server.
//!
//! Without a `[delivery]` section nothing is delivered and messages stay in
//! the spool, as before delivery existed; that keeps a plain "submission
//! into a directory" set-up working. With it, at least one route is needed.
//! Routes are tried in file order; the first whose `domains` and `users`
//! match a recipient carries it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_sasl::Secret;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{invalid, ConfigError};
use crate::validate::Paths;

/// Validated delivery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Messages delivered at the same time on each route, unless the route
    /// sets its own `workers` (and on recipients no route matches).
    pub workers: usize,
    /// How often the spool is scanned for new or due messages.
    pub scan_interval: Duration,
    /// Delay before the first retry; doubled after each failure.
    pub retry_initial: Duration,
    /// Longest delay between two attempts.
    pub retry_max: Duration,
    /// A message still undelivered this long after arrival bounces.
    pub max_age: Duration,
    /// Limit on connecting (and the greeting) to a next hop.
    pub connect_timeout: Duration,
    /// Limit on each command reply, and on the reply after the final dot.
    pub command_timeout: Duration,
    /// Routes in file order.
    pub routes: Vec<Route>,
}

/// One route: which recipients it carries, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// Lowercase domains; `*` matches any, `.example.com` matches subdomains.
    pub domains: Vec<String>,
    /// Authenticated users (authn ids) this route is for; empty = everyone.
    pub users: Vec<String>,
    pub transport: Transport,
    /// Messages this route delivers at the same time. Each route has its
    /// own, so one route's stalled next hop never holds another's mail.
    pub workers: usize,
    /// How the submitter's identity travels to the next hop.
    pub identity: Identity,
    /// With `identity = "xclient"`: a next hop that does not offer XCLIENT
    /// LOGIN is a temporary failure of the route (retried, then bounced),
    /// never a message sent without the identity. Default true.
    pub identity_required: bool,
}

/// How a route hands messages on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// SMTP relay to a smarthost.
    Smtp(Relay),
    /// LMTP (RFC 2033) to a mailbox server.
    Lmtp(Relay),
    /// A Maildir per recipient under this directory.
    Maildir { path: PathBuf },
}

/// A next hop spoken to over SMTP or LMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub target: Target,
    pub tls: RelayTls,
    /// Skip certificate verification (tests, or a next hop on loopback).
    pub dangerous_accept_invalid_certs: bool,
    /// Trust only the CA certificates in this PEM file (a private CA)
    /// instead of the public roots; the host name is still checked.
    pub ca_file: Option<PathBuf>,
    pub auth: Option<RelayAuth>,
}

/// Where the next hop listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// TLS towards the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    /// STARTTLS required: no TLS, no delivery (a temporary failure).
    StartTls,
    /// STARTTLS when offered, plain text otherwise.
    Opportunistic,
    /// Never TLS.
    None,
}

/// Credentials for AUTH PLAIN at the next hop. The password is a
/// [`Secret`] like every other credential: never printed, wiped on drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAuth {
    pub username: String,
    pub password: Secret,
}

/// How the authenticated identity is passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    None,
    /// An `X-Authenticated-User:` header (any such header from the client is removed).
    Header,
    /// `XCLIENT LOGIN=` (Postfix); see [`Route::identity_required`].
    Xclient,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelivery {
    workers: Option<usize>,
    #[serde(default, with = "crate::duration::option")]
    scan_interval: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    retry_initial: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    retry_max: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    max_age: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    command_timeout: Option<Duration>,
}

/// `[[route]] transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TransportKind {
    Smtp,
    Lmtp,
    Maildir,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    name: Option<String>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    transport: TransportKind,
    address: Option<String>,
    socket: Option<PathBuf>,
    path: Option<PathBuf>,
    tls: Option<RelayTls>,
    dangerous_accept_invalid_certs: Option<bool>,
    ca_file: Option<PathBuf>,
    auth_username: Option<String>,
    auth_password: Option<String>,
    auth_password_file: Option<PathBuf>,
    identity: Option<Identity>,
    identity_required: Option<bool>,
    workers: Option<usize>,
}

pub(crate) fn validate(
    raw: Option<RawDelivery>,
    routes: Vec<RawRoute>,
    paths: &Paths,
) -> Result<Option<Delivery>, ConfigError> {
    let Some(raw) = raw else {
        if routes.is_empty() {
            return Ok(None);
        }
        return Err(invalid("route", "routes need a [delivery] section"));
    };
    if routes.is_empty() {
        return Err(invalid(
            "delivery",
            "[delivery] needs at least one [[route]]",
        ));
    }
    let duration = |key: &str, value: Option<Duration>, default_secs: u64| match value
        .unwrap_or(Duration::from_secs(default_secs))
    {
        d if d.is_zero() => Err(invalid(format!("delivery.{key}"), "must be positive")),
        d => Ok(d),
    };
    let workers = raw.workers.unwrap_or(4);
    if workers == 0 {
        return Err(invalid("delivery.workers", "must be at least 1"));
    }
    let delivery = Delivery {
        workers,
        scan_interval: duration("scan_interval", raw.scan_interval, 1)?,
        retry_initial: duration("retry_initial", raw.retry_initial, 60)?,
        retry_max: duration("retry_max", raw.retry_max, 3600)?,
        max_age: duration("max_age", raw.max_age, 5 * 86400)?,
        connect_timeout: duration("connect_timeout", raw.connect_timeout, 30)?,
        command_timeout: duration("command_timeout", raw.command_timeout, 300)?,
        routes: routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| route(i, r, workers, paths))
            .collect::<Result<_, _>>()?,
    };
    Ok(Some(delivery))
}

fn route(
    index: usize,
    mut raw: RawRoute,
    default_workers: usize,
    paths: &Paths,
) -> Result<Route, ConfigError> {
    let key = |field: &str| format!("route[{index}].{field}");
    let workers = raw.workers.unwrap_or(default_workers);
    if workers == 0 {
        return Err(invalid(key("workers"), "must be at least 1"));
    }
    let domains: Vec<String> = if raw.domains.is_empty() {
        vec!["*".to_string()]
    } else {
        raw.domains
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect()
    };
    let identity = raw.identity.unwrap_or(Identity::None);
    if raw.identity_required.is_some() && identity != Identity::Xclient {
        return Err(invalid(
            key("identity_required"),
            "only applies to identity = \"xclient\"",
        ));
    }
    let transport = match raw.transport {
        TransportKind::Maildir => Transport::Maildir {
            path: paths.in_data_dir(
                raw.path
                    .clone()
                    .ok_or_else(|| invalid(key("path"), "maildir needs a path"))?,
            ),
        },
        TransportKind::Smtp => Transport::Smtp(relay(&mut raw, &key, false, paths)?),
        TransportKind::Lmtp => Transport::Lmtp(relay(&mut raw, &key, true, paths)?),
    };
    Ok(Route {
        name: raw.name.unwrap_or_else(|| format!("route{index}")),
        domains,
        users: raw.users,
        transport,
        workers,
        identity,
        identity_required: raw.identity_required.unwrap_or(true),
    })
}

fn relay(
    raw: &mut RawRoute,
    key: &dyn Fn(&str) -> String,
    lmtp: bool,
    paths: &Paths,
) -> Result<Relay, ConfigError> {
    let target = match (&raw.address, &raw.socket) {
        (Some(address), None) => {
            let (host, port) = address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
                .filter(|(h, _)| !h.is_empty())
                .ok_or_else(|| invalid(key("address"), format!("{address:?} is not host:port")))?;
            Target::Tcp {
                host: host.to_string(),
                port,
            }
        }
        (None, Some(socket)) if lmtp => Target::Unix(socket.clone()),
        (None, Some(_)) => return Err(invalid(key("socket"), "only lmtp routes take a socket")),
        _ => {
            return Err(invalid(
                key("address"),
                "give an address (host:port) or, for lmtp, a socket",
            ))
        }
    };
    let default_tls = if matches!(target, Target::Unix(_)) {
        RelayTls::None
    } else {
        RelayTls::StartTls
    };
    let tls = raw.tls.unwrap_or(default_tls);
    let password = match (raw.auth_password.take(), &raw.auth_password_file) {
        (Some(p), None) => Some(Secret::from(p)),
        (None, Some(file)) => Some(
            read_password(file).map_err(|e| invalid(key("auth_password_file"), e.to_string()))?,
        ),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(invalid(
                key("auth_password"),
                "give auth_password or auth_password_file, not both",
            ))
        }
    };
    let auth = match (&raw.auth_username, password) {
        (Some(username), Some(password)) => Some(RelayAuth {
            username: username.clone(),
            password,
        }),
        (None, None) => None,
        _ => {
            return Err(invalid(
                key("auth_username"),
                "AUTH needs both a username and a password",
            ))
        }
    };
    let dangerous_accept_invalid_certs = raw.dangerous_accept_invalid_certs.unwrap_or(false);
    if dangerous_accept_invalid_certs && raw.ca_file.is_some() {
        return Err(invalid(
            key("ca_file"),
            "give ca_file or dangerous_accept_invalid_certs, not both",
        ));
    }
    Ok(Relay {
        target,
        tls,
        dangerous_accept_invalid_certs,
        ca_file: raw.ca_file.clone().map(|p| paths.in_data_dir(p)),
        auth,
    })
}

/// A relay password file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
struct PasswordFileError {
    path: PathBuf,
    source: std::io::Error,
}

fn read_password(path: &Path) -> Result<Secret, PasswordFileError> {
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| PasswordFileError {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Secret::from(text.trim_end_matches(['\r', '\n'])))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::Config;

    fn routes(route: &str) -> Result<Vec<Route>, ConfigError> {
        let text = format!("data_dir = \"/d\"\n[delivery]\n[[route]]\n{route}");
        let config = Config::parse(&text, Path::new("/etc/portcullis/portcullis.toml"), None)?;
        Ok(config.delivery.expect("a [delivery] section").routes)
    }

    const SMARTHOST: &str = "transport = \"smtp\"\naddress = \"relay.example:587\"\n";

    #[test]
    fn xclient_identity_is_required_unless_the_route_says_otherwise() {
        let strict = routes(&format!("{SMARTHOST}identity = \"xclient\"\n")).unwrap();
        assert!(strict[0].identity_required);
        let lenient = routes(&format!(
            "{SMARTHOST}identity = \"xclient\"\nidentity_required = false\n"
        ))
        .unwrap();
        assert!(!lenient[0].identity_required);
        assert!(
            routes(&format!("{SMARTHOST}identity_required = false\n")).is_err(),
            "identity_required without identity = \"xclient\" means nothing"
        );
    }

    #[test]
    fn each_route_has_its_own_workers_defaulting_to_the_sections() {
        let text = "data_dir = \"/d\"\n[delivery]\nworkers = 3\n\
                    [[route]]\ntransport = \"maildir\"\npath = \"m\"\n\
                    [[route]]\ntransport = \"maildir\"\npath = \"n\"\nworkers = 1\n";
        let config = Config::parse(text, Path::new("/etc/p.toml"), None).unwrap();
        let delivery = config.delivery.unwrap();
        assert_eq!(delivery.workers, 3);
        assert_eq!(delivery.routes[0].workers, 3);
        assert_eq!(delivery.routes[1].workers, 1);
        assert!(routes("transport = \"maildir\"\npath = \"m\"\nworkers = 0\n").is_err());
    }

    fn relay_auth(extra: &str) -> RelayAuth {
        let r = routes(&format!("{SMARTHOST}auth_username = \"u\"\n{extra}")).unwrap();
        let Transport::Smtp(relay) = &r[0].transport else {
            panic!("smtp expected")
        };
        relay.auth.clone().expect("AUTH configured")
    }

    #[test]
    fn relay_password_is_kept_as_a_secret() {
        let auth = relay_auth("auth_password = \"hunter2\"\n");
        let password: &portcullis_sasl::Secret = &auth.password;
        assert!(password.ct_eq(b"hunter2"));
        assert!(!format!("{auth:?}").contains("hunter2"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay-password");
        std::fs::write(&file, "from a file\r\n").unwrap();
        let auth = relay_auth(&format!(
            "auth_password_file = {:?}\n",
            file.display().to_string()
        ));
        assert!(auth.password.ct_eq(b"from a file"), "line end trimmed");
    }

    #[test]
    fn ca_file_is_in_the_data_dir_and_excludes_accepting_any_certificate() {
        let r = routes(&format!("{SMARTHOST}ca_file = \"ca.pem\"\n")).unwrap();
        let Transport::Smtp(relay) = &r[0].transport else {
            panic!("smtp expected")
        };
        assert_eq!(relay.ca_file.as_deref(), Some(Path::new("/d/ca.pem")));
        assert!(routes(&format!(
            "{SMARTHOST}ca_file = \"ca.pem\"\ndangerous_accept_invalid_certs = true\n"
        ))
        .is_err());
    }
}

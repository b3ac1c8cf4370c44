//! `[limits]` brute-force keys and `[limits.auth]`: raw form, the
//! validated [`Defence`] settings and their defaults.
//!
//! The limits crate enforces these; this crate does not depend on it (the
//! server hands [`Defence`] over), so reading a config never pulls in the
//! machinery that counts failures. Durations are written `500ms`, `30s`,
//! `15m`; networks as CIDR blocks.

use std::time::Duration;

use portcullis_cidr::IpNet;
use serde::Deserialize;

use crate::error::invalid;
use crate::ConfigError;

/// Where counts and bans live (`[limits] backend`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LimitsStore {
    /// In this process; bans also in `bans.json` in the data directory so
    /// that `portcullis ban` sees them.
    Local,
    /// Shared by every instance pointing at the same Redis.
    Redis { url: String },
}

/// `backend` names neither store.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected \"memory\" or \"redis://host:port\"")]
pub struct UnknownStore(String);

impl TryFrom<String> for LimitsStore {
    type Error = UnknownStore;
    fn try_from(text: String) -> Result<Self, UnknownStore> {
        if text == "memory" {
            Ok(LimitsStore::Local)
        } else if text.starts_with("redis://") || text.starts_with("rediss://") {
            Ok(LimitsStore::Redis { url: text })
        } else {
            Err(UnknownStore(text))
        }
    }
}

/// A database URL whose `Debug` leaves out the password
/// (`postgres://user:…@host/db`), so `check-config` and logs never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = &self.0;
        let redacted = match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &url[scheme + 3..at];
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{}{user}:…{}", &url[..scheme + 3], &url[at..])
            }
            _ => url.clone(),
        };
        write!(f, "{redacted:?}")
    }
}

/// `[limits.auth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthLimits {
    #[serde(default, with = "crate::duration::option")]
    pub delay_initial: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    pub delay_max: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    pub failure_window: Option<Duration>,
    pub network_divisor: Option<u64>,
    pub user_max_failures: Option<u64>,
    #[serde(default, with = "crate::duration::option")]
    pub user_cooldown: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    pub trusted_for: Option<Duration>,
    pub ban_after: Option<u64>,
    #[serde(default, with = "crate::duration::option")]
    pub ban_duration: Option<Duration>,
    pub allow: Option<Vec<IpNet>>,
}

/// How hard the server pushes back on failures and connection floods: the
/// limits crate's knobs, as the config sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defence {
    /// Delay before the first failure reply (Dovecot: 2 s).
    pub delay_initial: Duration,
    /// The delay never grows past this (Dovecot: 15 s).
    pub delay_max: Duration,
    /// The window over which failures are counted.
    pub failure_window: Duration,
    /// A network's failures weigh 1/`network_divisor` of an address's.
    pub network_divisor: u64,
    /// Failures for one user in the window before the cool-down starts.
    pub user_max_failures: u64,
    /// How long a user under attack gets `454` from unknown addresses.
    pub user_cooldown: Duration,
    /// How long an address that logged in as a user is spared their
    /// cool-down.
    pub trusted_for: Duration,
    /// Failures from one address in the window before it is banned.
    pub ban_after: u64,
    pub ban_duration: Duration,
    /// Addresses never banned, cooled down or connection-limited.
    pub allow: Vec<IpNet>,
    /// Open connections from one address (0: no limit).
    pub max_connections_per_address: u32,
    /// Open connections from one /24 (IPv4) or /64 (IPv6) (0: no limit).
    pub max_connections_per_network: u32,
    /// New connections from one address per window (0: no limit).
    pub max_connection_rate: u64,
    pub connection_rate_window: Duration,
}

impl Default for Defence {
    fn default() -> Self {
        Defence {
            delay_initial: Duration::from_secs(2),
            delay_max: Duration::from_secs(15),
            failure_window: Duration::from_secs(15 * 60),
            network_divisor: 4,
            user_max_failures: 10,
            user_cooldown: Duration::from_secs(15 * 60),
            trusted_for: Duration::from_secs(30 * 24 * 3600),
            ban_after: 20,
            ban_duration: Duration::from_secs(3600),
            // As fail2ban's `ignoreip`: the host itself (webmail, monitoring).
            allow: vec![
                "127.0.0.0/8".parse().expect("valid literal network"),
                "::1".parse().expect("valid literal network"),
            ],
            max_connections_per_address: 20,
            max_connections_per_network: 100,
            max_connection_rate: 60,
            connection_rate_window: Duration::from_secs(60),
        }
    }
}

/// The `[limits]` keys this module owns, gathered by the caller.
pub(crate) struct RawDefence {
    pub backend: Option<LimitsStore>,
    pub max_connections_per_address: Option<u32>,
    pub max_connections_per_network: Option<u32>,
    pub max_connection_rate: Option<u64>,
    pub connection_rate_window: Option<Duration>,
    pub auth: Option<RawAuthLimits>,
}

pub(crate) fn validate(raw: RawDefence) -> Result<(LimitsStore, Defence), ConfigError> {
    let store = raw.backend.unwrap_or(LimitsStore::Local);
    let d = Defence::default();
    let a = raw.auth.unwrap_or_default();
    let config = Defence {
        delay_initial: a.delay_initial.unwrap_or(d.delay_initial),
        delay_max: a.delay_max.unwrap_or(d.delay_max),
        failure_window: a.failure_window.unwrap_or(d.failure_window),
        network_divisor: a.network_divisor.unwrap_or(d.network_divisor),
        user_max_failures: a.user_max_failures.unwrap_or(d.user_max_failures),
        user_cooldown: a.user_cooldown.unwrap_or(d.user_cooldown),
        trusted_for: a.trusted_for.unwrap_or(d.trusted_for),
        ban_after: a.ban_after.unwrap_or(d.ban_after),
        ban_duration: a.ban_duration.unwrap_or(d.ban_duration),
        allow: a.allow.unwrap_or(d.allow),
        max_connections_per_address: raw
            .max_connections_per_address
            .unwrap_or(d.max_connections_per_address),
        max_connections_per_network: raw
            .max_connections_per_network
            .unwrap_or(d.max_connections_per_network),
        max_connection_rate: raw.max_connection_rate.unwrap_or(d.max_connection_rate),
        connection_rate_window: raw
            .connection_rate_window
            .unwrap_or(d.connection_rate_window),
    };
    if config.failure_window.is_zero() {
        return Err(invalid("limits.auth.failure_window", "must be positive"));
    }
    if config.network_divisor == 0 || config.user_max_failures == 0 || config.ban_after == 0 {
        return Err(invalid(
            "limits.auth",
            "network_divisor, user_max_failures and ban_after must be at least 1",
        ));
    }
    if config.delay_max < config.delay_initial {
        return Err(invalid("limits.auth.delay_max", "is below delay_initial"));
    }
    Ok((store, config))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::defence::LimitsStore;
    use crate::Config;

    fn parse(text: &str) -> Result<Config, crate::ConfigError> {
        Config::parse(text, Path::new("/etc/portcullis/portcullis.toml"), None)
    }

    #[test]
    fn defaults_are_dovecot_like_and_local() {
        let c = parse("").unwrap();
        assert_eq!(c.limits.store, LimitsStore::Local);
        assert_eq!(c.limits.defence.delay_initial, Duration::from_secs(2));
        assert_eq!(c.limits.defence.delay_max, Duration::from_secs(15));
        assert_eq!(c.limits.max_invalid_commands, 10);
        assert_eq!(c.limits.defence.allow.len(), 2, "loopback");
        let c = parse("[limits.auth]\nallow = []").unwrap();
        assert!(c.limits.defence.allow.is_empty());
    }

    #[test]
    fn limits_auth_keys_and_redis_backend() {
        let c = parse(
            "[limits]\nbackend = \"redis://127.0.0.1:6379\"\nmax_connection_rate = 5\n\
             [limits.auth]\ndelay_initial = \"50ms\"\ndelay_max = \"200ms\"\n\
             ban_after = 4\nallow = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.limits.store,
            LimitsStore::Redis {
                url: "redis://127.0.0.1:6379".into()
            }
        );
        let d = &c.limits.defence;
        assert_eq!(d.max_connections_per_network, 100);
        assert_eq!(d.delay_initial, Duration::from_millis(50));
        assert_eq!((d.ban_after, d.max_connection_rate), (4, 5));
        assert_eq!(d.allow.len(), 2);
    }

    #[test]
    fn postgres_users_need_a_url_whose_password_is_never_printed() {
        let c = parse(
            "[users]\nbackend = \"postgres\"\nurl = \"postgres://mail:hunter2@db/users\"\n\
             password_query = \"SELECT pw AS password FROM t WHERE login = %u\"\n",
        )
        .unwrap();
        let shown = format!("{:?}", c.users);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://mail:…@db/users"), "{shown}");
        let err = parse("[users]\nbackend = \"postgres\"\n").unwrap_err();
        assert!(err.to_string().starts_with("users.url"), "{err}");
    }

    #[test]
    fn slow_client_limits_have_defaults_and_can_be_set() {
        let c = parse("").unwrap();
        assert_eq!(c.limits.command_timeout, Duration::from_secs(300));
        assert_eq!(c.limits.min_data_rate, 500);
        assert_eq!(c.limits.defence.max_connections_per_network, 100);
        let c = parse(
            "[limits]\ncommand_timeout = \"30s\"\nmin_data_rate = 0\n\
             max_connections_per_network = 7\n",
        )
        .unwrap();
        assert_eq!(c.limits.command_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.min_data_rate, 0);
        assert_eq!(c.limits.defence.max_connections_per_network, 7);
        let err = parse("[limits]\ncommand_timeout = \"0s\"").unwrap_err();
        assert!(
            err.to_string().starts_with("limits.command_timeout"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        let syntax = err("[limits]\nbackend = \"mysql://x\"");
        assert!(syntax.contains("backend = \"mysql://x\""), "{syntax}");
        assert!(syntax.contains("expected \"memory\""), "{syntax}");
        let syntax = err("[limits.auth]\ndelay_max = \"soon\"");
        assert!(syntax.contains("delay_max = \"soon\""), "{syntax}");
        assert!(syntax.contains("is not a duration such as"), "{syntax}");
        let syntax = err("[limits.auth]\nallow = [\"10.0.0.0/99\"]");
        assert!(syntax.contains("allow = "), "{syntax}");
        assert!(syntax.contains("bad prefix length"), "{syntax}");
        assert!(err("[limits.auth]\ndelay_initial = \"20s\"").starts_with("limits.auth.delay_max"));
        assert!(err("[limits.auth]\nban_after = 0").starts_with("limits.auth"));
    }
}

//! `[limits]` brute-force keys and `[limits.auth]`: raw form and
//! validation into [`portcullis_limits::LimitsConfig`].
//!
//! Durations are written `500ms`, `30s`, `15m`; networks as CIDR blocks.

use std::time::Duration;

use portcullis_limits::{IpNet, LimitsConfig};
use serde::Deserialize;

use crate::delivery::parse_duration;
use crate::validate::invalid;
use crate::ConfigError;

/// Where counts and bans live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsStore {
    /// In this process; bans also in `bans.json` in the data directory so
    /// that `portcullis ban` sees them.
    Local,
    /// Shared by every instance pointing at the same Redis.
    Redis { url: String },
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
    pub delay_initial: Option<String>,
    pub delay_max: Option<String>,
    pub failure_window: Option<String>,
    pub network_divisor: Option<u64>,
    pub user_max_failures: Option<u64>,
    pub user_cooldown: Option<String>,
    pub trusted_for: Option<String>,
    pub ban_after: Option<u64>,
    pub ban_duration: Option<String>,
    pub allow: Option<Vec<String>>,
}

/// The `[limits]` keys this module owns, gathered by the caller.
pub(crate) struct RawDefence {
    pub backend: Option<String>,
    pub max_connections_per_address: Option<u32>,
    pub max_connections_per_network: Option<u32>,
    pub max_connection_rate: Option<u64>,
    pub connection_rate_window: Option<String>,
    pub auth: Option<RawAuthLimits>,
}

pub(crate) fn validate(raw: RawDefence) -> Result<(LimitsStore, LimitsConfig), ConfigError> {
    let store = match raw.backend.as_deref() {
        None | Some("memory") => LimitsStore::Local,
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            LimitsStore::Redis {
                url: url.to_string(),
            }
        }
        Some(other) => {
            return Err(invalid(
                "limits.backend",
                format!("{other:?}: expected \"memory\" or \"redis://host:port\""),
            ))
        }
    };
    let d = LimitsConfig::default();
    let a = raw.auth.unwrap_or_default();
    let duration = |key: &str, value: Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(text) => parse_duration(&text)
            .ok_or_else(|| invalid(key, format!("{text:?} is not a duration like 2s or 15m"))),
    };
    let allow = match &a.allow {
        None => d.allow.clone(),
        Some(list) => list
            .iter()
            .map(|text| text.parse::<IpNet>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| invalid("limits.auth.allow", message))?,
    };
    let config = LimitsConfig {
        delay_initial: duration(
            "limits.auth.delay_initial",
            a.delay_initial,
            d.delay_initial,
        )?,
        delay_max: duration("limits.auth.delay_max", a.delay_max, d.delay_max)?,
        failure_window: duration(
            "limits.auth.failure_window",
            a.failure_window,
            d.failure_window,
        )?,
        network_divisor: a.network_divisor.unwrap_or(d.network_divisor),
        user_max_failures: a.user_max_failures.unwrap_or(d.user_max_failures),
        user_cooldown: duration(
            "limits.auth.user_cooldown",
            a.user_cooldown,
            d.user_cooldown,
        )?,
        trusted_for: duration("limits.auth.trusted_for", a.trusted_for, d.trusted_for)?,
        ban_after: a.ban_after.unwrap_or(d.ban_after),
        ban_duration: duration("limits.auth.ban_duration", a.ban_duration, d.ban_duration)?,
        allow,
        max_connections_per_address: raw
            .max_connections_per_address
            .unwrap_or(d.max_connections_per_address),
        max_connections_per_network: raw
            .max_connections_per_network
            .unwrap_or(d.max_connections_per_network),
        max_connection_rate: raw.max_connection_rate.unwrap_or(d.max_connection_rate),
        connection_rate_window: duration(
            "limits.connection_rate_window",
            raw.connection_rate_window,
            d.connection_rate_window,
        )?,
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
        assert!(err("[limits]\nbackend = \"mysql://x\"").starts_with("limits.backend"));
        assert!(err("[limits.auth]\ndelay_max = \"soon\"").starts_with("limits.auth.delay_max"));
        assert!(err("[limits.auth]\nallow = [\"10.0.0.0/99\"]").starts_with("limits.auth.allow"));
        assert!(err("[limits.auth]\ndelay_initial = \"20s\"").starts_with("limits.auth.delay_max"));
        assert!(err("[limits.auth]\nban_after = 0").starts_with("limits.auth"));
    }
}

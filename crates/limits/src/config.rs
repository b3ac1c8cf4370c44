//! The knobs, with safe defaults. The config crate fills this from
//! `[limits]` and `[limits.auth]`; tests set small values.

use std::time::Duration;

use crate::IpNet;

/// How hard the server pushes back on failures and connection floods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Delay before the first failure reply (Dovecot: 2 s).
    pub delay_initial: Duration,
    /// The delay never grows past this (Dovecot: 15 s).
    pub delay_max: Duration,
    /// The window over which failures are counted, per address, network
    /// and user.
    pub failure_window: Duration,
    /// A network's failures count for 1/`network_divisor` of an address's
    /// in the delay, so a spray across a /24 still slows every address in
    /// it without one noisy neighbour maxing them all.
    pub network_divisor: u64,
    /// Failures for one user in the window before the cool-down starts.
    pub user_max_failures: u64,
    /// How long a user under attack gets `454` from unknown addresses.
    pub user_cooldown: Duration,
    /// How long an address that logged in as a user stays exempt from
    /// that user's cool-down.
    pub trusted_for: Duration,
    /// Failures from one address in the window before it is banned.
    pub ban_after: u64,
    pub ban_duration: Duration,
    /// Addresses never banned, cooled down or connection-limited (their
    /// failures are still delayed). Default: loopback.
    pub allow: Vec<IpNet>,
    /// Open connections from one address (0: no limit).
    pub max_connections_per_address: u32,
    /// Open connections from one network, the address's /24 (IPv4) or
    /// /64 (IPv6), so that one host with many addresses cannot take every
    /// slot (0: no limit).
    pub max_connections_per_network: u32,
    /// New connections from one address per `connection_rate_window`
    /// (0: no limit).
    pub max_connection_rate: u64,
    pub connection_rate_window: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
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

impl LimitsConfig {
    /// Whether `ip` is on the allow-list.
    pub fn allowed(&self, ip: std::net::IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(ip))
    }
}

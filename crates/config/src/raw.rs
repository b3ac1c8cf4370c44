//! The config file exactly as written. Every key is optional; defaults live
//! in [`crate::validate`]. Unknown keys are errors, so a typo is not ignored.
//!
//! Choices are enums and durations are parsed here, by serde, so a value
//! the server does not know (`tls = "startls"`, `timeout = "soon"`) is a
//! syntax error that shows the line and lists what would be valid.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_cidr::IpNet;

use crate::{ClientIdentity, ListenerAuth, ListenerTls};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub hostname: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// Async worker threads; absent: one per CPU.
    pub workers: Option<usize>,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub users: RawUsers,
    #[serde(default)]
    pub spool: RawSpool,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
    #[serde(default, rename = "auth_listener")]
    pub auth_listeners: Vec<crate::auth_listener::RawAuthListener>,
    /// The Lua policy script, relative to the config file.
    pub policy: Option<PathBuf>,
    pub lua: Option<crate::policy::RawLua>,
    pub delivery: Option<crate::delivery::RawDelivery>,
    /// Bearer-token (OAUTHBEARER, XOAUTH2) validation.
    pub oauth: Option<crate::oauth::RawOAuth>,
    #[serde(default, rename = "route")]
    pub routes: Vec<crate::delivery::RawRoute>,
    /// `[senders]`: envelope senders a user may use.
    pub senders: Option<crate::authorization::RawSenders>,
    /// `[tenants]`: the tenant header.
    pub tenants: Option<crate::authorization::RawTenants>,
    /// `[tenant.'name']`: who may use each tenant.
    #[serde(default)]
    pub tenant: std::collections::BTreeMap<String, crate::authorization::RawTenant>,
    /// `[containment]`: signals that an account was taken, and answers.
    pub containment: Option<crate::containment::RawContainment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    /// PEM CA certificate(s) that vouch for client certificates (EXTERNAL).
    pub client_ca: Option<PathBuf>,
    /// Which certificate field names the user: `"cn"` or `"email"`.
    pub client_identity: Option<ClientIdentity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsers {
    pub backend: Option<UsersBackend>,
    pub path: Option<PathBuf>,
    pub cram_md5: Option<bool>,
    /// `backend = "postgres"`: the connection URL.
    pub url: Option<String>,
    /// `backend = "postgres"`: the look-up, `%u` for the login name.
    pub password_query: Option<String>,
    /// How long one call to the store may take (`"3s"`).
    #[serde(default, with = "crate::duration::option")]
    pub timeout: Option<Duration>,
    /// `"case_mapped"` (default) or `"exact"`.
    pub username_profile: Option<String>,
    /// `backend = "ldap"`: see `LdapUsers`.
    pub starttls: Option<bool>,
    pub base_dn: Option<String>,
    pub user_filter: Option<String>,
    pub name_attribute: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    pub user_dn: Option<String>,
}

/// A listener's `client_certificate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificateMode {
    Verify,
    Request,
}

/// `[users] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsersBackend {
    Sqlite,
    File,
    Postgres,
    Ldap,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_size: Option<usize>,
    pub max_recipients: Option<usize>,
    pub max_unauthenticated_commands: Option<u32>,
    pub max_auth_failures: Option<u32>,
    #[serde(default, with = "crate::duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Deprecated: `idle_timeout`.
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    /// `"memory"` (default) or `"redis://host:port"`.
    pub backend: Option<crate::defence::LimitsStore>,
    /// Invalid commands (unknown or malformed) before `421` and close.
    pub max_invalid_commands: Option<u32>,
    pub max_connections_per_address: Option<u32>,
    /// Open connections per /24 (IPv4) or /64 (IPv6).
    pub max_connections_per_network: Option<u32>,
    /// A command line must arrive whole within this of the server being
    /// ready for it (`"5m"`).
    #[serde(default, with = "crate::duration::option")]
    pub command_timeout: Option<Duration>,
    /// Message data must arrive at this many bytes per second at least
    /// (after `command_timeout` of grace); 0: no minimum.
    pub min_data_rate: Option<u64>,
    /// New connections per address per `connection_rate_window`.
    pub max_connection_rate: Option<u64>,
    #[serde(default, with = "crate::duration::option")]
    pub connection_rate_window: Option<Duration>,
    /// `[limits.auth]`: failure delays, cool-downs, bans.
    pub auth: Option<crate::defence::RawAuthLimits>,
    /// `[limits.sending]`: what an authenticated identity may send.
    pub sending: Option<crate::containment::RawSending>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<String>,
    pub address: String,
    pub tls: Option<ListenerTls>,
    pub auth: Option<ListenerAuth>,
    pub allow_insecure_auth: Option<bool>,
    /// The text of the `530 5.7.0` sent for MAIL before AUTH.
    pub auth_required_message: Option<String>,
    /// SASL mechanisms this listener offers (default: all the stores serve).
    pub mechanisms: Option<Vec<String>>,
    /// Networks (CIDR) whose clients may send XCLIENT (default: none).
    pub xclient_trusted: Option<Vec<IpNet>>,
    /// Every connection starts with a HAProxy PROXY header (v1 or v2).
    pub proxy_protocol: Option<bool>,
    /// Networks (CIDR) allowed to send that header; needed with it.
    pub proxy_trusted: Option<Vec<IpNet>>,
    /// `"request"`: ask every client for a certificate and accept one
    /// that chains to no CA (for a policy to pin); `"verify"` (default):
    /// as `[tls] client_ca` says.
    pub client_certificate: Option<ClientCertificateMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default, with = "crate::duration::option")]
    pub verified_cache_ttl: Option<Duration>,
    /// Deprecated: `verified_cache_ttl`.
    pub verified_cache_ttl_secs: Option<u64>,
    pub max_concurrent_verifications: Option<usize>,
    #[serde(default, with = "crate::duration::option")]
    pub failure_floor: Option<Duration>,
    /// Deprecated: `failure_floor`.
    pub failure_floor_ms: Option<u64>,
    #[serde(default, with = "crate::duration::option")]
    pub slot_wait: Option<Duration>,
    pub slot_queue: Option<usize>,
    /// An account password older than this is refused (`"90d"`).
    #[serde(default, with = "crate::duration::option")]
    pub password_max_age: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Option<String>,
}

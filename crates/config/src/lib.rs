//! Configuration in two layers: the raw TOML as written ([`raw`]), and the
//! validated, immutable [`Config`] the server runs on.
//!
//! Everything that can be wrong with a config file is found here, at load
//! time, with the file and key named, so `portcullis check-config` and
//! `portcullis serve` refuse a bad file before binding a port. With no file
//! at all, [`Config::development`] gives loopback listeners, a self-signed
//! certificate and a SQLite user database in the data directory.

pub mod auth_listener;
pub mod authorization;
pub mod containment;
pub mod defence;
pub mod delivery;
mod display;
pub mod duration;
mod error;
mod listener;
pub mod oauth;
pub mod policy;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Deprecation};
pub use portcullis_cidr::IpNet;

/// The admin port of the development defaults. A config file has no admin
/// listener unless it asks for one, so that several servers can run side
/// by side from their own files.
pub const DEVELOPMENT_ADMIN_PORT: u16 = 2580;

/// How long one credential-store call may take, by default.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest `auth_required_message`: with `530 5.7.0 ` and CRLF it stays
/// well inside a 512-octet reply line (RFC 5321 §4.5.3.1.5).
pub const MAX_AUTH_REQUIRED_MESSAGE: usize = 400;

/// The longest `[auth] slot_wait`: the wait is meant to absorb a burst of
/// a few seconds; a login held longer is a thread held longer.
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(10);

/// The largest `[auth] slot_queue`: each waiter parks a thread of the
/// blocking pool (512 threads by default), which store calls, waiters and
/// the rest of the server share.
pub const MAX_SLOT_QUEUE: usize = 256;

/// The default data directory, relative to where the server starts.
pub const DEFAULT_DATA_DIR: &str = "portcullis-data";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our name in the greeting, EHLO and Received headers.
    pub hostname: String,
    pub data_dir: PathBuf,
    /// Threads that run sessions (`workers = N`); `None`: one per CPU.
    /// One is a single-threaded scheduler, without the work-stealing
    /// machinery that only pays with two or more. Slow work (hashing,
    /// stores) runs on a separate blocking pool either way.
    pub workers: Option<usize>,
    pub tls: TlsSource,
    /// Client certificates (SASL EXTERNAL); `None`: none are asked for.
    pub client_certificates: Option<ClientCertificates>,
    pub users: UserBackend,
    /// How long one call to the credential store may take before the
    /// login is answered `454 4.7.0` (`[users] timeout`).
    pub store_timeout: Duration,
    /// How user names are canonicalised, once, at the edge (`[users]
    /// username_profile = "case_mapped"` (the default, PRECIS
    /// UsernameCaseMapped) or `"exact"`).
    pub username_profile: portcullis_sasl::UsernameProfile,
    /// Store CRAM-MD5 keys beside password hashes, so CRAM-MD5 can be offered.
    pub cram_md5: bool,
    pub spool_dir: PathBuf,
    pub limits: Limits,
    /// Sender and tenant rules after AUTH.
    pub authorization: authorization::Authorization,
    pub auth: AuthTuning,
    /// The admin HTTP listener (`/metrics`, `/health`), if any.
    pub admin: Option<SocketAddr>,
    pub listeners: Vec<Listener>,
    /// Sockets for MTAs: Dovecot-protocol SASL and Postfix policy.
    pub auth_listeners: Vec<auth_listener::AuthListener>,
    /// The Lua policy script, if any (`policy = "policy.lua"`).
    pub policy: Option<policy::Policy>,
    /// How spooled messages are delivered; `None` keeps them in the spool.
    pub delivery: Option<delivery::Delivery>,
    /// How OAUTHBEARER/XOAUTH2 tokens are checked; `None`: not offered.
    pub oauth: Option<oauth::OAuth>,
    /// Keys written under an old name that still work; the binary logs
    /// each one at load.
    pub deprecations: Vec<Deprecation>,
    /// Sending limits per identity (`[limits.sending]`).
    pub sending: containment::Sending,
    /// Compromise signals and their answers (`[containment]`).
    pub containment: containment::Containment,
}

/// How much the AUTH decision may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthTuning {
    /// How long a verified password is remembered (zero: never).
    pub verified_cache_ttl: Duration,
    /// Slow hash verifications at once; past it, a login waits for one
    /// (`slot_wait`, `slot_queue`). `None`: sized from the machine (the
    /// auth crate's default).
    pub max_concurrent_verifications: Option<usize>,
    /// How long a login waits for a free hash slot before `454 4.7.0`
    /// (`[auth] slot_wait`; zero: not at all). `None`: the auth crate's
    /// default (5 s).
    pub slot_wait: Option<Duration>,
    /// Logins that may wait for a hash slot at once; past it `454 4.7.0`
    /// at once (`[auth] slot_queue`). `None`: the auth crate's default (256).
    pub slot_queue: Option<usize>,
    /// A refused credential is answered no sooner than this (the floor
    /// also follows the slowest hash scheme seen).
    pub failure_floor: Duration,
    /// An account password set longer ago than this is refused
    /// ("password expired", `535`; `[auth] password_max_age`). App
    /// passwords have their own expiry. `None`: passwords do not expire.
    pub password_max_age: Option<Duration>,
}

/// Where the server certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files given in the config.
    Files {
        certificate: PathBuf,
        private_key: PathBuf,
    },
    /// Made on first start and kept in this directory (development only).
    SelfSigned { dir: PathBuf },
}

/// Optional TLS client certificates, verified against `ca`: a client
/// without one still connects; one the CA does not vouch for fails the
/// handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificates {
    /// PEM file with the CA certificate(s).
    pub ca: PathBuf,
    /// Which field of the verified leaf names the user.
    pub identity: ClientIdentity,
}

/// The certificate field a client certificate is mapped to a user by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum ClientIdentity {
    /// The subject's common name (the default).
    #[serde(rename = "cn")]
    CommonName,
    /// The first rfc822Name (e-mail) of the subject alternative names.
    #[serde(rename = "email")]
    Email,
}

/// The credential store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserBackend {
    Sqlite {
        path: PathBuf,
    },
    File {
        path: PathBuf,
    },
    /// PostgreSQL; `password_query` (Dovecot-style, `%u` = login name)
    /// reads an existing table, `None` our own.
    Postgres {
        url: defence::DatabaseUrl,
        password_query: Option<String>,
    },
    /// An LDAP directory (read-only).
    Ldap(Box<LdapUsers>),
}

/// `users.backend = "ldap"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUsers {
    /// `ldap://` or `ldaps://`.
    pub url: String,
    /// StartTLS before binding (an `ldap://` URL).
    pub starttls: bool,
    pub base_dn: String,
    /// `%u`: the login name, RFC 4515-escaped.
    pub user_filter: String,
    /// The attribute the name must equal exactly.
    pub name_attribute: String,
    /// The service account; `None`: anonymous.
    pub bind_dn: Option<String>,
    /// A file holding the service account's password (first line).
    pub bind_password_file: Option<PathBuf>,
    /// Bind as the user with this DN (`%u`: the name, RFC 4514-escaped)
    /// instead of verifying `userPassword` ourselves.
    pub user_dn: Option<String>,
}

/// Resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_unauthenticated_commands: u32,
    pub max_auth_failures: u32,
    pub idle_timeout: Duration,
    /// A command line (or AUTH response) must arrive whole within this of
    /// the server being ready for it, however steadily its bytes trickle
    /// in; message data gets it as grace before `min_data_rate` applies.
    pub command_timeout: Duration,
    /// Bytes per second message data must average (0: no minimum).
    pub min_data_rate: u64,
    pub max_connections: usize,
    /// Invalid commands on one connection before `421` and close.
    pub max_invalid_commands: u32,
    /// Where brute-force counts and bans live.
    pub store: defence::LimitsStore,
    /// Failure delays, cool-downs, bans, per-address connection limits.
    pub defence: defence::Defence,
}

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// Plain text first; STARTTLS offered (submission, port 587).
    StartTls,
    /// TLS from the first byte (submissions, port 465, RFC 8314).
    Implicit,
    /// No TLS at all.
    None,
}

/// Whether a listener offers AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerAuth {
    /// AUTH offered and required before MAIL.
    Required,
    /// No AUTH; MAIL accepted from anyone (a relay port behind a firewall).
    Disabled,
    /// AUTH offered (under TLS as for `Required`) but not needed for MAIL:
    /// mail without it is taken with no identity (Nodemailer's
    /// `authOptional`).
    Optional,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub tls: ListenerTls,
    pub auth: ListenerAuth,
    /// Offer AUTH before TLS: passwords cross the network in clear.
    pub allow_insecure_auth: bool,
    /// The text of the `530 5.7.0` for MAIL before AUTH (only where AUTH is
    /// required); `None`: the catalog's. One line of printable ASCII, at
    /// most [`MAX_AUTH_REQUIRED_MESSAGE`] octets.
    pub auth_required_message: Option<String>,
    /// The SASL mechanisms offered here, upper-case, in this order; `None`:
    /// every mechanism the configured stores can serve. Names are checked
    /// against the mechanisms the server knows when it binds.
    pub mechanisms: Option<Vec<String>>,
    /// Clients in these networks may send XCLIENT (Postfix): proxies that
    /// vouch for the real client and its login. Empty: nobody.
    pub xclient_trusted: Vec<IpNet>,
    /// Connections come through a TCP load balancer that sends a HAProxy
    /// PROXY header (v1 or v2) first, from one of these networks; the
    /// client address is taken from it. Connections from anywhere else
    /// are closed. Empty: no PROXY protocol on this listener.
    pub proxy_trusted: Vec<IpNet>,
    /// `client_certificate = "request"`: the TLS handshake asks every
    /// client for a certificate and accepts one that does not chain to
    /// `[tls] client_ca` (or with no CA at all), proving only that the
    /// client holds its key. The policy sees it (`conn.tls.peer_sha256`,
    /// `peer_verified = false`) and may pin it by fingerprint; EXTERNAL
    /// never accepts such a certificate. `false`: as `[tls] client_ca`
    /// says (verified certificates only, and only with a CA).
    pub request_client_certificate: bool,
}

impl Config {
    /// Reads and validates a config file; `data_dir` overrides the file's.
    pub fn load(path: &Path, data_dir: Option<&Path>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, data_dir)
    }

    /// Validates config text; `origin` names the file in errors and anchors
    /// relative certificate paths.
    pub fn parse(
        text: &str,
        origin: &Path,
        data_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = origin.parent().unwrap_or(Path::new("."));
        validate::validate(raw, base, data_dir)
    }

    /// The development defaults: loopback STARTTLS on 2587, implicit TLS on
    /// 2465, metrics on 2580, a self-signed certificate and SQLite users in
    /// `data_dir`.
    pub fn development(data_dir: Option<&Path>) -> Config {
        // Invariant: the empty document is valid; every field has a default.
        let mut config = validate::validate(raw::RawConfig::default(), Path::new("."), data_dir)
            .expect("the built-in defaults validate");
        config.admin = Some(SocketAddr::from(([127, 0, 0, 1], DEVELOPMENT_ADMIN_PORT)));
        config
    }
}

#[cfg(test)]
mod docs_tests;
#[cfg(test)]
mod tests;

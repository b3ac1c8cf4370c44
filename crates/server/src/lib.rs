//! The network edge: listeners, TLS, and the loop that drives one
//! [`portcullis_session::Session`] per connection.
//!
//! Everything SMTP decides lives in the session crate; this crate only moves
//! bytes and carries out the session's effects: it runs the TLS handshake,
//! hands every claim of an identity to the auth service
//! (`auth_service.rs`: admission, the Lua policy, the store on the
//! blocking pool, the record, the sender rule; one entry point that knows
//! nothing of SMTP), and writes messages to the
//! [`portcullis_spool::Spool`], whose writer thread commits the messages of
//! all sessions in groups (a session awaits its fsync without holding a
//! thread). Replies are written once per batch: when the session has used up
//! the input and wants more, which is what PIPELINING needs.
//!
//! Modules form layers: each imports only modules below it
//! (`tests/layering.rs` checks it; ARCHITECTURE.md draws it).

mod activity_log;
pub mod admin;
mod auth_service;
mod authorization;
mod client_cert;
mod connection;
mod containment;
mod context;
pub mod defence;
mod dsn_meta;
mod error;
mod files;
mod listener;
mod mta_auth;
mod oauth;
mod outcome;
mod pace;
mod peer;
mod policy;
mod policy_service;
pub mod preflight;
mod proxy_protocol;
mod scram_key;
mod sending_limits;
mod spooling;
mod store_calls;
pub mod telemetry;
pub mod tls;
mod verify;
mod webhook;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};

use portcullis_auth::Authenticator;
use portcullis_config::auth_listener::AuthProtocol;
use portcullis_config::{Config, ListenerAuth, ListenerTls};
use portcullis_sasl::Mechanism;
use portcullis_session::{AuthPolicy, SessionConfig};
use portcullis_spool::Spool;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use context::{BoundListener, Shared};
pub use error::ServerError;
pub use files::private_dir;
pub use oauth::token_validator;
pub use policy_service::{SendingDecision, SendingLimits, Unlimited};

/// The mechanisms every listener offers: PLAIN and LOGIN always; CRAM-MD5
/// and SCRAM only when some user has the secrets they need (a client picks
/// the strongest mechanism advertised and gives up if it fails). The -PLUS
/// variants are listed but offered only under TLS (the session checks).
async fn offered_mechanisms(authenticator: &Authenticator) -> Result<Vec<Mechanism>, ServerError> {
    let probe = authenticator.clone();
    let (cram_md5, scram) = tokio::task::spawn_blocking(move || {
        Ok::<_, portcullis_credentials::StoreError>((
            probe.cram_md5_available()?,
            probe.scram_available()?,
        ))
    })
    .await
    .unwrap_or(Ok((false, false)))?;
    let mut mechanisms = Vec::new();
    if scram {
        mechanisms.extend([
            Mechanism::ScramSha256Plus,
            Mechanism::ScramSha256,
            Mechanism::ScramSha1Plus,
            Mechanism::ScramSha1,
        ]);
    }
    if cram_md5 {
        mechanisms.push(Mechanism::CramMd5);
    }
    mechanisms.extend([Mechanism::Plain, Mechanism::Login]);
    if authenticator.tokens_available() {
        mechanisms.extend([Mechanism::OAuthBearer, Mechanism::XOAuth2]);
    }
    Ok(mechanisms)
}

/// The listener's `mechanisms` list, if it has one: those of `offered`
/// it names, in its order. A name we do not know is a config error; one
/// the stores cannot serve (SCRAM without secrets) is left out.
///
/// Without a list, the -PLUS variants are left out: GNU SASL, which mutt
/// and neomutt use, picks SCRAM-SHA-256-PLUS whenever it is advertised,
/// but these clients give it no channel binding, so it cancels and the
/// user sees "SASL authentication failed". A listener that names -PLUS
/// gets it (on TLS 1.3 connections), for clients that do bind (gsasl,
/// Dovecot's and PostgreSQL's clients); the trade-off is that without it
/// a binding-capable client cannot detect a TLS-terminating
/// man-in-the-middle through SCRAM itself.
fn listener_mechanisms(
    offered: &[Mechanism],
    listener: &portcullis_config::Listener,
) -> Result<Vec<Mechanism>, ServerError> {
    let Some(names) = &listener.mechanisms else {
        return Ok(offered
            .iter()
            .copied()
            .filter(|m| !m.needs_channel_binding())
            .collect());
    };
    let mut chosen = Vec::new();
    for name in names {
        let mechanism =
            Mechanism::from_name(name).ok_or_else(|| ServerError::UnknownMechanism {
                listener: listener.name.clone(),
                name: name.clone(),
            })?;
        if offered.contains(&mechanism) && !chosen.contains(&mechanism) {
            chosen.push(mechanism);
        }
    }
    Ok(chosen)
}

/// A server with its ports bound, ready to [`Server::run`].
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<Arc<BoundListener>>,
    /// One per listener, in the same order.
    sockets: Vec<TcpListener>,
    /// The mechanisms the stores can serve (before per-listener lists).
    mechanisms: Vec<Mechanism>,
    starttls_available: bool,
    /// `[[auth_listener]]`s, with their sockets.
    auth_listeners: Vec<(Arc<mta_auth::BoundAuthListener>, mta_auth::AuthSocket)>,
    /// `[[auth_listener]]`s with `protocol = "postfix-policy"`.
    policy_listeners: Vec<(
        Arc<policy_service::BoundPolicyListener>,
        mta_auth::AuthSocket,
    )>,
}

/// What a reload left alone because it needs a restart, one line each
/// (`address of listener submission`).
pub type NeedsRestart = Vec<String>;

/// Applies a reloaded config to running listeners (SIGHUP): what a
/// session is told and allowed (host name, sizes, command limits, listener
/// mechanism lists) changes for new connections; open ones keep theirs.
/// Addresses, TLS modes, stores and the defence need a restart.
pub struct Reloader {
    listeners: Vec<Arc<BoundListener>>,
    mechanisms: Vec<Mechanism>,
    starttls_available: bool,
}

impl Reloader {
    /// Swaps in the new session settings; returns what was left alone
    /// because it needs a restart.
    pub fn apply(&self, config: &Config) -> Result<NeedsRestart, ServerError> {
        let mut needs_restart = Vec::new();
        let mut updates = Vec::new();
        for l in &config.listeners {
            let Some(bound) = self.listeners.iter().find(|b| b.name == l.name) else {
                needs_restart.push(format!("new listener {}", l.name));
                continue;
            };
            if bound.local_addr != Some(l.address) && l.address.port() != 0 {
                needs_restart.push(format!("address of listener {}", l.name));
            }
            if bound.implicit_tls != (l.tls == ListenerTls::Implicit) {
                needs_restart.push(format!("TLS mode of listener {}", l.name));
            }
            let mut session = session_config(config, l, &self.mechanisms, self.starttls_available)?;
            let old = bound
                .session
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            session.script_mechanisms = old.script_mechanisms.clone();
            session.check_sending |= old.check_sending;
            updates.push((bound, session));
        }
        // All or nothing: every listener's settings validated before any swap.
        for (bound, session) in updates {
            *bound
                .session
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(session);
        }
        for bound in &self.listeners {
            if !config.listeners.iter().any(|l| l.name == bound.name) {
                needs_restart.push(format!("removed listener {}", bound.name));
            }
        }
        Ok(needs_restart)
    }
}

/// What sessions on listener `l` are told and allowed.
fn session_config(
    config: &Config,
    l: &portcullis_config::Listener,
    mechanisms: &[Mechanism],
    starttls_available: bool,
) -> Result<SessionConfig, ServerError> {
    Ok(SessionConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.limits.max_message_size,
        max_recipients: config.limits.max_recipients,
        auth: match l.auth {
            ListenerAuth::Required => AuthPolicy::Required,
            ListenerAuth::Disabled => AuthPolicy::Disabled,
            ListenerAuth::Optional => AuthPolicy::Optional,
        },
        auth_required_message: l.auth_required_message.clone(),
        allow_insecure_auth: l.allow_insecure_auth,
        starttls: l.tls == ListenerTls::StartTls && starttls_available,
        mechanisms: listener_mechanisms(mechanisms, l)?,
        script_mechanisms: Vec::new(),
        max_unauthenticated_commands: config.limits.max_unauthenticated_commands,
        max_auth_failures: config.limits.max_auth_failures,
        max_invalid_commands: config.limits.max_invalid_commands,
        username_profile: config.username_profile,
        check_sending: !config.sending.is_empty() || !config.containment.answers.is_empty(),
    })
}

impl Server {
    /// Binds every listener and prepares TLS, so that any error shows before
    /// the server starts taking connections.
    pub async fn bind(
        config: &Config,
        authenticator: Authenticator,
        spool: Arc<Spool>,
        tls: Option<tls::TlsSetup>,
        stopping: watch::Receiver<bool>,
    ) -> Result<Server, ServerError> {
        let scram_key = scram_key::load_or_create(&config.data_dir)?;
        let app_key = portcullis_credentials::app_password::load_or_create_key(&config.data_dir)
            .map_err(|source| ServerError::AppPasswordKey {
                path: config
                    .data_dir
                    .join(portcullis_credentials::app_password::KEY_FILE),
                source,
            })?;
        let mut authenticator = authenticator
            .with_scram_key(scram_key)
            .with_app_password_key(app_key);
        if let Some(oauth) = &config.oauth {
            authenticator = authenticator.with_token_validator(token_validator(oauth)?);
        }
        let mut mechanisms = offered_mechanisms(&authenticator).await?;
        if config.client_certificates.is_some() && tls.is_some() {
            // First: a client that presented a certificate it can use
            // wants it; the session offers EXTERNAL only to such clients.
            mechanisms.insert(0, Mechanism::External);
        }
        let certificate = tls.as_ref().map(|t| t.certificate.clone());
        let client_ca = tls.as_ref().and_then(|t| t.ca_verifier.clone());
        let request_any = tls
            .as_ref()
            .map(|t| TlsAcceptor::from(t.request_any.clone()));
        let acceptor = tls.map(|t| TlsAcceptor::from(t.config));
        let mut listeners = Vec::new();
        let mut sockets = Vec::new();
        for l in &config.listeners {
            let socket =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| ServerError::Bind {
                        name: l.name.clone(),
                        address: l.address,
                        source,
                    })?;
            let uses_tls = l.tls != ListenerTls::None;
            let session = session_config(config, l, &mechanisms, acceptor.is_some())?;
            listeners.push(BoundListener {
                name: l.name.clone(),
                local_addr: socket.local_addr().ok(),
                implicit_tls: l.tls == ListenerTls::Implicit,
                acceptor: match (uses_tls, l.request_client_certificate) {
                    (false, _) => None,
                    (true, false) => acceptor.clone(),
                    (true, true) => request_any.clone(),
                },
                session: std::sync::RwLock::new(Arc::new(session)),
                xclient_trusted: l.xclient_trusted.clone(),
                proxy_trusted: l.proxy_trusted.clone(),
            });
            sockets.push(socket);
        }
        let mut auth_listeners = Vec::new();
        let mut policy_listeners = Vec::new();
        for l in &config.auth_listeners {
            match l.protocol {
                AuthProtocol::Dovecot => {
                    let (bound, socket) =
                        mta_auth::bind(l, &mechanisms, &config.hostname, config.username_profile)
                            .await?;
                    auth_listeners.push((Arc::new(bound), socket));
                }
                AuthProtocol::PostfixPolicy => {
                    let socket = mta_auth::bind_socket(l).await?;
                    let bound = policy_service::BoundPolicyListener {
                        connections: Arc::new(Semaphore::new(l.max_connections)),
                        limits: Arc::new(policy_service::Unlimited),
                        config: l.clone(),
                    };
                    policy_listeners.push((Arc::new(bound), socket));
                }
            }
        }
        let defence = defence_backend(config).await?;
        let store_calls = store_calls::StoreCalls::new(
            config.store_timeout,
            authenticator.slot_wait(),
            authenticator.slot_queue(),
        );
        let containment = Arc::new(containment::Containment::new(
            &config.sending,
            config.containment.clone(),
            defence.limiter().clone(),
            None,
        ));
        let auth = auth_service::AuthService::new(
            authenticator,
            store_calls,
            defence,
            config.authorization.senders.clone(),
            containment.clone(),
        );
        let shared = Arc::new(Shared {
            auth,
            spooler: spooling::Spooler {
                spool,
                hostname: config.hostname.clone(),
                with_policy: false,
            },
            tenants: config.authorization.tenants.clone(),
            idle_timeout: config.limits.idle_timeout,
            command_timeout: config.limits.command_timeout,
            min_data_rate: config.limits.min_data_rate,
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            max_connections: config.limits.max_connections,
            certificate,
            client_identity: config.client_certificates.as_ref().map(|c| c.identity),
            client_ca,
            stopping,
            grace_over: watch::Sender::new(false),
            containment,
        });
        Ok(Server {
            shared,
            listeners: listeners.into_iter().map(Arc::new).collect(),
            sockets,
            mechanisms,
            starttls_available: acceptor.is_some(),
            auth_listeners,
            policy_listeners,
        })
    }

    /// What SIGHUP needs to apply a changed config to running listeners.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            listeners: self.listeners.clone(),
            mechanisms: self.mechanisms.clone(),
            starttls_available: self.starttls_available,
        }
    }

    /// Lets `policy` decide AUTH for the mechanisms its script hooks. Keep
    /// the `Arc` to reload the script (e.g. on SIGHUP).
    /// The mechanisms the script declares (`portcullis.mechanism`) are
    /// offered on every listener with AUTH; they are read now, so a reload
    /// that declares new ones needs a restart to advertise them.
    pub fn with_policy(mut self, policy: Arc<portcullis_lua::Policy>) -> Server {
        let declared = policy.mechanisms();
        for listener in &self.listeners {
            let mut current = listener
                .session
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::make_mut(&mut current).script_mechanisms = declared.clone();
        }
        // Invariant: before `run`, `bind` made the only reference to `shared`.
        let shared = Arc::get_mut(&mut self.shared).expect("the server is not running yet");
        shared.containment.set_policy(policy.clone());
        shared.auth.set_policy(policy);
        shared.spooler.with_policy = true;
        self
    }

    /// Keeps the login history, suspensions and per-user sending limits in
    /// `store` (the user store's database): `portcullis user activity`,
    /// `suspend`, `resume` and `limits` work on the same tables. Call it
    /// before [`Server::with_policy`].
    pub fn with_activity(
        mut self,
        store: Arc<dyn portcullis_credentials::activity::ActivityStore>,
        config: &Config,
    ) -> Server {
        for listener in &self.listeners {
            let mut current = listener
                .session
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::make_mut(&mut current).check_sending = true;
        }
        // Invariant: before `run`, `bind` made the only reference to `shared`.
        let shared = Arc::get_mut(&mut self.shared).expect("the server is not running yet");
        let containment = Arc::new(containment::Containment::new(
            &config.sending,
            config.containment.clone(),
            shared.auth.defence().limiter().clone(),
            Some(store),
        ));
        shared.auth.set_containment(containment.clone());
        shared.containment = containment;
        self
    }

    /// What the delivery engine tells about recipient results of
    /// authenticated senders: it feeds the bad-recipients signal.
    pub fn delivery_observer(&self) -> impl Fn(&str, u64, u64) + Send + Sync + 'static {
        let containment = self.shared.containment.clone();
        move |user, accepted, refused| containment.delivered(user, accepted, refused)
    }

    /// The bound addresses, by listener name (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        let auth = self
            .auth_listeners
            .iter()
            .filter_map(|(l, socket)| Some((l.config.name.clone(), socket.local_addr()?)));
        let policy = self
            .policy_listeners
            .iter()
            .filter_map(|(l, socket)| Some((l.config.name.clone(), socket.local_addr()?)));
        self.listeners
            .iter()
            .filter_map(|l| Some((l.name.clone(), l.local_addr?)))
            .chain(auth)
            .chain(policy)
            .collect()
    }

    /// Serves until the `stopping` flag given to [`Server::bind`] turns
    /// true, then stops accepting and waits up to `grace` for open sessions
    /// to finish: idle sessions are told `421 4.3.2` at once, sessions in a
    /// transaction finish it first. Messages already answered with 250 are
    /// on disk, so the grace period only spares transactions in flight.
    pub async fn run(self, grace: std::time::Duration) {
        let mut tasks = tokio::task::JoinSet::new();
        // Stopped when `run` returns (drop guard below).
        let _ban_watch = AbortOnDrop(self.shared.auth.defence().watch_ban_file());
        let authenticator = self.shared.auth.authenticator().clone();
        let _store_watch = AbortOnDrop(Some(watch_store_version(authenticator)));
        let _dependency_watch = AbortOnDrop(Some(watch_dependencies(self.shared.clone())));
        let containment = self.shared.containment.clone();
        let _suspension_watch = AbortOnDrop(containment::watch_store(containment));
        for (l, socket) in self.listeners.into_iter().zip(self.sockets) {
            tasks.spawn(listener::accept_loop(socket, l, self.shared.clone()));
        }
        for (l, socket) in self.auth_listeners {
            tasks.spawn(mta_auth::accept_loop(socket, l, self.shared.clone()));
        }
        for (l, socket) in self.policy_listeners {
            tasks.spawn(policy_service::accept_loop(socket, l, self.shared.clone()));
        }
        while tasks.join_next().await.is_some() {}
        // Every open connection holds a permit: all permits back means every
        // session has ended.
        let connections = self.shared.connections.clone();
        let max = self.shared.max_connections;
        let all_closed = async {
            while connections.available_permits() < max {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(grace, all_closed).await.is_err() {
            tracing::warn!("grace period over; closing the remaining connections");
            // Each remaining session writes its 421 and closes; a peer that
            // does not read gets at most a second more.
            self.shared.grace_over.send_replace(true);
            let last_words = async {
                while connections.available_permits() < max {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), last_words).await;
        }
        // The sessions are over: the history they left is written before
        // the exit (off the async workers; bounded, as a store may hang).
        let containment = self.shared.containment.clone();
        let _ = tokio::task::spawn_blocking(move || {
            containment.finish_history(std::time::Duration::from_secs(5))
        })
        .await;
    }
}

/// Publishes, once a second, whether the remote dependencies answer: the
/// shared limits backend (Redis), the token issuer (JWKS URL,
/// introspection) and Vault (asked by policy scripts). Each logs its own changes, once each way; the
/// credential store's gauge is set by `store_calls` as calls happen.
fn watch_dependencies(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let gauge = |up: bool| if up { 1.0 } else { 0.0 };
    tokio::spawn(async move {
        loop {
            let limits_up = shared.auth.defence().limiter().shared_backend_up();
            metrics::gauge!(telemetry::LIMITS_BACKEND_UP).set(gauge(limits_up));
            if let Some(up) = shared.auth.authenticator().token_issuer_up() {
                metrics::gauge!(telemetry::OAUTH_ISSUER_UP).set(gauge(up));
            }
            if let Some(policy) = shared.auth.policy() {
                metrics::gauge!(telemetry::VAULT_UP).set(gauge(policy.vault_up()));
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
}

/// Polls the credential store's version, so that cached user records are
/// dropped soon after `portcullis user passwd` or `del` changes the store.
fn watch_store_version(authenticator: Authenticator) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let probe = authenticator.clone();
            let _ = tokio::task::spawn_blocking(move || probe.refresh_store_version()).await;
            tokio::time::sleep(portcullis_auth::VERSION_POLL).await;
        }
    })
}

/// Aborts a background task when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// The config's `[limits]` defence settings as the limits crate takes them
/// (the config crate does not depend on it).
fn limits_config(d: &portcullis_config::defence::Defence) -> portcullis_limits::LimitsConfig {
    portcullis_limits::LimitsConfig {
        delay_initial: d.delay_initial,
        delay_max: d.delay_max,
        failure_window: d.failure_window,
        network_divisor: d.network_divisor,
        user_max_failures: d.user_max_failures,
        user_cooldown: d.user_cooldown,
        trusted_for: d.trusted_for,
        ban_after: d.ban_after,
        ban_duration: d.ban_duration,
        allow: d.allow.clone(),
        max_connections_per_address: d.max_connections_per_address,
        max_connections_per_network: d.max_connections_per_network,
        max_connection_rate: d.max_connection_rate,
        connection_rate_window: d.connection_rate_window,
    }
}

/// The limiter the config asks for. Local counting keeps bans in
/// `bans.json` in the data directory as well; Redis is shared, with local
/// counts standing in while it is down.
async fn defence_backend(config: &Config) -> Result<defence::Defence, ServerError> {
    use portcullis_config::defence::LimitsStore;
    use portcullis_limits::{BanFile, Limiter};
    match &config.limits.store {
        LimitsStore::Local => {
            let limiter = Limiter::in_memory(limits_config(&config.limits.defence));
            let file = BanFile::new(config.data_dir.join(defence::BAN_FILE));
            Ok(defence::Defence::new(Arc::new(limiter), Some(file)))
        }
        LimitsStore::Redis { url } => {
            let redis = portcullis_limits::RedisBackend::new(url)?;
            let local = Arc::new(portcullis_limits::MemoryBackend::new());
            let limiter = Limiter::new(
                limits_config(&config.limits.defence),
                Arc::new(redis),
                local,
            );
            Ok(defence::Defence::new(Arc::new(limiter), None))
        }
    }
}

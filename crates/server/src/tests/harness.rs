//! The harness: [`TestServer`] builds the shared state a real server
//! would (minus sockets and TLS), and [`Client`] talks SMTP to one
//! connection served by [`crate::connection::serve`] over a duplex pipe.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_auth::{AuthOptions, Authenticator};
use portcullis_config::authorization::SenderPolicy;
use portcullis_credentials::file::FileStore;
use portcullis_credentials::{CredentialStore, StoreError, UserRecord};
use portcullis_limits::{Limiter, LimitsConfig};
use portcullis_sasl::Mechanism;
use portcullis_session::{AuthPolicy, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{watch, Semaphore};

use crate::auth_service::AuthService;
use crate::context::{BoundListener, Shared};
use crate::defence::Defence;
use crate::spooling::Spooler;
use crate::store_calls::StoreCalls;

/// The store's behaviour, switchable while connections run.
pub(crate) const STORE_UP: u8 = 0;
pub(crate) const STORE_FAILING: u8 = 1;
pub(crate) const STORE_STALLED: u8 = 2;

/// A [`FileStore`] that can be made to fail or stall.
pub(crate) struct TestStore {
    inner: FileStore,
    mode: AtomicU8,
    /// A stalled call waits on this until the sender is dropped, after
    /// saying through `stalled` that it started.
    release: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    stalled: tokio::sync::Notify,
    lookups: std::sync::atomic::AtomicUsize,
}

impl TestStore {
    pub(crate) fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Waits until a call is stuck in the stalled store.
    pub(crate) async fn wait_stalled(&self) {
        self.stalled.notified().await;
    }

    pub(crate) fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl CredentialStore for TestStore {
    fn lookup(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let found = self.answer(name);
        self.lookups.fetch_add(1, Ordering::SeqCst);
        found
    }

    fn has_cram_md5_keys(&self) -> Result<bool, StoreError> {
        self.inner.has_cram_md5_keys()
    }
}

impl TestStore {
    fn answer(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            STORE_FAILING => Err(StoreError::Unavailable("test store down".into())),
            STORE_STALLED => {
                self.stalled.notify_one();
                let release = self.release.lock().unwrap().take();
                if let Some(release) = release {
                    let _ = release.recv();
                }
                Err(StoreError::Unavailable("test store stalled".into()))
            }
            _ => self.inner.lookup(name),
        }
    }
}

/// How to build a [`TestServer`].
pub(crate) struct Builder {
    users: String,
    policy: Option<String>,
    senders: Option<SenderPolicy>,
    limits: LimitsConfig,
    xclient_trusted: Vec<portcullis_limits::IpNet>,
    session: SessionConfig,
    store_timeout: Duration,
    hook_timeout: Duration,
}

impl Builder {
    /// A user with a `{PLAIN}` password (fast to check) and aliases.
    pub(crate) fn user(mut self, name: &str, password: &str, may_act_as: &[&str]) -> Builder {
        let aliases: Vec<String> = may_act_as.iter().map(|a| format!("{a:?}")).collect();
        self.users.push_str(&format!(
            "[[user]]\nname = {name:?}\npassword = \"{{PLAIN}}{password}\"\nmay_act_as = [{}]\n\n",
            aliases.join(", ")
        ));
        self
    }

    /// A Lua policy script.
    pub(crate) fn policy(mut self, script: &str) -> Builder {
        self.policy = Some(script.to_string());
        self
    }

    /// How long a policy hook may run (the script's own deadline).
    pub(crate) fn hook_timeout(mut self, limit: Duration) -> Builder {
        self.hook_timeout = limit;
        self
    }

    /// `[senders]` with these domains.
    pub(crate) fn senders(mut self, domains: &[&str]) -> Builder {
        self.senders = Some(SenderPolicy {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            check_from_header: false,
        });
        self
    }

    pub(crate) fn limits(mut self, change: impl FnOnce(&mut LimitsConfig)) -> Builder {
        change(&mut self.limits);
        self
    }

    pub(crate) fn session(mut self, change: impl FnOnce(&mut SessionConfig)) -> Builder {
        change(&mut self.session);
        self
    }

    /// Clients from 10.0.0.0/8 may send XCLIENT.
    pub(crate) fn xclient_from_10(mut self) -> Builder {
        self.xclient_trusted = vec!["10.0.0.0/8".parse().expect("net")];
        self
    }

    pub(crate) fn build(self) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let users = dir.path().join("users.toml");
        std::fs::write(&users, &self.users).expect("users file");
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let store = Arc::new(TestStore {
            inner: FileStore::load(&users).expect("users load"),
            mode: AtomicU8::new(STORE_UP),
            release: Mutex::new(Some(release_rx)),
            stalled: tokio::sync::Notify::new(),
            lookups: Default::default(),
        });
        let options = AuthOptions {
            verified_cache_ttl: Duration::ZERO,
            ..AuthOptions::default()
        };
        let authenticator = Authenticator::with_options(store.clone(), &options);
        let store_calls = StoreCalls::new(
            self.store_timeout,
            authenticator.slot_wait(),
            authenticator.slot_queue(),
        );
        let limiter = Arc::new(Limiter::in_memory(self.limits));
        let defence = Defence::new(limiter, None);
        let mut auth = AuthService::new(authenticator, store_calls, defence, self.senders);
        let mut session = self.session;
        if let Some(script) = &self.policy {
            let path = dir.path().join("policy.lua");
            std::fs::write(&path, script).expect("policy file");
            let mut options = portcullis_lua::PolicyOptions::new(&path);
            options.hook_timeout = self.hook_timeout;
            let policy = portcullis_lua::Policy::load(options).expect("policy loads");
            session.script_mechanisms = policy.mechanisms();
            auth.set_policy(Arc::new(policy));
        }
        let spool = portcullis_spool::Spool::open(&dir.path().join("spool")).expect("spool");
        let (stop, stopping) = watch::channel(false);
        let shared = Shared {
            auth,
            spooler: Spooler {
                spool: Arc::new(spool),
                hostname: "mx.test".into(),
                with_policy: self.policy.is_some(),
            },
            idle_timeout: Duration::from_secs(300),
            command_timeout: Duration::from_secs(300),
            min_data_rate: 0,
            connections: Arc::new(Semaphore::new(100)),
            max_connections: 100,
            certificate: None,
            client_identity: None,
            tenants: None,
            stopping,
            grace_over: watch::Sender::new(false),
        };
        let listener = BoundListener {
            name: "test".into(),
            local_addr: Some(SocketAddr::from(([192, 0, 2, 1], 587))),
            implicit_tls: false,
            acceptor: None,
            session: std::sync::RwLock::new(Arc::new(session)),
            xclient_trusted: self.xclient_trusted,
            proxy_trusted: Vec::new(),
        };
        TestServer {
            shared: Arc::new(shared),
            listener: Arc::new(listener),
            store,
            release: Mutex::new(Some(release_tx)),
            _stop: stop,
            _dir: dir,
        }
    }
}

/// The shared state of one server, and the test store behind it.
pub(crate) struct TestServer {
    pub shared: Arc<Shared>,
    listener: Arc<BoundListener>,
    pub store: Arc<TestStore>,
    release: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// A client address outside the defence's default allow list (loopback).
pub(crate) const CLIENT: [u8; 4] = [192, 0, 2, 10];

impl TestServer {
    /// Users `alice` (`secret`, may act as `postmaster@example.test` and
    /// send from `@alias.test`) and `bob`
    /// (`hunter2`); PLAIN and LOGIN in clear; the default defence without
    /// the loopback exemption (clients come from 192.0.2.0/24).
    pub(crate) fn builder() -> Builder {
        let mut session = SessionConfig::new("mx.test");
        session.auth = AuthPolicy::Optional;
        session.allow_insecure_auth = true;
        session.mechanisms = vec![Mechanism::Plain, Mechanism::Login];
        Builder {
            users: String::new(),
            policy: None,
            senders: None,
            limits: LimitsConfig::default(),
            xclient_trusted: Vec::new(),
            session,
            store_timeout: Duration::from_secs(5),
            hook_timeout: Duration::from_secs(5),
        }
        .user(
            "alice",
            "secret",
            &["@alias.test", "postmaster@example.test"],
        )
        .user("bob", "hunter2", &[])
    }

    pub(crate) fn start() -> TestServer {
        TestServer::builder().build()
    }

    /// A connection from [`CLIENT`] whose greeting has been read.
    pub(crate) async fn connect(&self) -> Client {
        self.connect_from(IpAddr::from(CLIENT)).await
    }

    /// A connection from `ip`, greeting read.
    pub(crate) async fn connect_from(&self, ip: IpAddr) -> Client {
        let mut client = self.open_from(ip);
        let greeting = client.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        client
    }

    /// A connection from `ip`, nothing read yet.
    pub(crate) fn open_from(&self, ip: IpAddr) -> Client {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let (shared, listener) = (self.shared.clone(), self.listener.clone());
        let client = SocketAddr::new(ip, 40000);
        let local = listener.local_addr;
        let task = tokio::spawn(async move {
            crate::connection::serve(far, client, local, &listener, &shared).await;
        });
        Client {
            stream: near,
            buffer: Vec::new(),
            task,
        }
    }

    /// Lets a stalled store call return.
    pub(crate) fn release_store(&self) {
        self.release.lock().unwrap().take();
    }

    /// Bans `ip` (as `portcullis ban add` would).
    pub(crate) async fn ban(&self, ip: IpAddr) {
        let ban = portcullis_limits::Ban {
            ip,
            reason: "test".into(),
            created_ms: portcullis_limits::Timestamp::now().0,
            expires_ms: portcullis_limits::Timestamp::now().0 + 3_600_000,
        };
        self.shared.auth.defence().limiter().ban(ban).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.release_store();
    }
}

/// One SMTP client over the pipe.
pub(crate) struct Client {
    stream: DuplexStream,
    buffer: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Writes `text` as sent (several pipelined lines at once, say).
    pub(crate) async fn write(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.expect("write");
    }

    /// One command line; its reply.
    pub(crate) async fn cmd(&mut self, line: &str) -> String {
        self.write(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// The next complete reply (all its lines), or "" at the end of the
    /// stream.
    pub(crate) async fn reply(&mut self) -> String {
        loop {
            if let Some(end) = reply_end(&self.buffer) {
                let reply: Vec<u8> = self.buffer.drain(..end).collect();
                return String::from_utf8_lossy(&reply).into_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("read");
            if n == 0 {
                let rest: Vec<u8> = std::mem::take(&mut self.buffer);
                return String::from_utf8_lossy(&rest).into_owned();
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// `EHLO`, its reply.
    pub(crate) async fn ehlo(&mut self) -> String {
        self.cmd("EHLO client.test").await
    }

    /// `AUTH PLAIN` with an initial response for `user` and `password`.
    pub(crate) async fn auth_plain(&mut self, user: &str, password: &str) -> String {
        self.cmd(&format!("AUTH PLAIN {}", plain(None, user, password)))
            .await
    }

    /// Whether the server closed the connection (its task ended and the
    /// pipe reads end-of-stream) once any pending reply is read.
    pub(crate) async fn closed(&mut self) -> bool {
        let rest = self.reply().await;
        rest.is_empty() && (&mut self.task).await.is_ok()
    }
}

/// Where the first complete reply in `buffer` ends: after a line whose
/// fourth byte is a space.
fn reply_end(buffer: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(at) = buffer[start..].windows(2).position(|w| w == b"\r\n") {
        let line = &buffer[start..start + at];
        start += at + 2;
        if line.len() < 4 || line[3] == b' ' {
            return Some(start);
        }
    }
    None
}

/// The base64 PLAIN message.
pub(crate) fn plain(authzid: Option<&str>, user: &str, password: &str) -> String {
    use base64::Engine;
    let message = format!("{}\0{user}\0{password}", authzid.unwrap_or(""));
    base64::engine::general_purpose::STANDARD.encode(message)
}

/// Base64 of `text`.
pub(crate) fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The reply's code and enhanced code (`"535 5.7.8"`).
pub(crate) fn code(reply: &str) -> &str {
    reply.get(..9).unwrap_or(reply)
}

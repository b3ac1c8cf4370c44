//! What the connections of a running server share, and one bound
//! listener. Plain data that the assembly (`lib.rs`) builds and the
//! connection loop reads.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use portcullis_config::authorization::Tenants;
use portcullis_session::SessionConfig;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::auth_service::AuthService;
use crate::spooling::Spooler;
use crate::tls::ServerCertificate;

/// What every connection shares.
pub(crate) struct Shared {
    /// Every decision on a claimed identity, and the brute-force defence.
    pub auth: AuthService,
    /// Where accepted messages go.
    pub spooler: Spooler,
    pub idle_timeout: Duration,
    /// A command line must arrive whole within this (`pace`).
    pub command_timeout: Duration,
    /// Bytes per second message data must average (0: no minimum).
    pub min_data_rate: u64,
    pub connections: Arc<Semaphore>,
    pub max_connections: usize,
    /// The certificate we serve (its hash is SCRAM's `tls-server-end-point`).
    pub certificate: Option<Arc<ServerCertificate>>,
    /// How a verified client certificate names its user (EXTERNAL); `None`
    /// when no client CA is configured.
    pub client_identity: Option<portcullis_config::ClientIdentity>,
    /// The tenant rules checked before a message is spooled.
    pub tenants: Option<Tenants>,
    /// Turns true when the server stops: sessions between transactions get
    /// `421 4.3.2`, sessions inside one finish it first.
    pub stopping: watch::Receiver<bool>,
    /// Turns true when the grace period after a stop is over: sessions
    /// still open (a DATA transfer that never ends) are told `421 4.3.2`
    /// and closed, rather than cut off in silence.
    pub grace_over: watch::Sender<bool>,
}

/// One bound listener and how its sessions behave.
pub(crate) struct BoundListener {
    pub name: String,
    /// Where it listens. The socket itself belongs to the accept loop, so
    /// that it is closed the moment a stop is asked for, while sessions
    /// (which share this struct) go on.
    pub local_addr: Option<SocketAddr>,
    pub implicit_tls: bool,
    pub acceptor: Option<TlsAcceptor>,
    /// Swapped by `Reloader::apply`; each connection takes the current one.
    pub session: std::sync::RwLock<Arc<SessionConfig>>,
    /// Clients in these networks may send XCLIENT.
    pub xclient_trusted: Vec<portcullis_limits::IpNet>,
    /// Load balancers that send a PROXY header; empty: no PROXY protocol.
    pub proxy_trusted: Vec<portcullis_limits::IpNet>,
}

impl BoundListener {
    /// The session settings new connections get now.
    pub(crate) fn current_session(&self) -> Arc<SessionConfig> {
        self.session
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

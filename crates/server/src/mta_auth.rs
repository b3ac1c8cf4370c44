//! The Dovecot-auth-protocol front end: Postfix (`smtpd_sasl_type =
//! dovecot`), Exim's `dovecot` authenticator and chasquid relay their SMTP
//! clients' AUTH to us, and we decide as for our own SMTP listeners.
//!
//! The wire rules are `portcullis_dovecot_auth`'s; the mechanisms are
//! `portcullis_sasl`'s step machines; here is only the I/O and the
//! bookkeeping of one MTA connection: each request id runs its own
//! exchange, and every decision (or SCRAM secret look-up) runs as its own
//! task, so a failure delay on one id (served by delaying its `FAIL`, as
//! Dovecot does) never holds the others. Requests are answered in the
//! order their decisions finish.
//!
//! The client is the one the MTA names with `rip=`: bans, failure delays,
//! cool-downs and the audit log see the SMTP client, not the MTA. That is
//! why a TCP listener only accepts peers from its `trusted` networks.
//!
//! Bounds: connections per listener, ids in flight per connection, line
//! length (the framer), decoded response size; a peer that sends no
//! complete line for the idle timeout is closed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use portcullis_config::auth_listener::{AuthEndpoint, AuthListener};
use portcullis_dovecot_auth::{
    AuthRequest, Connection, Failure, Framer, Limits, Mechanism as WireMechanism, MechanismFlags,
    Request, ServerIds,
};
use portcullis_lua::ConnMeta;
use portcullis_sasl::{
    Credentials, Exchange, Mechanism, SaslError, SecretsRequest, StartContext, Step,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::auth_service::{
    AuthRequest as ServiceRequest, Claim, Exchange as ServiceExchange, Verdict,
};
use crate::context::Shared;
use crate::error::ServerError;
use crate::peer::ConnectionFacts;
use crate::telemetry;
use crate::verify::ScramFound;

/// How long one write to the MTA may take.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A bound `[[auth_listener]]` speaking the Dovecot protocol.
pub(crate) struct BoundAuthListener {
    pub config: AuthListener,
    /// The `MECH` lines of the handshake.
    pub mechanisms: Vec<Mechanism>,
    pub connections: Arc<Semaphore>,
    /// Our name, in CRAM-MD5's challenge.
    pub hostname: String,
    /// `CUID`: numbers the connections.
    next_connection: AtomicU64,
    /// How user names are canonicalised: as for SMTP sessions, so every
    /// count, ban, cache entry and suspension sees one name.
    pub username_profile: portcullis_sasl::UsernameProfile,
}

/// The listening socket.
pub(crate) enum AuthSocket {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl AuthSocket {
    /// The TCP address, for tests with port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            AuthSocket::Tcp(socket) => socket.local_addr().ok(),
            AuthSocket::Unix(..) => None,
        }
    }
}

impl Drop for AuthSocket {
    fn drop(&mut self) {
        if let AuthSocket::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Which mechanisms an auth listener offers: its list (those of `offered`
/// it names), else every offered one that needs no channel binding (an
/// MTA relays none) and no client certificate (EXTERNAL needs the
/// certificate's name, which Postfix does not pass).
pub(crate) fn mechanisms(
    offered: &[Mechanism],
    listener: &AuthListener,
) -> Result<Vec<Mechanism>, ServerError> {
    let usable = |m: &Mechanism| !m.needs_channel_binding() && !m.needs_client_certificate();
    let Some(names) = &listener.mechanisms else {
        return Ok(offered.iter().copied().filter(usable).collect());
    };
    let mut chosen = Vec::new();
    for name in names {
        let mechanism =
            Mechanism::from_name(name).ok_or_else(|| ServerError::UnknownMechanism {
                listener: listener.name.clone(),
                name: name.clone(),
            })?;
        if offered.contains(&mechanism) && usable(&mechanism) && !chosen.contains(&mechanism) {
            chosen.push(mechanism);
        }
    }
    Ok(chosen)
}

/// Binds one listener's socket: a Unix socket (a stale socket file from a
/// previous run is replaced) with its mode, or a TCP address.
pub(crate) async fn bind_socket(config: &AuthListener) -> Result<AuthSocket, ServerError> {
    let bind_error = |address: String, source| ServerError::AuthBind {
        name: config.name.clone(),
        address,
        source,
    };
    Ok(match &config.endpoint {
        AuthEndpoint::Unix {
            path,
            mode,
            owner,
            group,
        } => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            let shown = path.display().to_string();
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if meta.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
            // Bound in a directory only we can enter, given its mode and
            // owner there, then moved into place: nobody can connect while
            // the socket still has the umask's mode.
            let staging = staging_dir(path).map_err(|e| bind_error(shown.clone(), e))?;
            let staged = staging.join("socket");
            let bound = (|| {
                let socket = UnixListener::bind(&staged)?;
                std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(*mode))?;
                if owner.is_some() || group.is_some() {
                    let uid = owner.as_deref().map(user_id).transpose()?;
                    let gid = group.as_deref().map(group_id).transpose()?;
                    std::os::unix::fs::chown(&staged, uid, gid)?;
                }
                std::fs::rename(&staged, path)?;
                Ok::<_, std::io::Error>(socket)
            })();
            let _ = std::fs::remove_dir_all(&staging);
            let socket = bound.map_err(|e| bind_error(shown, e))?;
            AuthSocket::Unix(socket, path.clone())
        }
        AuthEndpoint::Tcp { address, .. } => AuthSocket::Tcp(
            TcpListener::bind(address)
                .await
                .map_err(|e| bind_error(address.to_string(), e))?,
        ),
    })
}

/// A fresh directory beside `path`, mode 0700, for binding the socket
/// before it is moved to `path`.
fn staging_dir(path: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}.{}.bind", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    Ok(staging)
}

/// Binds a Dovecot-protocol listener.
pub(crate) async fn bind(
    config: &AuthListener,
    offered: &[Mechanism],
    hostname: &str,
    username_profile: portcullis_sasl::UsernameProfile,
) -> Result<(BoundAuthListener, AuthSocket), ServerError> {
    let socket = bind_socket(config).await?;
    let listener = BoundAuthListener {
        mechanisms: mechanisms(offered, config)?,
        connections: Arc::new(Semaphore::new(config.max_connections)),
        next_connection: AtomicU64::new(1),
        hostname: hostname.to_string(),
        config: config.clone(),
        username_profile,
    };
    Ok((listener, socket))
}

/// Whether a peer may talk to `config`'s listener: anyone who can open a
/// Unix socket (its mode decides), a TCP peer only from `trusted`.
pub(crate) fn peer_trusted(config: &AuthListener, peer: Option<SocketAddr>) -> bool {
    match (&config.endpoint, peer) {
        (AuthEndpoint::Tcp { trusted, .. }, Some(peer)) => {
            trusted.iter().any(|net| net.contains(peer.ip()))
        }
        (AuthEndpoint::Tcp { .. }, None) => false,
        (AuthEndpoint::Unix { .. }, _) => true,
    }
}

/// Accepts until a stop is asked for; each MTA connection runs as its own
/// task.
pub(crate) async fn accept_loop(
    socket: AuthSocket,
    listener: Arc<BoundAuthListener>,
    shared: Arc<Shared>,
) {
    let mut stopping = shared.stopping.clone();
    tracing::info!(listener = %listener.config.name, endpoint = ?listener.config.endpoint, "auth listener (dovecot protocol)");
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break,
            accepted = accept(&socket) => accepted,
        };
        let (stream, mta) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "auth listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if !peer_trusted(&listener.config, mta) {
            tracing::warn!(peer = ?mta, listener = %listener.config.name, "auth listener: peer not in trusted networks, closed");
            continue;
        }
        let Ok(permit) = listener.connections.clone().try_acquire_owned() else {
            tracing::warn!(listener = %listener.config.name, "auth listener: connection limit reached");
            metrics::counter!(telemetry::CONNECTIONS_REFUSED).increment(1);
            continue;
        };
        let (listener, shared) = (listener.clone(), shared.clone());
        tokio::spawn(async move {
            match stream {
                Stream::Tcp(tcp) => serve(tcp, mta, &listener, &shared).await,
                Stream::Unix(unix) => serve(unix, mta, &listener, &shared).await,
            }
            drop(permit);
        });
    }
}

pub(crate) enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

pub(crate) async fn accept(socket: &AuthSocket) -> std::io::Result<(Stream, Option<SocketAddr>)> {
    match socket {
        AuthSocket::Tcp(tcp) => {
            let (stream, peer) = tcp.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Stream::Tcp(stream), Some(peer)))
        }
        AuthSocket::Unix(unix, _) => {
            let (stream, _) = unix.accept().await?;
            Ok((Stream::Unix(stream), None))
        }
    }
}

/// The `MECH` flags Dovecot gives each mechanism: MTAs apply their own
/// policy with them (Postfix's `noplaintext` hides `plaintext` ones).
fn wire_mechanism(mechanism: Mechanism) -> WireMechanism {
    let mut flags = MechanismFlags::default();
    match mechanism {
        Mechanism::Plain | Mechanism::Login => flags.plaintext = true,
        Mechanism::CramMd5 => {
            flags.dictionary = true;
            flags.active = true;
        }
        m if m.scram().is_some() => flags.mutual_auth = true,
        _ => {}
    }
    WireMechanism {
        name: mechanism.name().to_string(),
        flags,
    }
}

/// One request id between its rounds.
enum Pending {
    /// We sent `CONT`; the exchange waits for the client's.
    Exchange(Mechanism, Exchange),
    /// A task decides or looks up secrets.
    Busy,
    /// We sent the success data (SCRAM's server-final) in a `CONT`; the
    /// client's (empty) answer gets the `OK`.
    SuccessAck(String),
    /// We sent the failure data (OAUTHBEARER's error) in a `CONT`; the
    /// client's answer gets the `FAIL`.
    FailureAck(Failure),
    /// A policy script's mechanism sent a challenge; the client's answer is
    /// round `step`.
    Script(ScriptState),
}

/// A script mechanism's exchange between rounds: the admission it holds
/// and what its hooks share (`conn.meta`), for as long as the exchange.
struct ScriptState {
    name: String,
    step: u32,
    exchange: ServiceExchange,
    meta: ConnMeta,
}

/// What a task for one id finished with.
enum Finished {
    Decided {
        verdict: Verdict,
        success_data: Option<Vec<u8>>,
        failure_data: Option<&'static [u8]>,
        user: String,
    },
    Secrets {
        mechanism: Mechanism,
        request: SecretsRequest,
        found: Option<ScramFound>,
    },
    Script {
        state: ScriptState,
        verdict: Verdict,
    },
}

/// The facts of one request: the SMTP client as the MTA names it.
#[derive(Clone)]
struct RequestFacts {
    client: SocketAddr,
    /// The MTA, when it connected over TCP.
    mta: Option<SocketAddr>,
    local: Option<SocketAddr>,
    listener: Arc<str>,
    secured: bool,
}

/// One MTA connection.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    mta: Option<SocketAddr>,
    listener: &BoundAuthListener,
    shared: &Arc<Shared>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let config = &listener.config;
    let mut connection = Connection::new(Limits {
        max_in_flight: config.max_in_flight,
        ..Limits::default()
    });
    let ids = ServerIds {
        pid: std::process::id(),
        connection: listener.next_connection.fetch_add(1, Ordering::Relaxed),
        cookie: rand::random(),
    };
    let mechanisms: Vec<WireMechanism> = listener
        .mechanisms
        .iter()
        .copied()
        .map(wire_mechanism)
        .collect();
    let mut mechanisms = mechanisms;
    // The policy script's own mechanisms, after ours (read per connection,
    // so a reloaded script's list applies to new MTA connections).
    mechanisms.extend(
        script_mechanisms(shared)
            .into_iter()
            .map(|name| WireMechanism {
                name,
                flags: MechanismFlags::default(),
            }),
    );
    let greeting = Connection::greeting(&mechanisms, &ids);
    if write(&mut writer, greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut framer = Framer::new(config.max_line);
    let mut pending: HashMap<u32, (u64, Pending, RequestFacts)> = HashMap::new();
    let mut tasks: JoinSet<(u32, u64, Finished)> = JoinSet::new();
    let mut serial: u64 = 0;
    let mut buf = vec![0u8; 16 * 1024];
    let mut stopping = shared.stopping.clone();
    let idle = shared.idle_timeout;
    loop {
        // Lines already read first, then whichever comes: bytes, a
        // finished task, the idle timeout.
        let line = match framer.next_line() {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(listener = %config.name, %error, "auth listener: closing");
                break;
            }
        };
        let mut out = String::new();
        if let Some(line) = line {
            match connection.feed(&line) {
                Ok(request) => {
                    serial += 1;
                    handle(
                        request,
                        serial,
                        mta,
                        listener,
                        &mut connection,
                        &mut pending,
                        &mut tasks,
                        shared,
                        &mut out,
                    );
                }
                Err(error) => match error.failed_request() {
                    Some(id) => {
                        tracing::info!(listener = %config.name, %error, "auth listener: request refused");
                        out.push_str(&connection.fail(id, &Failure::default()));
                    }
                    None => {
                        tracing::warn!(listener = %config.name, %error, "auth listener: protocol error, closing");
                        break;
                    }
                },
            }
        } else {
            tokio::select! {
                read = tokio::time::timeout(idle, reader.read(&mut buf)) => match read {
                    Ok(Ok(n)) if n > 0 => framer.push(&buf[..n]),
                    // Closed, failed, or idle: the MTA reconnects when it
                    // needs us again.
                    _ => break,
                },
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    let Ok((id, task_serial, finished)) = joined else { continue };
                    // A request cancelled (or its id reused) meanwhile: drop.
                    if !matches!(pending.get(&id), Some((s, Pending::Busy, _)) if *s == task_serial) {
                        continue;
                    }
                    let Some((_, _, facts)) = pending.remove(&id) else { continue };
                    finish(id, task_serial, finished, facts, listener, &mut connection, &mut pending, &mut tasks, shared, &mut out);
                }
                _ = stopping.wait_for(|stop| *stop), if tasks.is_empty() => break,
            }
        }
        if !out.is_empty() && write(&mut writer, out.as_bytes()).await.is_err() {
            break;
        }
    }
    // Decisions in flight finish and are counted even though nobody will
    // read their answer: aborting them would let a peer that hangs up
    // before a slow refusal guess without ever being counted.
    tasks.detach_all();
}

async fn write<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Acts on one request line.
#[allow(clippy::too_many_arguments)]
fn handle(
    request: Request,
    serial: u64,
    mta: Option<SocketAddr>,
    listener: &BoundAuthListener,
    connection: &mut Connection,
    pending: &mut HashMap<u32, (u64, Pending, RequestFacts)>,
    tasks: &mut JoinSet<(u32, u64, Finished)>,
    shared: &Arc<Shared>,
    out: &mut String,
) {
    match request {
        Request::Handshake => {}
        Request::Cancel { id } => {
            pending.remove(&id);
        }
        Request::Auth(auth) => {
            let id = auth.id;
            // Decisions still running count, even for ids the client
            // cancelled: CANCEL must not open room for more work.
            if tasks.len() >= listener.config.max_in_flight {
                out.push_str(&connection.fail(
                    id,
                    &Failure {
                        reason: Some("Too many requests in flight".into()),
                        temporary: true,
                        ..Failure::default()
                    },
                ));
                return;
            }
            let facts = request_facts(&auth, mta, &listener.config.name);
            if let Some(name) = script_mechanisms(shared)
                .into_iter()
                .find(|name| name.eq_ignore_ascii_case(&auth.mechanism))
            {
                let state = ScriptState {
                    name,
                    step: 1,
                    exchange: ServiceExchange::default(),
                    meta: ConnMeta::new(),
                };
                let response = auth.initial_response.map(portcullis_sasl::Secret::new);
                script_round(id, serial, state, response, facts, pending, tasks, shared);
                return;
            }
            let Some(mechanism) =
                Mechanism::from_name(&auth.mechanism).filter(|m| listener.mechanisms.contains(m))
            else {
                out.push_str(&connection.fail(
                    id,
                    &Failure {
                        reason: Some("Unsupported authentication mechanism".into()),
                        ..Failure::default()
                    },
                ));
                return;
            };
            let challenge = format!(
                "<{}.{}@{}>",
                rand::random::<u64>(),
                serial,
                listener.hostname
            );
            let context = StartContext {
                unique_challenge: &challenge,
                channel_binding: None,
                plus_offered: false,
                external_identity: None,
            };
            let step = Exchange::start_with(mechanism, auth.initial_response, &context);
            advance(
                id, serial, mechanism, step, facts, listener, connection, pending, tasks, shared,
                out,
            );
        }
        Request::Continue { id, response } => {
            let Some((serial, state, facts)) = pending.remove(&id) else {
                out.push_str(&connection.fail(id, &Failure::default()));
                return;
            };
            match state {
                Pending::Exchange(mechanism, exchange) => advance(
                    id,
                    serial,
                    mechanism,
                    exchange.respond(response),
                    facts,
                    listener,
                    connection,
                    pending,
                    tasks,
                    shared,
                    out,
                ),
                Pending::SuccessAck(user) => out.push_str(&connection.ok(id, &user)),
                Pending::FailureAck(failure) => out.push_str(&connection.fail(id, &failure)),
                Pending::Script(mut state) => {
                    state.step += 1;
                    let response = Some(portcullis_sasl::Secret::new(response));
                    script_round(id, serial, state, response, facts, pending, tasks, shared);
                }
                // Invariant: the connection refuses a CONT for an id we owe
                // an answer; put it back.
                Pending::Busy => {
                    pending.insert(id, (serial, Pending::Busy, facts));
                }
            }
        }
    }
}

fn request_facts(auth: &AuthRequest, mta: Option<SocketAddr>, listener: &str) -> RequestFacts {
    // Without `rip=` (chasquid sends none) the SMTP client is unknown: it
    // is counted as the unspecified address, which no allow-list covers,
    // never as the MTA's own (often loopback, hence allow-listed) address,
    // which would give every client of that MTA unlimited guesses.
    let ip = auth.remote_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    RequestFacts {
        client: SocketAddr::new(ip, auth.remote_port.unwrap_or(0)),
        local: auth
            .local_ip
            .map(|ip| SocketAddr::new(ip, auth.local_port.unwrap_or(0))),
        listener: Arc::from(listener),
        mta,
        secured: auth.secured,
    }
}

/// Carries out one step of an exchange.
#[allow(clippy::too_many_arguments)]
fn advance(
    id: u32,
    serial: u64,
    mechanism: Mechanism,
    step: Result<Step, SaslError>,
    facts: RequestFacts,
    listener: &BoundAuthListener,
    connection: &mut Connection,
    pending: &mut HashMap<u32, (u64, Pending, RequestFacts)>,
    tasks: &mut JoinSet<(u32, u64, Finished)>,
    shared: &Arc<Shared>,
    out: &mut String,
) {
    match step {
        Ok(Step::Challenge(exchange, challenge)) => {
            out.push_str(&connection.cont(id, &challenge));
            pending.insert(id, (serial, Pending::Exchange(mechanism, exchange), facts));
        }
        Ok(Step::Done(credentials)) => {
            let credentials = credentials.canonicalized(listener.username_profile);
            let success_data = credentials.success_data().map(<[u8]>::to_vec);
            let failure_data = credentials.failure_data();
            let user = credentials.authcid().to_string();
            let (shared, task_facts) = (shared.clone(), facts.clone());
            pending.insert(id, (serial, Pending::Busy, facts));
            tasks.spawn(async move {
                let verdict = decide(&shared, &task_facts, mechanism, credentials).await;
                let finished = Finished::Decided {
                    verdict,
                    success_data,
                    failure_data,
                    user,
                };
                (id, serial, finished)
            });
        }
        Ok(Step::NeedSecrets(request)) => {
            let (shared, task_facts) = (shared.clone(), facts.clone());
            let profile = listener.username_profile;
            pending.insert(id, (serial, Pending::Busy, facts));
            tasks.spawn(async move {
                let found = scram_secrets(&shared, &task_facts, &request, profile).await;
                let finished = Finished::Secrets {
                    mechanism,
                    request,
                    found,
                };
                (id, serial, finished)
            });
        }
        Err(error) => {
            // Malformed or refused before any check (e.g. a SCRAM client
            // asking for channel binding): a plain failure, as Dovecot's.
            tracing::info!(client = %facts.client.ip(), %mechanism, %error, "auth listener: exchange refused");
            out.push_str(&connection.fail(id, &Failure::default()));
        }
    }
}

/// Turns a finished task into the answer (or the next round).
#[allow(clippy::too_many_arguments)]
fn finish(
    id: u32,
    serial: u64,
    finished: Finished,
    facts: RequestFacts,
    listener: &BoundAuthListener,
    connection: &mut Connection,
    pending: &mut HashMap<u32, (u64, Pending, RequestFacts)>,
    tasks: &mut JoinSet<(u32, u64, Finished)>,
    shared: &Arc<Shared>,
    out: &mut String,
) {
    match finished {
        Finished::Secrets {
            mechanism,
            request,
            found,
        } => match found {
            Some(ScramFound { secrets, nonce }) => {
                let nonce = portcullis_sasl::framing::encode_challenge(&nonce);
                let step = request.resume(secrets, &nonce);
                advance(
                    id, serial, mechanism, step, facts, listener, connection, pending, tasks,
                    shared, out,
                );
            }
            None => out.push_str(&connection.fail(id, &temporary(None))),
        },
        Finished::Script { state, verdict } => match verdict {
            Verdict::Challenge(challenge) => {
                out.push_str(&connection.cont(id, &challenge));
                pending.insert(id, (serial, Pending::Script(state), facts));
            }
            Verdict::Accept {
                authz_id, authn_id, ..
            } => {
                shared
                    .containment
                    .remember_mta_login(facts.client.ip(), &authz_id, &authn_id);
                out.push_str(&connection.ok(id, &authz_id))
            }
            Verdict::Reject { reply, .. } => {
                let failure = Failure {
                    reason: Some(reply.text()),
                    temporary: reply.code() / 100 == 4,
                    user: None,
                };
                out.push_str(&connection.fail(id, &failure));
            }
            Verdict::Defer { reply } => {
                out.push_str(&connection.fail(id, &temporary(Some(reply.text()))))
            }
        },
        Finished::Decided {
            verdict,
            success_data,
            failure_data,
            user,
        } => match verdict {
            // `user=` is who the client acts as (the PLAIN authorization
            // identity it may use, else itself): Postfix's sasl_username.
            // The policy service maps it back to the login.
            Verdict::Accept {
                authz_id, authn_id, ..
            } => {
                shared
                    .containment
                    .remember_mta_login(facts.client.ip(), &authz_id, &authn_id);
                match success_data {
                    Some(data) => {
                        out.push_str(&connection.cont(id, &data));
                        pending.insert(id, (serial, Pending::SuccessAck(authz_id), facts));
                    }
                    None => out.push_str(&connection.ok(id, &authz_id)),
                }
            }
            // A ban (`close`) refuses this SMTP client; the MTA, whose other
            // clients share this connection, goes on. The reply's text is
            // the reason the MTA shows; a 4xx one is marked temporary.
            Verdict::Reject { reply, .. } => {
                let failure = Failure {
                    reason: Some(reply.text()),
                    temporary: reply.code() / 100 == 4,
                    user: Some(user),
                };
                match failure_data {
                    Some(data) if !failure.temporary => {
                        out.push_str(&connection.cont(id, data));
                        pending.insert(id, (serial, Pending::FailureAck(failure), facts));
                    }
                    _ => out.push_str(&connection.fail(id, &failure)),
                }
            }
            Verdict::Defer { reply } => {
                out.push_str(&connection.fail(id, &temporary(Some(reply.text()))))
            }
            // Invariant: only script rounds are answered with a challenge,
            // and this front end sends none.
            Verdict::Challenge(_) => out.push_str(&connection.fail(id, &temporary(None))),
        },
    }
}

fn temporary(reason: Option<String>) -> Failure {
    Failure {
        reason,
        temporary: true,
        user: None,
    }
}

/// What the auth service is told about the client of one request.
fn connection_facts(facts: &RequestFacts) -> ConnectionFacts {
    ConnectionFacts {
        client: facts.client,
        proxy: facts.mta,
        local: facts.local,
        listener: facts.listener.to_string(),
        helo: None,
        protocol: if facts.secured { "ESMTPSA" } else { "ESMTPA" },
        tls: None,
    }
}

/// SCRAM's secrets for the exchange (fake ones for an unknown user);
/// `None` when the store cannot answer.
async fn scram_secrets(
    shared: &Shared,
    facts: &RequestFacts,
    request: &SecretsRequest,
    profile: portcullis_sasl::UsernameProfile,
) -> Option<ScramFound> {
    let facts = connection_facts(facts);
    let authcid = profile.canonical(request.authcid());
    shared
        .auth
        .scram_secrets(&facts, authcid, request.hash())
        .await
}

/// The decision on a completed exchange, through the auth service:
/// admission (bans, cool-downs, attempts in flight), the policy, the
/// store, the review; a failure counted and its answer delayed (so the
/// `FAIL` is), a success remembered; metrics and the audit line.
async fn decide(
    shared: &Shared,
    facts: &RequestFacts,
    mechanism: Mechanism,
    credentials: Credentials,
) -> Verdict {
    let connection = connection_facts(facts);
    // One request is one SMTP client's login: what the policy's hooks
    // share lives as long as the request.
    let meta = ConnMeta::new();
    let request = ServiceRequest {
        claim: Claim::Sasl {
            mechanism,
            credentials,
        },
        facts: &connection,
        meta: &meta,
    };
    shared
        .auth
        .authenticate(request, &mut ServiceExchange::default())
        .await
}

/// The mechanisms the policy script declares (none without a script).
fn script_mechanisms(shared: &Shared) -> Vec<String> {
    shared
        .auth
        .policy()
        .map(|policy| policy.mechanisms())
        .unwrap_or_default()
}

/// Runs round `state.step` of a script mechanism as a task.
#[allow(clippy::too_many_arguments)]
fn script_round(
    id: u32,
    serial: u64,
    mut state: ScriptState,
    response: Option<portcullis_sasl::Secret>,
    facts: RequestFacts,
    pending: &mut HashMap<u32, (u64, Pending, RequestFacts)>,
    tasks: &mut JoinSet<(u32, u64, Finished)>,
    shared: &Arc<Shared>,
) {
    let (shared, task_facts) = (shared.clone(), facts.clone());
    pending.insert(id, (serial, Pending::Busy, facts));
    tasks.spawn(async move {
        let connection = connection_facts(&task_facts);
        let request = ServiceRequest {
            claim: Claim::ScriptRound {
                mechanism: state.name.clone(),
                step: state.step,
                response,
            },
            facts: &connection,
            meta: &state.meta,
        };
        let verdict = shared.auth.authenticate(request, &mut state.exchange).await;
        (id, serial, Finished::Script { state, verdict })
    });
}

/// A user's id: a number as is, else looked up (NSS included).
fn user_id(name: &str) -> std::io::Result<u32> {
    id_of(name, "user", |n| {
        nix::unistd::User::from_name(n).map(|u| u.map(|u| u.uid.as_raw()))
    })
}

/// A group's id: a number as is, else looked up (NSS included).
fn group_id(name: &str) -> std::io::Result<u32> {
    id_of(name, "group", |n| {
        nix::unistd::Group::from_name(n).map(|g| g.map(|g| g.gid.as_raw()))
    })
}

/// `name` as a number, else what `lookup` finds for it.
fn id_of(
    name: &str,
    kind: &str,
    lookup: impl FnOnce(&str) -> nix::Result<Option<u32>>,
) -> std::io::Result<u32> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    match lookup(name) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no {kind} {name:?}"),
        )),
        Err(errno) => Err(errno.into()),
    }
}

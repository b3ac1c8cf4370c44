//! One connection: greeting, the read/feed/write loop, STARTTLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_proto::proxy::ProxyHeader;
use portcullis_proto::Reply;
use portcullis_session::{
    AuthOutcome, ConnectionInfo, Effect, ScriptStepOutcome, Session, SpoolOutcome,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::pace::Pace;
use crate::{effects, tls, BoundListener, Shared};

/// Facts about the connection the spool records.
pub(crate) struct Peer {
    pub client: SocketAddr,
    pub server: Option<SocketAddr>,
    pub listener: String,
    /// What policy hooks of this connection share (`conn_meta`, user data).
    pub meta: portcullis_lua::ConnMeta,
    /// The limiter's ban generation when this connection's address was
    /// last checked (see [`crate::defence::banned_since`]).
    pub bans_seen: AtomicU64,
    /// What containment keeps for this session.
    pub containment: crate::containment::PerSession,
}

/// How [`drive`] ended.
enum Ended {
    Closed,
    StartTls,
}

/// Read chunk: big enough for a pipelined group or a DATA burst.
const READ_CHUNK: usize = 16 * 1024;

pub(crate) async fn serve(
    mut tcp: TcpStream,
    client: SocketAddr,
    listener: &BoundListener,
    shared: &Shared,
) {
    // Behind a load balancer the client is who its PROXY header says. A
    // header that names no client is the balancer's own connection.
    let (client, server, balancer_itself) = if listener.proxy_trusted.is_empty() {
        (client, tcp.local_addr().ok(), false)
    } else {
        match crate::proxy_protocol::read_header_from_balancer(&mut tcp, client, listener, shared)
            .await
        {
            Some(ProxyHeader::Proxied {
                source,
                destination,
            }) => (source, Some(destination), false),
            // Only v2 LOCAL is the balancer itself; a client it cannot
            // name (v1 UNKNOWN, a UNIX-socket frontend) is admitted, and
            // counted, under the balancer's address.
            Some(ProxyHeader::Local) => (client, tcp.local_addr().ok(), true),
            Some(ProxyHeader::Unknown) => (client, tcp.local_addr().ok(), false),
            None => return,
        }
    };
    let meta = portcullis_lua::ConnMeta::new();
    // KumoMTA's `conn_meta:get_meta('hostname')`: ours.
    meta.set("hostname", shared.hostname.clone().into());
    let peer = Peer {
        client,
        server,
        listener: listener.name.clone(),
        meta,
        // Read before the ban check at connect: a ban made after it
        // changes the generation, and the next command looks again.
        bans_seen: AtomicU64::new(shared.limiter.ban_generation()),
        containment: Default::default(),
    };
    // Bans and per-address limits, before the greeting (and before any TLS
    // work). The slot counts this connection until it ends. Not for the
    // balancer's own connections: its health checks come several times a
    // second, forever, and counted as a client's they would soon be
    // refused as too fast, taking the instance out of the balancer.
    let _slot = if balancer_itself {
        None
    } else {
        match crate::defence::admit(shared, &peer).await {
            Ok(slot) => Some(slot),
            Err(reply) => {
                refuse(tcp, listener, reply, shared).await;
                return;
            }
        }
    };
    let conn = ConnectionInfo {
        client_ip: client.ip().to_string(),
        session_id: format!("{:016x}", rand::random::<u64>()),
        // The trust check is ours; what XCLIENT means is the session's.
        xclient_trusted: listener
            .xclient_trusted
            .iter()
            .any(|net| net.contains(client.ip())),
    };
    let result = match (&listener.acceptor, listener.implicit_tls) {
        (Some(acceptor), true) => match handshake(acceptor, tcp, shared).await {
            Ok(mut stream) => {
                let info = tls_info(stream.get_ref().1, shared);
                let mut out = Vec::new();
                let mut session =
                    Session::new(listener.current_session(), conn, Some(info), &mut out);
                drive(&mut stream, &mut session, out, &peer, shared)
                    .await
                    .map(|_| ())
            }
            Err(error) => {
                tracing::debug!(client = %client, %error, "TLS handshake failed");
                Ok(())
            }
        },
        _ => serve_starttls(tcp, conn, listener, &peer, shared).await,
    };
    if let Err(error) = result {
        tracing::debug!(client = %client, %error, "connection ended with an error");
    }
}

/// What the session records about a finished handshake, with the
/// channel-binding data of the certificate served now.
fn tls_info(conn: &rustls::ServerConnection, shared: &Shared) -> portcullis_session::TlsInfo {
    let end_point_hash = shared.certificate.as_ref().map(|c| c.end_point_hash());
    tls::info(conn, end_point_hash.as_deref(), shared.client_identity)
}

/// A plain-text start, upgraded in place if the client asks for STARTTLS.
async fn serve_starttls(
    mut tcp: TcpStream,
    conn: ConnectionInfo,
    listener: &BoundListener,
    peer: &Peer,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    let mut session = Session::new(listener.current_session(), conn, None, &mut out);
    let Ended::StartTls = drive(&mut tcp, &mut session, out, peer, shared).await? else {
        return Ok(());
    };
    // Invariant: the session offers STARTTLS only when the listener has an acceptor.
    let Some(acceptor) = &listener.acceptor else {
        return Ok(());
    };
    let mut stream = match handshake(acceptor, tcp, shared).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(client = %peer.client, %error, "STARTTLS handshake failed");
            return Ok(());
        }
    };
    session.tls_established(tls_info(stream.get_ref().1, shared));
    drive(&mut stream, &mut session, Vec::new(), peer, shared)
        .await
        .map(|_| ())
}

/// Feeds input to the session and carries out its effects until the
/// connection closes or switches to TLS. Replies are written when the
/// session wants more input or before an effect that must be seen.
async fn drive<S>(
    stream: &mut S,
    session: &mut Session,
    mut out: Vec<u8>,
    peer: &Peer,
    shared: &Shared,
) -> std::io::Result<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut input: Vec<u8> = Vec::new();
    let mut stopping = shared.stopping.clone();
    let mut grace_over = shared.grace_over.subscribe();
    // The admission of a script mechanism's exchange, held across its rounds.
    let mut script_slot: Option<portcullis_limits::AttemptSlot> = None;
    let mut pace = Pace::new(shared.command_timeout, shared.min_data_rate, Instant::now());
    loop {
        let progress = session.feed(&input, &mut out);
        input.drain(..progress.consumed);
        match progress.effect {
            None => {
                // Bytes of an over-long line being thrown away end no line:
                // trickled, they must not restart the line's clock.
                let line_done =
                    !session.discarding_line() && (progress.consumed > 0 || input.is_empty());
                pace.wants_input(line_done, session.receiving_data(), Instant::now());
                if *stopping.borrow() && !session.in_transaction() {
                    session.abort(Reply::shutting_down(), &mut out);
                    flush(stream, &mut out, shared).await?;
                    return Ok(Ended::Closed);
                }
                flush(stream, &mut out, shared).await?;
                input.reserve(READ_CHUNK);
                // Silence ends the session after the idle timeout; a
                // trickle of bytes, at the pace deadline.
                let idle = Instant::now() + shared.idle_timeout;
                let paced = pace.deadline().filter(|deadline| *deadline < idle);
                let read = tokio::select! {
                    read = tokio::time::timeout_at(paced.unwrap_or(idle), stream.read_buf(&mut input)) => Some(read),
                    // The server is stopping: an idle session is told now;
                    // one inside a transaction reads on until it ends.
                    _ = stopping.wait_for(|stop| *stop), if !session.in_transaction() => continue,
                    // The grace period is over and this transaction is not:
                    // say so before the close, never cut off in silence.
                    _ = grace_over.wait_for(|over| *over) => None,
                };
                let Some(read) = read else {
                    session.abort(Reply::shutting_down(), &mut out);
                    flush(stream, &mut out, shared).await?;
                    return Ok(Ended::Closed);
                };
                match read {
                    Ok(Ok(0)) => return Ok(Ended::Closed),
                    Ok(Ok(n)) => {
                        pace.received(n);
                        let suspended =
                            crate::containment::closed_by_suspension(shared, peer, session);
                        if let Some(reply) = suspended {
                            session.abort(reply, &mut out);
                            flush(stream, &mut out, shared).await?;
                            return Ok(Ended::Closed);
                        }
                        if let Some(reply) = banned_since(peer, session, shared).await {
                            session.abort(reply, &mut out);
                            flush(stream, &mut out, shared).await?;
                            return Ok(Ended::Closed);
                        }
                    }
                    Ok(Err(error)) => return Err(error),
                    Err(_elapsed) => {
                        let reply = match paced {
                            Some(_) => too_slow(&pace, peer),
                            None => Reply::idle_timeout(),
                        };
                        session.abort(reply, &mut out);
                        flush(stream, &mut out, shared).await?;
                        return Ok(Ended::Closed);
                    }
                }
            }
            Some(Effect::StartTls) => {
                flush(stream, &mut out, shared).await?;
                return Ok(Ended::StartTls);
            }
            Some(Effect::Authenticate {
                mechanism,
                credentials,
            }) => {
                let outcome =
                    crate::defence::authenticate(shared, peer, session, mechanism, credentials)
                        .await;
                let senders = crate::authorization::sender_rule(shared, peer, &outcome).await;
                if let Some(rule) = senders {
                    session.restrict_senders(rule);
                }
                if let Some(Effect::Close) = session.auth_finished(outcome, &mut out) {
                    flush(stream, &mut out, shared).await?;
                    return Ok(Ended::Closed);
                }
            }
            Some(Effect::ScriptStep {
                mechanism,
                step,
                response,
            }) => {
                // A script mechanism is admitted like any AUTH, before its
                // first round (bans, cool-downs, attempts in flight), and
                // holds its slot until its outcome is counted.
                let admitted = match script_slot {
                    Some(_) => Ok(()),
                    None => {
                        let ip = crate::defence::client_ip(peer, session);
                        crate::defence::admit_attempt(shared, peer, ip, &mechanism, "")
                            .await
                            .map(|slot| script_slot = Some(slot))
                    }
                };
                let (mut outcome, ran) = match admitted {
                    Ok(()) => (
                        crate::policy::script_step(
                            shared, peer, session, mechanism, step, response,
                        )
                        .await,
                        true,
                    ),
                    // Refused before the script ran: nothing to count.
                    Err(refused) => (ScriptStepOutcome::Finished(refused), false),
                };
                if let (ScriptStepOutcome::Finished(verdict), true) = (&outcome, ran) {
                    let verdict = verdict.clone();
                    let verdict = crate::defence::script_auth_finished(
                        shared,
                        peer,
                        session,
                        verdict,
                        script_slot.take(),
                    )
                    .await;
                    let senders = crate::authorization::sender_rule(shared, peer, &verdict).await;
                    if let Some(rule) = senders {
                        session.restrict_senders(rule);
                    }
                    outcome = ScriptStepOutcome::Finished(verdict);
                }
                if let Some(Effect::Close) = session.script_step_finished(outcome, &mut out) {
                    flush(stream, &mut out, shared).await?;
                    return Ok(Ended::Closed);
                }
            }
            Some(Effect::LookupScramSecrets { authcid, hash }) => {
                let lookup = effects::lookup_scram(shared, peer, authcid, hash).await;
                if let Some(Effect::Close) = session.scram_secrets_found(lookup, &mut out) {
                    flush(stream, &mut out, shared).await?;
                    return Ok(Ended::Closed);
                }
            }
            Some(Effect::Spool(mut message)) => {
                // Authorization first, then the script's last word.
                let deferred = crate::containment::deferred_at_data(shared, peer, session);
                let refused = match crate::authorization::check_tenant(shared, peer, &mut message) {
                    Ok(()) if deferred.is_some() => deferred,
                    Ok(()) => {
                        crate::policy::message_received(shared, peer, session, &message).await
                    }
                    Err(reply) => Some(reply),
                };
                let outcome = match refused {
                    None => effects::spool(shared, peer, session, *message).await,
                    Some(reply) => SpoolOutcome::Refused(reply),
                };
                session.spool_finished(outcome, &mut out);
            }
            Some(Effect::CheckSending(check)) => {
                let refusal = crate::containment::check_sending(shared, peer, session, check).await;
                session.sending_checked(refusal, &mut out);
            }
            Some(Effect::XclientLogin { login }) => {
                let vouched = AuthOutcome::Accepted {
                    authn_id: login.clone(),
                    authz_id: login.clone(),
                };
                // The proxy's word replaces whoever was logged in before.
                peer.meta.forget_login();
                let verdict = crate::policy::xclient_login(shared, peer, session, &login).await;
                let (refusal, close) = match verdict {
                    None | Some(AuthOutcome::Accepted { .. }) => (None, false),
                    Some(AuthOutcome::Rejected { .. }) => (Some(Reply::xclient_refused()), false),
                    Some(AuthOutcome::TemporaryFailure { reply }) => (
                        Some(reply.unwrap_or_else(Reply::auth_temporary_failure)),
                        false,
                    ),
                    Some(AuthOutcome::Disconnect { reply }) => (Some(reply), true),
                };
                if refusal.is_none() {
                    if let Some(rule) =
                        crate::authorization::sender_rule(shared, peer, &vouched).await
                    {
                        session.restrict_senders(rule);
                    }
                }
                session.xclient_login_finished(refusal, &mut out);
                if close {
                    flush(stream, &mut out, shared).await?;
                    let _ = stream.shutdown().await;
                    return Ok(Ended::Closed);
                }
            }
            Some(Effect::Close) => {
                flush(stream, &mut out, shared).await?;
                let _ = stream.shutdown().await;
                return Ok(Ended::Closed);
            }
        }
    }
}

/// The `421 4.4.2` for a client that missed its pace deadline, logged and
/// counted.
fn too_slow(pace: &Pace, peer: &Peer) -> Reply {
    let (reply, reason) = pace.verdict();
    tracing::info!(client = %peer.client, reason, "closing a connection: client too slow");
    metrics::counter!(crate::telemetry::CONNECTIONS_LIMITED, "reason" => reason).increment(1);
    reply
}

/// The `421` for a session whose address was banned after it connected.
/// A transaction under way finishes first (as at shutdown): the ban is
/// about guessing, and AUTH is not allowed inside a transaction.
async fn banned_since(peer: &Peer, session: &Session, shared: &Shared) -> Option<Reply> {
    if session.in_transaction() {
        return None;
    }
    let mut seen = peer.bans_seen.load(Ordering::Relaxed);
    let reply = crate::defence::banned_since(shared, peer, session, &mut seen).await;
    peer.bans_seen.store(seen, Ordering::Relaxed);
    reply
}

/// Writes the pending replies. A client that stops reading is given the
/// idle timeout, then dropped: it must not pin a connection slot forever.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    shared: &Shared,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let write = async {
        stream.write_all(out).await?;
        stream.flush().await
    };
    tokio::time::timeout(shared.idle_timeout, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
    out.clear();
    Ok(())
}

/// The TLS handshake, bounded by the idle timeout so a silent client does
/// not hold a connection slot.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    shared: &Shared,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(shared.idle_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Sends `reply` in clear and closes. On an implicit-TLS listener the
/// client expects a handshake, not text, so it is simply closed.
async fn refuse(mut tcp: TcpStream, listener: &BoundListener, reply: Reply, shared: &Shared) {
    if listener.implicit_tls {
        return;
    }
    let mut out = Vec::new();
    reply.write_to(&mut out);
    let _ = flush(&mut tcp, &mut out, shared).await;
    let _ = tcp.shutdown().await;
}

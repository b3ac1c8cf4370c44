//! One connection: PROXY header, admission, greeting, the read/feed/write
//! loop, STARTTLS; the SMTP front end of the auth service.
//!
//! [`drive`] feeds input to the [`Session`] and carries out each effect it
//! returns in one short arm: an identity claimed (AUTH, a script
//! mechanism's round, XCLIENT LOGIN) goes to the
//! [`AuthService`](crate::auth_service::AuthService) as a request with
//! the connection's facts, and its verdict comes back to the session
//! through [`apply`].

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use portcullis_proto::proxy::ProxyHeader;
use portcullis_proto::Reply;
use portcullis_session::{
    AuthOutcome, ConnectionInfo, Effect, Flow, ScramLookup, ScriptStepOutcome, SendingCheck,
    Session, SpoolOutcome,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::auth_service::{AuthRequest, Claim, Exchange, Verdict};
use crate::containment::{PerSession, Sender};
use crate::context::{BoundListener, Shared};
use crate::pace::Pace;
use crate::peer::{ConnectionFacts, Peer, TlsFacts};

/// How [`drive`] ended.
enum Ended {
    Closed,
    StartTls,
}

/// Read chunk while a message comes in: big enough for a DATA burst.
const DATA_CHUNK: usize = 16 * 1024;

/// Read chunk between messages: a few command lines (512 bytes each at
/// most, RFC 5321 4.5.3.1.4) or a pipelined group; a longer group is read
/// in more than one go. An idle connection holds this much, not a DATA
/// buffer.
const COMMAND_CHUNK: usize = 2048;

/// Serves one accepted connection: `stream` from `client`, which
/// connected to `local`. Generic over the stream, so that tests drive it
/// over an in-memory pipe.
pub(crate) async fn serve<S>(
    mut stream: S,
    client: SocketAddr,
    local: Option<SocketAddr>,
    listener: &BoundListener,
    shared: &Shared,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Behind a load balancer the client is who its PROXY header says. A
    // header that names no client is the balancer's own connection.
    let (client, local, balancer_itself) = if listener.proxy_trusted.is_empty() {
        (client, local, false)
    } else {
        let header = crate::proxy_protocol::read_header_from_balancer(
            &mut stream,
            client,
            &listener.proxy_trusted,
            &listener.name,
            shared.idle_timeout,
        );
        match header.await {
            Some(ProxyHeader::Proxied {
                source,
                destination,
            }) => (source, Some(destination), false),
            // Only v2 LOCAL is the balancer itself; a client it cannot
            // name (v1 UNKNOWN, a UNIX-socket frontend) is admitted, and
            // counted, under the balancer's address.
            Some(ProxyHeader::Local) => (client, local, true),
            Some(ProxyHeader::Unknown) => (client, local, false),
            None => return,
        }
    };
    let meta = portcullis_lua::ConnMeta::new();
    // KumoMTA's `conn_meta:get_meta('hostname')`: ours.
    meta.set("hostname", shared.spooler.hostname.clone().into());
    let peer = Peer {
        client,
        local,
        listener: listener.name.clone(),
        meta,
        // Read before the ban check at connect: a ban made after it
        // changes the generation, and the next command looks again.
        bans_seen: AtomicU64::new(shared.auth.defence().limiter().ban_generation()),
        texts: std::sync::OnceLock::new(),
    };
    // Bans and per-address limits, before the greeting (and before any TLS
    // work). The slot counts this connection until it ends. Not for the
    // balancer's own connections: its health checks come several times a
    // second, forever, and counted as a client's they would soon be
    // refused as too fast, taking the instance out of the balancer.
    let _slot = if balancer_itself {
        None
    } else {
        match shared.auth.defence().admit(peer.client.ip()).await {
            Ok(slot) => Some(slot),
            Err(reply) => {
                refuse(stream, listener, reply, shared).await;
                return;
            }
        }
    };
    let conn = ConnectionInfo {
        client_ip: portcullis_limits::ip_text(client.ip()),
        // 16 hex digits, as `{:016x}` writes them, without `fmt`.
        session_id: hex::encode(rand::random::<u64>().to_be_bytes()),
        // The trust check is ours; what XCLIENT means is the session's.
        xclient_trusted: listener
            .xclient_trusted
            .iter()
            .any(|net| net.contains(client.ip())),
    };
    let result = match (&listener.acceptor, listener.implicit_tls) {
        (Some(acceptor), true) => {
            Box::pin(serve_tls(acceptor, stream, conn, listener, &peer, shared)).await
        }
        _ => serve_starttls(stream, conn, listener, &peer, shared).await,
    };
    if let Err(error) = result {
        tracing::debug!(client = %client, %error, "connection ended with an error");
    }
}

/// A connection that starts with the TLS handshake (implicit TLS).
async fn serve_tls<S>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    conn: ConnectionInfo,
    listener: &BoundListener,
    peer: &Peer,
    shared: &Shared,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match handshake(acceptor, stream, shared).await {
        Ok(mut stream) => {
            let info = tls_info(stream.get_ref().1, shared);
            let mut out = Vec::new();
            let mut session = Session::new(listener.current_session(), conn, Some(info), &mut out);
            drive(&mut stream, &mut session, out, peer, shared)
                .await
                .map(|_| ())
        }
        Err(error) => {
            tracing::debug!(client = %peer.client, %error, "TLS handshake failed");
            Ok(())
        }
    }
}

/// What the session records about a finished handshake, with the
/// channel-binding data of the certificate served now.
fn tls_info(conn: &rustls::ServerConnection, shared: &Shared) -> portcullis_session::TlsInfo {
    let end_point_hash = shared.certificate.as_ref().map(|c| c.end_point_hash());
    let ca = shared.client_ca.as_deref();
    crate::tls::info(conn, end_point_hash.as_deref(), shared.client_identity, ca)
}

/// A plain-text start, upgraded in place if the client asks for STARTTLS.
async fn serve_starttls<S>(
    mut stream: S,
    conn: ConnectionInfo,
    listener: &BoundListener,
    peer: &Peer,
    shared: &Shared,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    let mut session = Session::new(listener.current_session(), conn, None, &mut out);
    let Ended::StartTls = drive(&mut stream, &mut session, out, peer, shared).await? else {
        return Ok(());
    };
    // Boxed, as every path a connection may idle outside of: the TLS
    // stream and its session's future would otherwise be part of every
    // plain connection's future (several KiB of each idle connection).
    Box::pin(upgrade(stream, session, listener, peer, shared)).await
}

/// The rest of a session after `STARTTLS`: the handshake, then the session
/// over TLS.
async fn upgrade<S>(
    stream: S,
    mut session: Session,
    listener: &BoundListener,
    peer: &Peer,
    shared: &Shared,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Invariant: the session offers STARTTLS only when the listener has an acceptor.
    let Some(acceptor) = &listener.acceptor else {
        return Ok(());
    };
    let mut stream = match handshake(acceptor, stream, shared).await {
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

/// The facts of the connection now, for a request to the auth service or
/// a policy hook: the client a trusted proxy named with XCLIENT is parsed
/// here, once per request.
pub(crate) fn facts(peer: &Peer, session: &Session) -> ConnectionFacts {
    let xclient = session.xclient();
    let (client, proxy) = crate::peer::named_client(
        peer.client,
        xclient.and_then(|x| x.addr.as_deref()),
        xclient.and_then(|x| x.port.as_deref()),
    );
    ConnectionFacts {
        client,
        proxy,
        local: peer.local,
        listener: peer.listener.clone(),
        helo: session.helo_name().map(str::to_string),
        protocol: session.protocol(),
        tls: session.tls().map(|t| TlsFacts {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
            client_certificate: t.client_certificate.clone(),
        }),
    }
}

/// A wait on a watch channel (the server's stop, the end of the grace
/// period) that is polled only when the channel may have moved.
///
/// The read loop's `select!` polls every branch each time the task wakes,
/// several times per message, and a watch's wait takes its waiter list's
/// lock on every poll. Once polled, though, the wait stays registered with
/// the task's waker: when the channel moves, the task is woken, and then
/// the probe (an atomic load of the channel's version) says so. Until the
/// channel first moves, the wait is polled once only.
struct Gated<'a, F> {
    wait: Pin<&'a mut F>,
    /// A receiver of the same channel, never marked as having seen a
    /// value: once the channel moved, it says so for good.
    probe: tokio::sync::watch::Receiver<bool>,
    registered: bool,
}

impl<'a, F: Future> Gated<'a, F> {
    fn new(wait: Pin<&'a mut F>, probe: tokio::sync::watch::Receiver<bool>) -> Self {
        Gated {
            wait,
            probe,
            registered: false,
        }
    }

    fn poll_wait(&mut self, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        // A closed channel (`Err`) counts as moved: the wait then ends.
        if self.registered && matches!(self.probe.has_changed(), Ok(false)) {
            return Poll::Pending;
        }
        self.registered = true;
        // Outside tokio's per-task budget: with the budget spent, the wait
        // would return `Pending` without registering, and never be polled
        // again.
        Pin::new(&mut tokio::task::unconstrained(self.wait.as_mut())).poll(cx)
    }
}

/// What ended a wait for input.
enum Woke {
    Read(std::io::Result<usize>),
    /// The idle or pace deadline passed.
    Deadline,
    /// The server is stopping.
    Stop,
    /// The grace period after a stop is over.
    GraceOver,
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
    // The waits for a stop and for the end of the grace period, and the
    // read deadline's timer, live as long as the session and are polled
    // by every read. Made anew for each read, they cost a registration
    // and a removal each (two waiter lists and the timer wheel, each
    // under its lock), several times per message.
    let mut stop_rx = shared.stopping.clone();
    let stop = stop_rx.wait_for(|stop| *stop);
    tokio::pin!(stop);
    let mut stop = Gated::new(stop, shared.stopping.clone());
    let mut stop_seen = false;
    let mut grace_rx = shared.grace_over.subscribe();
    let grace = grace_rx.wait_for(|over| *over);
    tokio::pin!(grace);
    let mut grace = Gated::new(grace, shared.grace_over.subscribe());
    let timer = tokio::time::sleep_until(Instant::now() + shared.idle_timeout);
    tokio::pin!(timer);
    // What a script mechanism's exchange holds across its rounds.
    let mut exchange = Exchange::default();
    let mut pace = Pace::new(shared.command_timeout, shared.min_data_rate, Instant::now());
    // The counts MAIL saw (for RCPT), the suspensions last looked at.
    let mut contained = PerSession::default();
    // Held while a message's body comes in, until the message is with
    // the spool's writer: the writer may wait for it, to commit it with
    // others' in one fsync. Let go at once when the body ends any other
    // way (refused, too large), so that no commit waits for it.
    let mut receiving: Option<portcullis_spool::Receiving> = None;
    loop {
        let progress = session.feed(&input, &mut out);
        if receiving.is_some()
            && !session.receiving_message()
            && !matches!(progress.effect, Some(Effect::Spool(_)))
        {
            receiving = None;
        }
        input.drain(..progress.consumed);
        let flow = match progress.effect {
            None => {
                // Bytes of an over-long line being thrown away end no line:
                // trickled, they must not restart the line's clock.
                let line_done =
                    !session.discarding_line() && (progress.consumed > 0 || input.is_empty());
                if *shared.stopping.borrow() && !session.in_transaction() {
                    session.abort(Reply::shutting_down(), &mut out);
                    return close(stream, &mut out, session, shared).await;
                }
                flush(stream, &mut out, shared).await?;
                // One clock read for the wait: its pace and idle clocks
                // start when the replies are out.
                let now = Instant::now();
                pace.wants_input(line_done, session.receiving_data(), now);
                if session.receiving_data() {
                    input.reserve(DATA_CHUNK);
                    if receiving.is_none() && session.receiving_message() {
                        receiving = Some(shared.spooler.spool.receiving());
                    }
                } else {
                    if input.is_empty() && input.capacity() > 2 * COMMAND_CHUNK {
                        // The message is in: its buffer goes back.
                        input = Vec::new();
                    }
                    input.reserve(COMMAND_CHUNK);
                }
                // Silence ends the session after the idle timeout; a
                // trickle of bytes, at the pace deadline.
                let idle = now + shared.idle_timeout;
                let paced = pace.deadline().filter(|deadline| *deadline < idle);
                let deadline = paced.unwrap_or(idle);
                // The timer may ring before the deadline (it is moved only
                // ever earlier here); ringing early, it is set to the
                // deadline and the read goes on.
                if deadline < timer.deadline() {
                    timer.as_mut().reset(deadline);
                }
                // In this order: the end of the grace period wins over a
                // client that never stops sending; input already there wins
                // over a deadline that passed meanwhile (as it did when the
                // read was wrapped in a timeout).
                let woke = loop {
                    tokio::select! {
                        biased;
                        // The grace period is over and this transaction is
                        // not: say so before the close, never cut off in
                        // silence.
                        _ = poll_fn(|cx| grace.poll_wait(cx)) => break Woke::GraceOver,
                        read = stream.read_buf(&mut input) => break Woke::Read(read),
                        () = &mut timer => {
                            if Instant::now() >= deadline {
                                break Woke::Deadline;
                            }
                            timer.as_mut().reset(deadline);
                        }
                        // The server is stopping: an idle session is told
                        // now; one inside a transaction reads on until it
                        // ends (then the check above closes it).
                        _ = poll_fn(|cx| stop.poll_wait(cx)), if !stop_seen && !session.in_transaction() => break Woke::Stop,
                    }
                };
                let reply = match woke {
                    Woke::Stop => {
                        stop_seen = true;
                        continue;
                    }
                    Woke::GraceOver => Reply::shutting_down(),
                    Woke::Read(Ok(0)) => return Ok(Ended::Closed),
                    Woke::Read(Ok(n)) => {
                        pace.received(n);
                        let suspended = suspended_since(peer, session, shared, &mut contained);
                        let bans = shared.auth.defence().limiter().ban_generation();
                        let banned = match peer.bans_seen.load(Ordering::Relaxed) == bans {
                            true => None,
                            false => Box::pin(banned_since(peer, session, shared)).await,
                        };
                        match suspended.or(banned) {
                            Some(reply) => reply,
                            None => continue,
                        }
                    }
                    Woke::Read(Err(error)) => return Err(error),
                    Woke::Deadline => match paced {
                        Some(_) => too_slow(&pace, peer),
                        None => Reply::idle_timeout(),
                    },
                };
                session.abort(reply, &mut out);
                Flow::Close
            }
            Some(Effect::StartTls) => {
                flush(stream, &mut out, shared).await?;
                return Ok(Ended::StartTls);
            }
            Some(Effect::Authenticate {
                mechanism,
                credentials,
            }) => {
                let claim = Claim::Sasl {
                    mechanism,
                    credentials,
                };
                let verdict =
                    Box::pin(authenticate(claim, &mut exchange, peer, session, shared)).await;
                let outcome = apply(verdict, session);
                session.auth_finished(outcome, &mut out)
            }
            Some(Effect::ScriptStep {
                mechanism,
                step,
                response,
            }) => {
                let claim = Claim::ScriptRound {
                    mechanism,
                    step,
                    response,
                };
                let outcome =
                    match Box::pin(authenticate(claim, &mut exchange, peer, session, shared)).await
                    {
                        Verdict::Challenge(challenge) => ScriptStepOutcome::Challenge(challenge),
                        verdict => ScriptStepOutcome::Finished(apply(verdict, session)),
                    };
                session.script_step_finished(outcome, &mut out)
            }
            Some(Effect::LookupScramSecrets { authcid, hash }) => {
                let facts = facts(peer, session);
                let found = Box::pin(shared.auth.scram_secrets(&facts, authcid, hash));
                let lookup = match found.await {
                    Some(found) => ScramLookup::Found {
                        secrets: found.secrets,
                        nonce: found.nonce,
                    },
                    None => ScramLookup::Unavailable,
                };
                session.scram_secrets_found(lookup, &mut out)
            }
            Some(Effect::CheckSending(check)) => {
                let refusal = match (sender(peer, session), check) {
                    (Some(who), SendingCheck::Rcpt { n }) => {
                        shared.containment.recipient_refused(&who, &contained, n)
                    }
                    (Some(who), SendingCheck::Mail { size }) => {
                        match shared.containment.mail_refused_at_once(&who) {
                            Some(refusal) => refusal,
                            None => {
                                let calls = shared.auth.store_calls();
                                let checked = shared.containment.mail_refused(
                                    calls,
                                    &who,
                                    &mut contained,
                                    size,
                                );
                                Box::pin(checked).await
                            }
                        }
                    }
                    (None, _) => None,
                };
                session.sending_checked(refusal, &mut out);
                Flow::Continue
            }
            Some(Effect::Spool(message)) => {
                let outcome =
                    Box::pin(spool(*message, peer, session, shared, receiving.take())).await;
                session.spool_finished(outcome, &mut out);
                Flow::Continue
            }
            Some(Effect::XclientLogin { login }) => {
                let claim = Claim::ProxyLogin { login };
                let verdict =
                    Box::pin(authenticate(claim, &mut exchange, peer, session, shared)).await;
                let (refusal, flow) = match apply(verdict, session) {
                    AuthOutcome::Accepted { .. } => (None, Flow::Continue),
                    AuthOutcome::Rejected { reply, .. }
                    | AuthOutcome::TemporaryFailure { reply } => (reply, Flow::Continue),
                    AuthOutcome::Disconnect { reply } => (Some(reply), Flow::Close),
                };
                session.xclient_login_finished(refusal, &mut out);
                flow
            }
            Some(Effect::Close) => Flow::Close,
        };
        if flow == Flow::Close {
            return close(stream, &mut out, session, shared).await;
        }
    }
}

/// One claim to the auth service, with the connection's facts now.
async fn authenticate(
    claim: Claim,
    exchange: &mut Exchange,
    peer: &Peer,
    session: &Session,
    shared: &Shared,
) -> Verdict {
    let facts = facts(peer, session);
    let request = AuthRequest {
        claim,
        facts: &facts,
        meta: &peer.meta,
    };
    shared.auth.authenticate(request, exchange).await
}

/// The session's side of a verdict: an accepted user's sender rule goes to
/// the session first (before any pipelined MAIL is read), then the outcome
/// the `*_finished` call takes. Not for [`Verdict::Challenge`], which only
/// a script round gets (and [`drive`] handles there).
fn apply(verdict: Verdict, session: &mut Session) -> AuthOutcome {
    match verdict {
        Verdict::Accept {
            authn_id,
            authz_id,
            sender_rule,
            credential,
            ..
        } => {
            if let Some(rule) = sender_rule {
                session.restrict_senders(rule);
            }
            AuthOutcome::Accepted {
                authn_id,
                authz_id,
                credential,
            }
        }
        Verdict::Reject {
            reply,
            close: false,
            oauth_challenge,
        } => AuthOutcome::Rejected {
            reply: Some(reply),
            challenge: oauth_challenge,
        },
        Verdict::Reject {
            reply, close: true, ..
        } => AuthOutcome::Disconnect { reply },
        Verdict::Defer { reply } => AuthOutcome::TemporaryFailure { reply: Some(reply) },
        // Invariant: only script rounds are answered with a challenge.
        Verdict::Challenge(_) => AuthOutcome::TemporaryFailure { reply: None },
    }
}

/// A message through authorization (the tenant header), then the
/// script's last word, then the spool.
async fn spool(
    mut message: portcullis_session::Message,
    peer: &Peer,
    session: &Session,
    shared: &Shared,
    mut receiving: Option<portcullis_spool::Receiving>,
) -> SpoolOutcome {
    if let Some(tenants) = shared.tenants.as_ref() {
        let groups = crate::authorization::auth_info_groups(peer.meta.user_data().as_ref());
        let client = peer.client.ip();
        if let Err(reply) =
            crate::authorization::check_tenant(tenants, client, &groups, &mut message)
        {
            return SpoolOutcome::Refused(reply);
        }
    }
    let who = sender(peer, session);
    if let Some(who) = &who {
        shared.containment.message_arriving(who);
    }
    // A `defer` that came while this message was being sent (or that it
    // set off) refuses it after the dot: a sender with many connections
    // has a transaction in flight on each.
    if let Some(reply) = who.as_ref().and_then(|w| shared.containment.deferred(w)) {
        return SpoolOutcome::Refused(reply);
    }
    if let Some(policy) = shared.auth.policy() {
        // The script may take a while: no commit waits for it.
        receiving = None;
        let facts = facts(peer, session);
        let refused = crate::policy::message_received(policy, &facts, &peer.meta, &message);
        if let Some(reply) = refused.await {
            return SpoolOutcome::Refused(reply);
        }
    }
    let held = who.as_ref().and_then(|w| shared.containment.held(w));
    let sizes = (
        message.envelope.rcpt_to.len(),
        message.data.len(),
        message.envelope.params.size,
    );
    let outcome = crate::spooling::spool(&shared.spooler, peer, message, held, receiving).await;
    if let (SpoolOutcome::Stored { .. }, Some(who)) = (&outcome, &who) {
        let (recipients, bytes, declared) = sizes;
        shared
            .containment
            .message_spooled(who, recipients, bytes, declared);
    }
    outcome
}

/// Who the session sends as (from AUTH, or a trusted proxy's `XCLIENT
/// LOGIN=`), for containment; `None` before anyone logged in.
fn sender<'a>(peer: &'a Peer, session: &'a Session) -> Option<Sender<'a>> {
    let (authn, authz) = match (session.identity(), session.xclient()) {
        (Some(i), _) => (i.authn_id.as_str(), i.authz_id.as_str()),
        (None, Some(x)) => {
            let login = x.login.as_deref()?;
            (login, login)
        }
        (None, None) => return None,
    };
    // The client as `facts` names it, without making all the facts.
    let xclient = session.xclient();
    let (client, _) = crate::peer::named_client(
        peer.client,
        xclient.and_then(|x| x.addr.as_deref()),
        xclient.and_then(|x| x.port.as_deref()),
    );
    Some(Sender {
        authn,
        authz,
        ip: client.ip(),
        meta: Some(&peer.meta),
    })
}

/// The `421` for a session whose identity was suspended since its last
/// command (by a signal or `portcullis user suspend`); one atomic load
/// unless the suspensions changed.
fn suspended_since(
    peer: &Peer,
    session: &Session,
    shared: &Shared,
    contained: &mut PerSession,
) -> Option<Reply> {
    if !shared.containment.suspensions_changed(contained) {
        return None;
    }
    let who = sender(peer, session);
    shared
        .containment
        .closed_by_suspension(who.as_ref(), contained)
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
    let client = || facts(peer, session).client_ip();
    let reply = shared.auth.defence().banned_since(client, &mut seen).await;
    peer.bans_seen.store(seen, Ordering::Relaxed);
    reply
}

/// Writes the last replies and ends the session, each step bounded by the
/// idle timeout. Over TLS the stream is shut down (a close_notify, then
/// the socket's FIN). In plain text the caller's dropping the stream is
/// the close: the kernel sends the FIN then, and a `shutdown` before it
/// would be one more system call per session for nothing.
async fn close<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    session: &Session,
    shared: &Shared,
) -> std::io::Result<Ended> {
    flush(stream, out, shared).await?;
    if session.tls().is_some() {
        let _ = tokio::time::timeout(shared.idle_timeout, stream.shutdown()).await;
    }
    Ok(Ended::Closed)
}

/// Writes the pending replies. A client that stops reading is given the
/// idle timeout, then dropped: it must not pin a connection slot forever.
///
/// The write is tried once before the timeout is set up: nearly always the
/// socket has room and it is done at once, and the timeout would have cost
/// a clock read for each reply written.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    shared: &Shared,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    {
        let mut write = std::pin::pin!(async {
            stream.write_all(out).await?;
            stream.flush().await
        });
        let at_once = poll_fn(|cx| match write.as_mut().poll(cx) {
            Poll::Ready(done) => Poll::Ready(Some(done)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        match at_once {
            Some(done) => done?,
            None => tokio::time::timeout(shared.idle_timeout, write)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")
                })??,
        }
    }
    out.clear();
    Ok(())
}

/// The TLS handshake, bounded by the idle timeout so a silent client does
/// not hold a connection slot.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    shared: &Shared,
) -> std::io::Result<tokio_rustls::server::TlsStream<S>> {
    tokio::time::timeout(shared.idle_timeout, acceptor.accept(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Sends `reply` in clear and closes. On an implicit-TLS listener the
/// client expects a handshake, not text, so it is simply closed.
async fn refuse<S: AsyncWrite + Unpin>(
    mut stream: S,
    listener: &BoundListener,
    reply: Reply,
    shared: &Shared,
) {
    if listener.implicit_tls {
        return;
    }
    let mut out = Vec::new();
    reply.write_to(&mut out);
    let _ = flush(&mut stream, &mut out, shared).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The first look at the stop wait may come when the task's budget is
    /// spent (a busy session); the wait must still be registered then, or
    /// a later stop would never wake the session.
    #[tokio::test]
    async fn a_stop_is_seen_though_the_first_look_came_with_the_budget_spent() {
        let (stop, probe) = tokio::sync::watch::channel(false);
        let mut receiver = probe.clone();
        let wait = receiver.wait_for(|stop| *stop);
        tokio::pin!(wait);
        let mut gated = Gated::new(wait, probe);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.send(true).unwrap();
            stop
        });
        let mut first = true;
        let seen = poll_fn(|cx| {
            if std::mem::take(&mut first) {
                for _ in 0..1000 {
                    let spend = std::pin::pin!(tokio::task::consume_budget());
                    let _ = spend.poll(cx);
                }
            }
            gated.poll_wait(cx)
        });
        // The timeout's own wake would poll the wait and find the stop: it
        // must come well before that.
        let started = std::time::Instant::now();
        let seen = tokio::time::timeout(Duration::from_secs(5), seen).await;
        assert!(matches!(seen, Ok(Ok(_))), "the stop was missed");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the stop woke nothing: seen only at the timeout"
        );
        drop(sender.await.unwrap());
    }
}

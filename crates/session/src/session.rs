//! The session's state and the dispatcher that routes each input to its
//! handler. Handlers live beside it: [`crate::auth`] and [`crate::mail`].

use std::sync::Arc;

use portcullis_proto::bdat::{Chunk, ChunkedBody};
use portcullis_proto::command::{self, CommandError};
use portcullis_proto::data::{DataOutcome, DataProgress, DataReceiver};
use portcullis_proto::line::{Frame, LineFramer};
use portcullis_proto::{Command, EhloReply, Reply, MAX_LINE_LEN};
use portcullis_sasl::{Exchange, Mechanism, SecretsRequest};

use crate::config::{AuthPolicy, SessionConfig};
use crate::effect::{
    AuthMechanism, AuthOutcome, Effect, Envelope, Flow, Identity, Message, ScramLookup,
    ScriptStepOutcome, SpoolOutcome, TlsInfo,
};

/// Facts about the connection, from the driver.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The client's IP address, as text.
    pub client_ip: String,
    /// A unique, unguessable id for this session (the driver makes it from
    /// a CSPRNG); it makes CRAM-MD5 challenges unique.
    pub session_id: String,
    /// The client is in the listener's XCLIENT trusted networks: XCLIENT
    /// is advertised and obeyed.
    pub xclient_trusted: bool,
}

/// How far one call to [`Session::feed`] got.
#[derive(Debug)]
pub struct Progress {
    /// Input bytes used; the driver drops them from its buffer.
    pub consumed: usize,
    /// Work for the driver, or `None` when the session wants more input.
    pub effect: Option<Effect>,
}

/// What the session is doing.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Reading command lines.
    Command,
    /// In an AUTH exchange, waiting for the client's answer to a `334`.
    AuthExchange {
        mechanism: Mechanism,
        exchange: Exchange,
    },
    /// In a script mechanism's exchange, waiting for the client's answer
    /// to our `334`; it becomes round `step`.
    ScriptExchange { mechanism: String, step: u32 },
    /// Waiting for [`Session::script_step_finished`] on round `step`.
    AwaitingScript { mechanism: String, step: u32 },
    /// Waiting for the driver's [`Session::scram_secrets_found`].
    AwaitingScramSecrets {
        mechanism: Mechanism,
        request: SecretsRequest,
    },
    /// Waiting for the driver's [`Session::auth_finished`]. `success_data`
    /// goes to the client in a `334` before `235` (SCRAM's `v=`).
    AwaitingAuth {
        mechanism: AuthMechanism,
        success_data: Option<Vec<u8>>,
        /// Sent in a `334` before the failure reply (RFC 7628's error JSON).
        failure_data: Option<&'static [u8]>,
    },
    /// The decision refused the client and we sent its failure data; the
    /// client's answer (empty, `^A`, or `*`) gets `reply`.
    AuthFailureAck { reply: Reply },
    /// The decision accepted the client and we sent its success data; the
    /// client's empty answer completes AUTH.
    AuthSuccessAck { identity: Identity },
    /// Reading a DATA body.
    Data(DataReceiver),
    /// Reading the `size` octets of a BDAT chunk; `refusal`, when set, is
    /// the reply the chunk gets once read (it is not kept).
    Chunk {
        chunk: Chunk,
        size: u64,
        last: bool,
        refusal: Option<Reply>,
    },
    /// Waiting for [`Session::spool_finished`].
    AwaitingSpool,
    /// Waiting for [`Session::sending_checked`] on this MAIL or RCPT.
    AwaitingSendingCheck(crate::mail::Pending),
    /// Waiting for [`Session::tls_established`].
    AwaitingTls,
    /// The connection is closing; nothing more is read.
    Closed,
}

/// The greeting name the client gave, and how.
#[derive(Debug, Clone)]
pub(crate) struct Helo {
    pub name: String,
    pub extended: bool,
}

/// One ESMTP session.
#[derive(Debug)]
pub struct Session {
    pub(crate) config: Arc<SessionConfig>,
    pub(crate) conn: ConnectionInfo,
    pub(crate) phase: Phase,
    pub(crate) framer: LineFramer,
    pub(crate) helo: Option<Helo>,
    pub(crate) tls: Option<TlsInfo>,
    pub(crate) identity: Option<Identity>,
    /// What a trusted proxy said with XCLIENT.
    pub(crate) xclient: Option<crate::xclient::Xclient>,
    pub(crate) transaction: Option<Envelope>,
    /// The chunks of the transaction so far, once it has used BDAT.
    pub(crate) bdat: Option<ChunkedBody>,
    pub(crate) unauthenticated_commands: u32,
    pub(crate) auth_failures: u32,
    pub(crate) auth_attempts: u32,
    pub(crate) invalid_commands: u32,
    /// The senders the authenticated user may use; `None`: any.
    pub(crate) sender_rule: Option<crate::SenderRule>,
    /// An effect that arose while the driver's answer to another was
    /// taken (`*_finished`): the next [`Session::feed`] returns it first.
    pub(crate) pending: Option<Effect>,
}

impl Session {
    /// Starts a session and writes the greeting. `tls` is `Some` on an
    /// implicit-TLS listener, where the handshake came before the greeting.
    pub fn new(
        config: Arc<SessionConfig>,
        conn: ConnectionInfo,
        tls: Option<TlsInfo>,
        out: &mut Vec<u8>,
    ) -> Session {
        Reply::greeting(&config.hostname).write_to(out);
        Session {
            config,
            conn,
            phase: Phase::Command,
            framer: LineFramer::new(MAX_LINE_LEN),
            helo: None,
            tls,
            identity: None,
            xclient: None,
            transaction: None,
            bdat: None,
            unauthenticated_commands: 0,
            auth_failures: 0,
            auth_attempts: 0,
            invalid_commands: 0,
            sender_rule: None,
            pending: None,
        }
    }

    /// The identity AUTH established, if any.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// What a trusted proxy said about the client with XCLIENT, if it did.
    pub fn xclient(&self) -> Option<&crate::xclient::Xclient> {
        self.xclient.as_ref()
    }

    /// Authenticated by AUTH, or vouched for by a trusted proxy's
    /// `XCLIENT LOGIN=`.
    pub(crate) fn authenticated(&self) -> bool {
        self.identity.is_some() || self.xclient.as_ref().is_some_and(|x| x.login.is_some())
    }

    /// Limits MAIL FROM to what the authenticated user owns: any other
    /// sender gets `553 5.7.1`. The driver calls this after AUTH succeeds.
    pub fn restrict_senders(&mut self, rule: crate::SenderRule) {
        self.sender_rule = Some(rule);
    }

    /// The TLS parameters, once TLS is up.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The HELO/EHLO name, once the client gave one.
    pub fn helo_name(&self) -> Option<&str> {
        self.helo.as_ref().map(|h| h.name.as_str())
    }

    /// Whether a mail transaction is under way (MAIL given, or DATA being
    /// read or stored): a stopping server lets it finish.
    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some()
            || matches!(
                self.phase,
                Phase::Data(_)
                    | Phase::Chunk { .. }
                    | Phase::AwaitingSpool
                    | Phase::AwaitingSendingCheck(_)
            )
    }

    /// Whether the session is reading message data (after `354`, or a
    /// BDAT chunk): the
    /// driver holds the client to a minimum data rate then, and to a
    /// deadline per command line otherwise.
    pub fn receiving_data(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Chunk { .. })
    }

    /// Whether a DATA body is coming in that is to be spooled if it ends
    /// well: not one read only to be thrown away as too large, and not a
    /// BDAT chunk (most chunks end no message). The driver tells the
    /// spool's writer, which may wait a little for it.
    pub fn receiving_message(&self) -> bool {
        matches!(&self.phase, Phase::Data(receiver) if !receiver.is_too_big())
    }

    /// Whether the rest of an over-long line is being thrown away: input
    /// is consumed, but no command has ended (a driver's per-line clock
    /// must not restart on it).
    pub fn discarding_line(&self) -> bool {
        self.framer.discarding()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Consumes as much of `input` as it can, appending replies to `out`.
    /// Stops at the first effect, or when no complete input is left.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        if let Some(effect) = self.pending.take() {
            return Progress {
                consumed: 0,
                effect: Some(effect),
            };
        }
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            let (used, step) = match &mut self.phase {
                Phase::Command
                | Phase::AuthExchange { .. }
                | Phase::ScriptExchange { .. }
                | Phase::AuthSuccessAck { .. }
                | Phase::AuthFailureAck { .. } => self.next_line(rest, out),
                Phase::Data(receiver) => match receiver.feed(rest) {
                    DataProgress::More { consumed } => (consumed, Step::NeedInput),
                    DataProgress::Done { consumed, outcome } => {
                        (consumed, self.message_done(outcome, out))
                    }
                },
                Phase::Chunk { chunk, refusal, .. } => {
                    let (octets, done) = chunk.feed(rest);
                    if let (None, Some(body)) = (refusal, &mut self.bdat) {
                        body.extend(octets);
                    }
                    match done {
                        true => (octets.len(), crate::bdat::chunk_done(self, out)),
                        false => (octets.len(), Step::NeedInput),
                    }
                }
                Phase::Closed => (rest.len(), Step::NeedInput),
                Phase::AwaitingAuth { .. }
                | Phase::AwaitingScript { .. }
                | Phase::AwaitingScramSecrets { .. }
                | Phase::AwaitingSpool
                | Phase::AwaitingSendingCheck(_)
                | Phase::AwaitingTls => (0, Step::NeedInput),
            };
            consumed += used;
            match step {
                Step::Continue => continue,
                Step::NeedInput => {
                    return Progress {
                        consumed,
                        effect: None,
                    }
                }
                // RFC 3207 §4: input the client sent after STARTTLS, before
                // the handshake, is discarded, never read inside TLS.
                Step::Effect(Effect::StartTls) => {
                    return Progress {
                        consumed: input.len(),
                        effect: Some(Effect::StartTls),
                    }
                }
                Step::Effect(effect) => {
                    return Progress {
                        consumed,
                        effect: Some(effect),
                    }
                }
            }
        }
    }

    /// TLS is up: RFC 3207 §4.2 says to forget everything the client said
    /// before it, the EHLO name and any identity included. An identity
    /// proved in clear (`allow_insecure_auth`) proves nothing about who is
    /// at the other end of the TLS session, so the client authenticates
    /// again; the senders it owned and what a proxy said with XCLIENT go
    /// too. The per-connection failure counts stay: they are ours.
    pub fn tls_established(&mut self, tls: TlsInfo) {
        self.tls = Some(tls);
        self.helo = None;
        self.transaction = None;
        self.bdat = None;
        self.identity = None;
        self.sender_rule = None;
        // The login a proxy vouched for is forgotten like any identity;
        // the client address it named is not client input but the
        // trusted proxy's, and counting (bans, limits) must stay on it.
        if let Some(xclient) = &mut self.xclient {
            xclient.login = None;
        }
        self.phase = Phase::Command;
    }

    /// The driver's answer to [`Effect::LookupScramSecrets`].
    pub fn scram_secrets_found(&mut self, lookup: ScramLookup, out: &mut Vec<u8>) -> Flow {
        crate::auth::scram_secrets_found(self, lookup, out)
    }

    /// The driver's answer to [`Effect::ScriptStep`].
    pub fn script_step_finished(&mut self, outcome: ScriptStepOutcome, out: &mut Vec<u8>) -> Flow {
        crate::script_auth::finished(self, outcome, out)
    }

    /// The driver's verdict on [`Effect::Authenticate`].
    pub fn auth_finished(&mut self, outcome: AuthOutcome, out: &mut Vec<u8>) -> Flow {
        crate::auth::finished(self, outcome, out)
    }

    /// What the driver does after a `*_finished` call whose handling ended
    /// in `step`: close, or go on; any other effect is kept for the next
    /// [`Session::feed`], never dropped.
    pub(crate) fn flow(&mut self, step: Step) -> Flow {
        match step {
            Step::Effect(Effect::Close) => Flow::Close,
            Step::Effect(effect) => {
                self.pending = Some(effect);
                Flow::Continue
            }
            Step::Continue | Step::NeedInput => Flow::Continue,
        }
    }

    /// The driver's result for [`Effect::Spool`].
    pub fn spool_finished(&mut self, outcome: SpoolOutcome, out: &mut Vec<u8>) {
        self.phase = Phase::Command;
        match outcome {
            SpoolOutcome::Stored { id } => Reply::queued(&id).write_to(out),
            SpoolOutcome::Failed => Reply::local_error().write_to(out),
            SpoolOutcome::Refused(reply) => reply.write_to(out),
        }
    }

    /// The driver's answer to [`Effect::CheckSending`]: `None` lets the
    /// MAIL or RCPT through, else the reply refusing it.
    pub fn sending_checked(&mut self, refusal: Option<Reply>, out: &mut Vec<u8>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Command);
        if let Phase::AwaitingSendingCheck(pending) = phase {
            crate::mail::checked(self, pending, refusal, out);
        }
    }

    /// Writes `421` and closes: used by the driver for timeouts and shutdown.
    pub fn abort(&mut self, reply: Reply, out: &mut Vec<u8>) -> Effect {
        reply.write_to(out);
        self.phase = Phase::Closed;
        Effect::Close
    }

    /// `ESMTPSA` and friends (RFC 3848), for the trace header.
    pub fn protocol(&self) -> &'static str {
        let extended = self.helo.as_ref().is_none_or(|h| h.extended);
        match (extended, self.tls.is_some(), self.authenticated()) {
            (false, _, _) => "SMTP",
            (true, true, true) => "ESMTPSA",
            (true, false, true) => "ESMTPA",
            (true, true, false) => "ESMTPS",
            (true, false, false) => "ESMTP",
        }
    }

    /// The protocol of a message for its trace header: RFC 6531 §3.7.3
    /// names an SMTPUTF8 transaction `UTF8SMTP` (with `A` and `S` as in
    /// RFC 3848), as Postfix writes it.
    fn message_protocol(&self, smtputf8: bool) -> &'static str {
        match (smtputf8, self.protocol()) {
            (true, "ESMTPSA") => "UTF8SMTPSA",
            (true, "ESMTPA") => "UTF8SMTPA",
            (true, "ESMTPS") => "UTF8SMTPS",
            (true, "ESMTP") => "UTF8SMTP",
            (_, protocol) => protocol,
        }
    }

    fn next_line(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Step) {
        match self.framer.next_frame(input) {
            Frame::Incomplete => (0, Step::NeedInput),
            Frame::Discarded { consumed } => (consumed, Step::Continue),
            Frame::TooLong { consumed } => {
                if matches!(
                    self.phase,
                    Phase::AuthExchange { .. }
                        | Phase::ScriptExchange { .. }
                        | Phase::AuthSuccessAck { .. }
                        | Phase::AuthFailureAck { .. }
                ) {
                    self.phase = Phase::Command;
                }
                Reply::line_too_long().write_to(out);
                (consumed, self.count_unauthenticated(out))
            }
            Frame::Line { line, consumed } => {
                let step = match std::mem::replace(&mut self.phase, Phase::Command) {
                    Phase::AuthExchange {
                        mechanism,
                        exchange,
                    } => crate::auth::respond(self, mechanism, exchange, line, out),
                    Phase::ScriptExchange { mechanism, step } => {
                        crate::script_auth::respond(self, mechanism, step, line, out)
                    }
                    Phase::AuthSuccessAck { identity } => {
                        crate::auth::success_acknowledged(self, identity, line, out)
                    }
                    Phase::AuthFailureAck { reply } => {
                        crate::auth::failure_acknowledged(self, reply, out)
                    }
                    _ => self.command(line, out),
                };
                (consumed, step)
            }
        }
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<u8>) -> Step {
        // AUTH is counted too, and given back when it fails (see
        // `auth::fail`): a failed AUTH has its own limit. One refused before
        // it starts, cancelled, or failing temporarily stays counted, so a
        // loop of those is still bounded.
        if let Step::Effect(close) = self.count_unauthenticated(out) {
            return Step::Effect(close);
        }
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(error) => {
                self.invalid_commands += 1;
                if self.invalid_commands > self.config.max_invalid_commands {
                    return Step::Effect(self.abort(Reply::too_many_invalid_commands(), out));
                }
                command_error_reply(&error).write_to(out);
                return Step::Continue;
            }
        };
        match command {
            Command::Ehlo(name) => self.greet(name, true, out),
            Command::Helo(name) => self.greet(name, false, out),
            Command::StartTls => return self.start_tls(out),
            Command::Auth {
                mechanism,
                initial_response,
            } => return crate::auth::start(self, &mechanism, initial_response, out),
            Command::Mail(from, params) => return crate::mail::mail(self, from, params, out),
            Command::Rcpt(to, params) => return crate::mail::rcpt(self, to, params, out),
            Command::Data => crate::mail::data(self, out),
            Command::Bdat { size, last } => crate::bdat::start(self, size, last),
            Command::Rset => {
                self.transaction = None;
                self.bdat = None;
                Reply::ok().write_to(out);
            }
            Command::Noop => Reply::ok().write_to(out),
            Command::Vrfy => Reply::cannot_verify().write_to(out),
            Command::Help => Reply::help().write_to(out),
            Command::NotImplemented => Reply::not_implemented().write_to(out),
            Command::Xclient(attributes) => return crate::xclient::xclient(self, attributes, out),
            Command::Quit => {
                Reply::closing().write_to(out);
                self.phase = Phase::Closed;
                return Step::Effect(Effect::Close);
            }
        }
        Step::Continue
    }

    /// Counts a command against the limit for sessions that must AUTH and
    /// have not; past it, `421` and close. A limit of `0` is no limit.
    fn count_unauthenticated(&mut self, out: &mut Vec<u8>) -> Step {
        let max = self.config.max_unauthenticated_commands;
        if self.config.auth != AuthPolicy::Required || self.authenticated() || max == 0 {
            return Step::Continue;
        }
        self.unauthenticated_commands = self.unauthenticated_commands.saturating_add(1);
        if self.unauthenticated_commands > max {
            return Step::Effect(self.abort(Reply::too_many_unauthenticated_commands(), out));
        }
        Step::Continue
    }

    fn greet(&mut self, name: String, extended: bool, out: &mut Vec<u8>) {
        self.transaction = None;
        self.bdat = None;
        if extended {
            self.write_ehlo(&name, out);
        } else {
            Reply::helo(&self.config.hostname).write_to(out);
        }
        self.helo = Some(Helo { name, extended });
    }

    /// The EHLO reply, written straight into `out`: every session says
    /// EHLO.
    fn write_ehlo(&self, name: &str, out: &mut Vec<u8>) {
        let mut reply = EhloReply::start(out, &self.config.hostname, name);
        reply.keyword("PIPELINING");
        let mut size = itoa::Buffer::new();
        reply.keyword_with("SIZE", [size.format(self.config.max_message_size)]);
        for keyword in [
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "CHUNKING",
            "DSN",
        ] {
            reply.keyword(keyword);
        }
        if self.config.starttls && self.tls.is_none() {
            reply.keyword("STARTTLS");
        }
        if self.auth_offered() {
            let usable = self
                .config
                .mechanisms
                .iter()
                .filter(|m| self.mechanism_usable(**m))
                .map(|m| m.name())
                .chain(self.config.script_mechanisms.iter().map(String::as_str));
            reply.keyword_with("AUTH", usable);
        }
        if self.conn.xclient_trusted {
            reply.keyword(&crate::xclient::keyword());
        }
        reply.finish("HELP");
    }

    /// AUTH is offered here and now: on this listener, under TLS (unless the
    /// operator allowed otherwise), and with at least one mechanism.
    pub(crate) fn auth_offered(&self) -> bool {
        self.config.auth != AuthPolicy::Disabled
            && (self.tls.is_some() || self.config.allow_insecure_auth)
            && !(self.config.mechanisms.is_empty() && self.config.script_mechanisms.is_empty())
    }

    /// The script mechanism called `name` (any case), if the listener has one.
    pub(crate) fn script_mechanism(&self, name: &str) -> Option<String> {
        self.config
            .script_mechanisms
            .iter()
            .find(|m| m.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// Whether `mechanism` can be used on this connection now: offered on
    /// this listener; for channel binding (-PLUS), under TLS 1.3 only;
    /// EXTERNAL only with a verified client certificate that maps to a user.
    ///
    /// -PLUS needs TLS 1.3 because a client picks its binding type itself:
    /// on TLS 1.3 clients pick `tls-exporter` (RFC 9266), which we serve; on
    /// TLS 1.2 common clients (GNU SASL) pick `tls-unique`, which rustls
    /// cannot give, and would fail with `e=unsupported-channel-binding-type`
    /// where plain SCRAM would have worked.
    pub(crate) fn mechanism_usable(&self, mechanism: Mechanism) -> bool {
        self.config.mechanisms.contains(&mechanism)
            && (!mechanism.needs_channel_binding() || self.tls_exporter_available())
            && (!mechanism.needs_client_certificate() || self.external_identity().is_some())
    }

    /// TLS 1.3 is up, so `tls-exporter` channel binding can be served.
    fn tls_exporter_available(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.channel_binding.tls_exporter.is_some())
    }

    /// The user a verified TLS client certificate maps to (EXTERNAL).
    pub(crate) fn external_identity(&self) -> Option<&str> {
        self.tls
            .as_ref()?
            .client_certificate
            .as_ref()?
            .identity
            .as_deref()
    }

    fn start_tls(&mut self, out: &mut Vec<u8>) -> Step {
        let reply = if self.tls.is_some() {
            Reply::already_tls()
        } else if !self.config.starttls {
            Reply::tls_unavailable()
        } else {
            // STARTTLS before EHLO is allowed, as Postfix allows it: RFC 3207
            // does not require a greeting first, and `gsasl --starttls`
            // relies on it. The client greets again after the handshake.
            Reply::ready_for_tls().write_to(out);
            self.phase = Phase::AwaitingTls;
            return Step::Effect(Effect::StartTls);
        };
        reply.write_to(out);
        Step::Continue
    }

    /// The message is complete (the end of DATA, or the last BDAT chunk).
    pub(crate) fn message_done(&mut self, outcome: DataOutcome, out: &mut Vec<u8>) -> Step {
        self.phase = Phase::Command;
        // Invariant: the Data phase and a kept last chunk come only with a
        // transaction.
        let Some(envelope) = self.transaction.take() else {
            Reply::need_mail().write_to(out);
            return Step::Continue;
        };
        match outcome {
            DataOutcome::TooBig { .. } => {
                Reply::message_too_big().write_to(out);
                Step::Continue
            }
            DataOutcome::Complete(data) => {
                if let Some(Err(refused)) =
                    self.sender_rule.as_ref().map(|r| r.check_message(&data))
                {
                    refused.write_to(out);
                    return Step::Continue;
                }
                self.phase = Phase::AwaitingSpool;
                Step::Effect(Effect::Spool(Box::new(Message {
                    protocol: self.message_protocol(envelope.params.smtputf8),
                    envelope,
                    data,
                    helo: self
                        .helo
                        .as_ref()
                        .map(|h| h.name.clone())
                        .unwrap_or_default(),
                    tls: self.tls.clone(),
                    identity: self.identity.clone(),
                    xclient: self.xclient.clone(),
                })))
            }
        }
    }
}

/// What a handler tells the dispatcher.
pub(crate) enum Step {
    /// Go on with the next input.
    Continue,
    /// Nothing complete left: read more.
    NeedInput,
    /// Stop and hand this to the driver.
    Effect(Effect),
}

/// The one mapping from parse errors to replies.
fn command_error_reply(error: &CommandError) -> Reply {
    match error {
        CommandError::UnknownCommand => Reply::unknown_command(),
        CommandError::Syntax(expected) => Reply::syntax_error(expected),
        CommandError::InvalidAddress => Reply::invalid_address(),
        CommandError::UnsupportedParameter(_) => Reply::unknown_parameter(),
        CommandError::TooLong => Reply::line_too_long(),
        _ => Reply::unknown_command(),
    }
}

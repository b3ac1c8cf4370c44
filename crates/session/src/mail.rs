//! The mail transaction: MAIL, RCPT and DATA (RFC 5321 §3.3).

use portcullis_proto::data::DataReceiver;
use portcullis_proto::{MailParams, Path, Reply};

use crate::config::AuthPolicy;
use crate::effect::Envelope;
use crate::session::{Phase, Session};

pub(crate) fn mail(session: &mut Session, from: Path, params: MailParams, out: &mut Vec<u8>) {
    let needs_auth = session.config.auth == AuthPolicy::Required && !session.authenticated();
    let reply = if session.helo.is_none() {
        Reply::need_ehlo()
    } else if needs_auth
        && session.tls.is_none()
        && session.config.starttls
        && !session.auth_offered()
    {
        Reply::tls_required()
    } else if needs_auth {
        Reply::auth_required()
    } else if session.transaction.is_some() {
        Reply::nested_mail()
    } else if session
        .sender_rule
        .as_ref()
        .is_some_and(|rule| !rule.allows(&from))
    {
        Reply::sender_not_owned()
    } else if params
        .size
        .is_some_and(|size| size > session.config.max_message_size as u64)
    {
        Reply::message_too_big()
    } else {
        let mut params = params;
        // RFC 4954 §5: AUTH= is trusted only from an authenticated client.
        if !session.authenticated() && params.auth.is_some() {
            params.auth = Some("<>".to_string());
        }
        session.transaction = Some(Envelope {
            mail_from: from,
            params,
            rcpt_to: Vec::new(),
        });
        Reply::sender_ok()
    };
    reply.write_to(out);
}

pub(crate) fn rcpt(session: &mut Session, to: Path, out: &mut Vec<u8>) {
    let max = session.config.max_recipients;
    let reply = match &mut session.transaction {
        None => Reply::need_mail(),
        Some(envelope) if envelope.rcpt_to.len() >= max => Reply::too_many_recipients(),
        Some(envelope) => {
            envelope.rcpt_to.push(to.as_str().to_string());
            Reply::recipient_ok()
        }
    };
    reply.write_to(out);
}

pub(crate) fn data(session: &mut Session, out: &mut Vec<u8>) {
    let reply = match &session.transaction {
        None => Reply::need_mail(),
        Some(envelope) if envelope.rcpt_to.is_empty() => Reply::need_rcpt(),
        Some(_) => {
            session.phase = Phase::Data(DataReceiver::new(session.config.max_message_size));
            Reply::start_data()
        }
    };
    reply.write_to(out);
}

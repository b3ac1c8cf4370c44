//! The mail transaction: MAIL, RCPT and DATA (RFC 5321 §3.3), with the
//! SMTPUTF8 rule for addresses (RFC 6531) and the DSN parameters
//! (RFC 3461), which are recorded here and acted on by delivery. BDAT is
//! in [`crate::bdat`].

use portcullis_proto::address::{canonical, valid_utf8_address};
use portcullis_proto::data::DataReceiver;
use portcullis_proto::{MailParams, Path, RcptParams, Reply};

use crate::config::AuthPolicy;
use crate::effect::{Effect, Envelope, SendingCheck};
use crate::session::{Phase, Session, Step};

/// A MAIL or RCPT waiting for the driver's [`crate::Effect::CheckSending`].
#[derive(Debug)]
pub(crate) enum Pending {
    Mail(Envelope),
    Rcpt(String, RcptParams),
}

/// Whether MAIL and RCPT wait for the driver's check.
fn checked_by_driver(session: &Session) -> bool {
    session.config.check_sending && session.authenticated()
}

pub(crate) fn mail(
    session: &mut Session,
    from: Path,
    params: MailParams,
    out: &mut Vec<u8>,
) -> Step {
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
        match &session.config.auth_required_message {
            Some(text) => Reply::auth_required().with_text(text.clone()),
            None => Reply::auth_required(),
        }
    } else if session.transaction.is_some() {
        Reply::nested_mail()
    } else if let Some(refused) = address_refusal(&from, params.smtputf8) {
        refused
    } else if !sender_allowed(session, &from) {
        Reply::sender_not_owned()
    } else if params
        .size
        .is_some_and(|size| size > session.config.max_message_size as u64)
    {
        Reply::message_too_big()
    } else {
        let mut params = params;
        params.auth = params
            .auth
            .map(|claimed| trusted_auth_param(session, claimed));
        let envelope = Envelope {
            mail_from: from,
            params,
            rcpt_to: Vec::new(),
            rcpt_params: Vec::new(),
        };
        session.bdat = None;
        if checked_by_driver(session) {
            let size = envelope.params.size;
            session.phase = Phase::AwaitingSendingCheck(Pending::Mail(envelope));
            return Step::Effect(Effect::CheckSending(SendingCheck::Mail { size }));
        }
        session.transaction = Some(envelope);
        Reply::sender_ok()
    };
    reply.write_to(out);
    Step::Continue
}

/// The driver answered [`crate::Effect::CheckSending`].
pub(crate) fn checked(
    session: &mut Session,
    pending: Pending,
    refusal: Option<Reply>,
    out: &mut Vec<u8>,
) {
    let reply = match (refusal, pending) {
        (Some(reply), _) => reply,
        (None, Pending::Mail(envelope)) => {
            session.transaction = Some(envelope);
            Reply::sender_ok()
        }
        (None, Pending::Rcpt(to, params)) => match &mut session.transaction {
            Some(envelope) => {
                envelope.rcpt_to.push(to);
                envelope.rcpt_params.push(params);
                Reply::recipient_ok()
            }
            None => Reply::need_mail(),
        },
    };
    reply.write_to(out);
}

/// RFC 4954 §5: the `AUTH=` mailbox says who originally submitted the
/// message, and a server records it only when it trusts the client to say
/// so; otherwise it records `<>`. We trust a client for the identities it
/// may use here: its authentication or authorization identity (or the
/// XCLIENT login) itself; with a sender rule, any address the rule lets
/// it send from; without one (no `[senders]`, so no list of what a user
/// owns), an address whose local part is the bare user name. Anything
/// else, and anything from an unauthenticated client, becomes `<>`.
fn trusted_auth_param(session: &Session, claimed: String) -> String {
    let unknown = || "<>".to_string();
    let mailbox = claimed
        .strip_prefix('<')
        .and_then(|m| m.strip_suffix('>'))
        .unwrap_or(&claimed);
    if mailbox.is_empty() || !session.authenticated() {
        return unknown();
    }
    let identity = session.identity.as_ref();
    let names = identity
        .into_iter()
        .flat_map(|i| [i.authn_id.as_str(), i.authz_id.as_str()])
        .chain(session.xclient.as_ref().and_then(|x| x.login.as_deref()));
    let mailbox_key = canonical(mailbox);
    let local_part = mailbox_key.rsplit_once('@').map(|(local, _)| local);
    let mut trusted = false;
    for name in names {
        let name = canonical(name);
        trusted |= name == mailbox_key;
        trusted |= session.sender_rule.is_none()
            && !name.contains('@')
            && local_part.is_some_and(|l| l == name);
    }
    trusted |= session
        .sender_rule
        .as_ref()
        .is_some_and(|rule| rule.allows(&Path::Mailbox(mailbox.to_string())));
    match trusted {
        true => claimed,
        false => unknown(),
    }
}

/// RFC 6531 §3.5: a non-ASCII address is refused with `553 5.6.7` in a
/// transaction that did not ask for SMTPUTF8; in one that did, it must be
/// a clean UTF-8 address (no control characters).
fn address_refusal(address: &Path, smtputf8: bool) -> Option<Reply> {
    let address = address.as_str();
    match (address.is_ascii(), smtputf8) {
        (true, _) => None,
        (false, false) => Some(Reply::non_ascii_address()),
        (false, true) if !valid_utf8_address(address) => Some(Reply::invalid_address()),
        (false, true) => None,
    }
}

pub(crate) fn rcpt(session: &mut Session, to: Path, params: RcptParams, out: &mut Vec<u8>) -> Step {
    let max = session.config.max_recipients;
    let check = checked_by_driver(session);
    let reply = match &mut session.transaction {
        None => Reply::need_mail(),
        Some(envelope) if envelope.rcpt_to.len() >= max => Reply::too_many_recipients(),
        Some(envelope) => match address_refusal(&to, envelope.params.smtputf8) {
            Some(refused) => refused,
            None if check => {
                let n = envelope.rcpt_to.len() + 1;
                let pending = Pending::Rcpt(to.as_str().to_string(), params);
                session.phase = Phase::AwaitingSendingCheck(pending);
                return Step::Effect(Effect::CheckSending(SendingCheck::Rcpt { n }));
            }
            None => {
                envelope.rcpt_to.push(to.as_str().to_string());
                envelope.rcpt_params.push(params);
                Reply::recipient_ok()
            }
        },
    };
    reply.write_to(out);
    Step::Continue
}

pub(crate) fn data(session: &mut Session, out: &mut Vec<u8>) {
    let reply = match &session.transaction {
        None => Reply::need_mail(),
        Some(envelope) if envelope.rcpt_to.is_empty() => Reply::need_rcpt(),
        Some(_) if session.bdat.is_some() => Reply::data_after_bdat(),
        Some(_) => {
            session.phase = Phase::Data(DataReceiver::new(session.config.max_message_size));
            Reply::start_data()
        }
    };
    reply.write_to(out);
}

/// The account's sender rule, if any, and the app password's own senders,
/// if the login used one that has some: both must allow `from`.
fn sender_allowed(session: &Session, from: &Path) -> bool {
    let by_account = session
        .sender_rule
        .as_ref()
        .is_none_or(|rule| rule.allows(from));
    let by_credential = session
        .identity
        .as_ref()
        .and_then(|i| i.credential.as_ref())
        .is_none_or(|c| c.allows_sender(from));
    by_account && by_credential
}

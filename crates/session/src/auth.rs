//! AUTH (RFC 4954): starting an exchange, relaying `334` challenges, and
//! taking the driver's verdict. Every refusal path of the RFC is here, in
//! the order a reader would check them.

use portcullis_proto::Reply;
use portcullis_sasl::framing::{self, Response};
use portcullis_sasl::{Exchange, Mechanism, SaslError, Step as SaslStep};

use crate::config::AuthPolicy;
use crate::effect::{AuthOutcome, Effect, Identity};
use crate::session::{Phase, Session, Step};

/// `AUTH mechanism [initial-response]`.
pub(crate) fn start(
    session: &mut Session,
    mechanism: &str,
    initial_response: Option<Vec<u8>>,
    out: &mut Vec<u8>,
) -> Step {
    let refusal = if session.config.auth == AuthPolicy::Disabled {
        Some(Reply::auth_not_offered())
    } else if session.helo.is_none() {
        Some(Reply::need_ehlo())
    } else if session.identity.is_some() {
        Some(Reply::already_authenticated())
    } else if session.transaction.is_some() {
        Some(Reply::auth_in_transaction())
    } else if !session.auth_offered() && session.tls.is_none() {
        // RFC 4954 §4: 538. The initial response, if any, is never decoded.
        Some(Reply::encryption_required())
    } else {
        None
    };
    if let Some(reply) = refusal {
        reply.write_to(out);
        return Step::Continue;
    }
    let Some(mechanism) =
        Mechanism::from_name(mechanism).filter(|m| session.config.mechanisms.contains(m))
    else {
        Reply::unknown_mechanism().write_to(out);
        return Step::Continue;
    };
    let initial_response = match initial_response.map(|ir| framing::decode_initial_response(&ir)) {
        None => None,
        Some(Ok(decoded)) => Some(decoded),
        Some(Err(_)) => return fail(session, Reply::invalid_base64(), out),
    };
    session.auth_attempts += 1;
    let challenge = format!(
        "<{}.{}@{}>",
        session.conn.session_id, session.auth_attempts, session.config.hostname
    );
    advance(
        session,
        mechanism,
        Exchange::start(mechanism, initial_response, &challenge),
        out,
    )
}

/// A response line to our `334`.
pub(crate) fn respond(
    session: &mut Session,
    mechanism: Mechanism,
    exchange: Exchange,
    line: &[u8],
    out: &mut Vec<u8>,
) -> Step {
    match framing::decode_continuation(line) {
        Ok(Response::Cancel) => {
            Reply::auth_cancelled().write_to(out);
            Step::Continue
        }
        Ok(Response::Data(data)) => advance(session, mechanism, exchange.respond(data), out),
        Err(_) => fail(session, Reply::invalid_base64(), out),
    }
}

fn advance(
    session: &mut Session,
    mechanism: Mechanism,
    step: Result<SaslStep, SaslError>,
    out: &mut Vec<u8>,
) -> Step {
    match step {
        Ok(SaslStep::Challenge(exchange, challenge)) => {
            Reply::auth_challenge(framing::encode_challenge(&challenge)).write_to(out);
            session.phase = Phase::AuthExchange {
                mechanism,
                exchange,
            };
            Step::Continue
        }
        Ok(SaslStep::Done(credentials)) => {
            session.phase = Phase::AwaitingAuth { mechanism };
            Step::Effect(Effect::Authenticate {
                mechanism,
                credentials,
            })
        }
        Err(SaslError::InitialResponseNotAllowed) => {
            fail(session, Reply::initial_response_not_allowed(), out)
        }
        Err(_) => fail(session, Reply::malformed_auth_data(), out),
    }
}

/// The verdict from the driver.
pub(crate) fn finished(
    session: &mut Session,
    outcome: AuthOutcome,
    out: &mut Vec<u8>,
) -> Option<Effect> {
    let Phase::AwaitingAuth { mechanism } = std::mem::replace(&mut session.phase, Phase::Command)
    else {
        // Invariant: only called after Effect::Authenticate.
        return None;
    };
    match outcome {
        AuthOutcome::Accepted { authn_id, authz_id } => {
            session.identity = Some(Identity {
                authn_id,
                authz_id,
                mechanism,
            });
            Reply::auth_succeeded().write_to(out);
            None
        }
        AuthOutcome::Rejected { reply } => {
            match fail(session, reply.unwrap_or_else(Reply::auth_failed), out) {
                Step::Effect(effect) => Some(effect),
                _ => None,
            }
        }
        AuthOutcome::TemporaryFailure { reply } => {
            reply
                .unwrap_or_else(Reply::auth_temporary_failure)
                .write_to(out);
            None
        }
        AuthOutcome::Disconnect { reply } => Some(session.abort(reply, out)),
    }
}

/// Answers a failed attempt; past the per-connection limit, `421` and close.
fn fail(session: &mut Session, reply: Reply, out: &mut Vec<u8>) -> Step {
    session.phase = Phase::Command;
    reply.write_to(out);
    session.auth_failures += 1;
    if session.auth_failures >= session.config.max_auth_failures {
        return Step::Effect(session.abort(Reply::too_many_auth_failures(), out));
    }
    Step::Continue
}

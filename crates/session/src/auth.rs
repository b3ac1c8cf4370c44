//! AUTH (RFC 4954): starting an exchange, relaying `334` challenges, and
//! taking the driver's verdict. Every refusal path of the RFC is here, in
//! the order a reader would check them.

use portcullis_proto::Reply;
use portcullis_sasl::framing::{self, Response};
use portcullis_sasl::{Exchange, Mechanism, SaslError, StartContext, Step as SaslStep};

use crate::config::AuthPolicy;
use crate::effect::{AuthOutcome, Effect, Flow, Identity, ScramLookup};
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
    } else if session.authenticated() {
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
    if let Some(name) = session.script_mechanism(mechanism) {
        return crate::script_auth::start(session, name, initial_response, out);
    }
    let Some(mechanism) = Mechanism::from_name(mechanism).filter(|m| session.mechanism_usable(*m))
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
    // CRAM-MD5's challenge (RFC 2195): unique per attempt. Only it uses
    // one, so no other mechanism pays for writing it.
    let challenge = if mechanism == Mechanism::CramMd5 {
        format!(
            "<{}.{}@{}>",
            session.conn.session_id, session.auth_attempts, session.config.hostname
        )
    } else {
        String::new()
    };
    let context = StartContext {
        unique_challenge: &challenge,
        channel_binding: session.tls.as_ref().map(|tls| &tls.channel_binding),
        plus_offered: mechanism
            .plus_variant()
            .is_some_and(|plus| session.mechanism_usable(plus)),
        external_identity: session.external_identity(),
    };
    let step = Exchange::start_with(mechanism, initial_response, &context);
    advance(session, mechanism, step, out)
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
            // The one place names are canonicalised (see `UsernameProfile`).
            let credentials = credentials.canonicalized(session.config.username_profile);
            session.phase = Phase::AwaitingAuth {
                mechanism: mechanism.into(),
                success_data: credentials.success_data().map(<[u8]>::to_vec),
                failure_data: credentials.failure_data(),
            };
            Step::Effect(Effect::Authenticate {
                mechanism,
                credentials,
            })
        }
        Ok(SaslStep::NeedSecrets(request)) => {
            let effect = Effect::LookupScramSecrets {
                authcid: session.config.username_profile.canonical(request.authcid()),
                hash: request.hash(),
            };
            session.phase = Phase::AwaitingScramSecrets { mechanism, request };
            Step::Effect(effect)
        }
        Err(SaslError::InitialResponseNotAllowed) => {
            fail(session, Reply::initial_response_not_allowed(), out)
        }
        Err(SaslError::Refused(_)) => fail(session, Reply::auth_failed(), out),
        Err(SaslError::TooLong) => fail(session, Reply::auth_exchange_too_long(), out),
        Err(_) => fail(session, Reply::malformed_auth_data(), out),
    }
}

/// The verdict from the driver.
pub(crate) fn finished(session: &mut Session, outcome: AuthOutcome, out: &mut Vec<u8>) -> Flow {
    let Phase::AwaitingAuth {
        mechanism,
        success_data,
        failure_data,
    } = std::mem::replace(&mut session.phase, Phase::Command)
    else {
        // Invariant: only called after Effect::Authenticate.
        return Flow::Continue;
    };
    match outcome {
        AuthOutcome::Accepted {
            authn_id,
            authz_id,
            credential,
        } => {
            let identity = Identity {
                authn_id,
                authz_id,
                mechanism,
                credential,
            };
            match success_data {
                Some(data) => {
                    Reply::auth_challenge(framing::encode_challenge(&data)).write_to(out);
                    session.phase = Phase::AuthSuccessAck { identity };
                }
                None => {
                    session.identity = Some(identity);
                    Reply::auth_succeeded().write_to(out);
                }
            }
            Flow::Continue
        }
        AuthOutcome::Rejected { reply, challenge } => {
            let reply = reply.unwrap_or_else(Reply::auth_failed);
            if let Some(default) = failure_data {
                let data = challenge.as_deref().unwrap_or(default);
                // RFC 7628 §3.2.2: the error goes out as a challenge; the
                // failure reply follows the client's acknowledgement.
                Reply::auth_challenge(framing::encode_challenge(data)).write_to(out);
                session.phase = Phase::AuthFailureAck { reply };
                return Flow::Continue;
            }
            let step = fail(session, reply, out);
            session.flow(step)
        }
        AuthOutcome::TemporaryFailure { reply } => {
            reply
                .unwrap_or_else(Reply::auth_temporary_failure)
                .write_to(out);
            Flow::Continue
        }
        AuthOutcome::Disconnect { reply } => {
            let close = session.abort(reply, out);
            session.flow(Step::Effect(close))
        }
    }
}

/// The driver's answer to [`Effect::LookupScramSecrets`]: send the
/// server-first message, or `454` if the store is down.
pub(crate) fn scram_secrets_found(
    session: &mut Session,
    lookup: ScramLookup,
    out: &mut Vec<u8>,
) -> Flow {
    let Phase::AwaitingScramSecrets { mechanism, request } =
        std::mem::replace(&mut session.phase, Phase::Command)
    else {
        // Invariant: only called after Effect::LookupScramSecrets.
        return Flow::Continue;
    };
    match lookup {
        ScramLookup::Found { secrets, nonce } => {
            let nonce = framing::encode_challenge(&nonce);
            let step = advance(session, mechanism, request.resume(secrets, &nonce), out);
            session.flow(step)
        }
        ScramLookup::Unavailable => {
            Reply::auth_temporary_failure().write_to(out);
            Flow::Continue
        }
    }
}

/// The client's answer to the success data (RFC 4954 §4: an empty line).
pub(crate) fn success_acknowledged(
    session: &mut Session,
    identity: Identity,
    line: &[u8],
    out: &mut Vec<u8>,
) -> Step {
    match line {
        b"" => {
            session.identity = Some(identity);
            Reply::auth_succeeded().write_to(out);
            Step::Continue
        }
        b"*" => {
            Reply::auth_cancelled().write_to(out);
            Step::Continue
        }
        _ => fail(session, Reply::malformed_auth_data(), out),
    }
}

/// The client acknowledged the failure data (with anything, `*` included):
/// now the failure reply, counted like any failed attempt.
pub(crate) fn failure_acknowledged(session: &mut Session, reply: Reply, out: &mut Vec<u8>) -> Step {
    fail(session, reply, out)
}

/// Answers a failed attempt; past the per-connection limit, `421` and close.
/// The attempt is counted here, so the AUTH command that started it is
/// given back to the unauthenticated-command budget: many failed AUTHs end
/// at `max_auth_failures`, never earlier at that other limit.
pub(crate) fn fail(session: &mut Session, reply: Reply, out: &mut Vec<u8>) -> Step {
    session.phase = Phase::Command;
    reply.write_to(out);
    session.unauthenticated_commands = session.unauthenticated_commands.saturating_sub(1);
    session.auth_failures += 1;
    if session.auth_failures >= session.config.max_auth_failures {
        return Step::Effect(session.abort(Reply::too_many_auth_failures(), out));
    }
    Step::Continue
}

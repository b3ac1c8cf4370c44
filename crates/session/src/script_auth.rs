//! AUTH with a mechanism the policy script implements (e.g. a one-time
//! code). The session knows nothing of what the rounds mean: it relays
//! each decoded answer to the driver as [`Effect::ScriptStep`], sends the
//! driver's challenge in a `334`, and ends like any other exchange once
//! the driver reports a verdict. What it does own are the SMTP rules: the
//! base64 framing, `*` to cancel, the 12 288-octet bound on an answer (the
//! line framer's), and a bound on the number of rounds, so a script that
//! keeps asking cannot hold a client in AUTH forever.

use portcullis_proto::Reply;
use portcullis_sasl::framing::{self, Response};
use portcullis_sasl::Secret;

use crate::effect::{AuthMechanism, Effect, Flow, ScriptStepOutcome};
use crate::session::{Phase, Session, Step};

/// Most rounds (calls to the script) one exchange may take; a challenge
/// asked for in the last one fails the attempt.
pub const MAX_SCRIPT_ROUNDS: u32 = 10;

/// `AUTH X-NAME [initial-response]`: round 1.
pub(crate) fn start(
    session: &mut Session,
    mechanism: String,
    initial_response: Option<Vec<u8>>,
    out: &mut Vec<u8>,
) -> Step {
    let response = match initial_response.map(|ir| framing::decode_initial_response(&ir)) {
        None => None,
        Some(Ok(decoded)) => Some(Secret::new(decoded)),
        Some(Err(_)) => return crate::auth::fail(session, Reply::invalid_base64(), out),
    };
    session.auth_attempts += 1;
    round(session, mechanism, 1, response)
}

/// The client's answer to our `334`.
pub(crate) fn respond(
    session: &mut Session,
    mechanism: String,
    step: u32,
    line: &[u8],
    out: &mut Vec<u8>,
) -> Step {
    match framing::decode_continuation(line) {
        Ok(Response::Cancel) => {
            Reply::auth_cancelled().write_to(out);
            Step::Continue
        }
        Ok(Response::Data(data)) => round(session, mechanism, step, Some(Secret::new(data))),
        Err(_) => crate::auth::fail(session, Reply::invalid_base64(), out),
    }
}

fn round(session: &mut Session, mechanism: String, step: u32, response: Option<Secret>) -> Step {
    session.phase = Phase::AwaitingScript {
        mechanism: mechanism.clone(),
        step,
    };
    Step::Effect(Effect::ScriptStep {
        mechanism,
        step,
        response,
    })
}

/// The driver's answer for one round.
pub(crate) fn finished(
    session: &mut Session,
    outcome: ScriptStepOutcome,
    out: &mut Vec<u8>,
) -> Flow {
    let Phase::AwaitingScript { mechanism, step } =
        std::mem::replace(&mut session.phase, Phase::Command)
    else {
        // Invariant: only called after Effect::ScriptStep.
        return Flow::Continue;
    };
    match outcome {
        ScriptStepOutcome::Challenge(_) if step >= MAX_SCRIPT_ROUNDS => {
            let step = crate::auth::fail(session, Reply::auth_failed(), out);
            session.flow(step)
        }
        ScriptStepOutcome::Challenge(challenge) => {
            Reply::auth_challenge(framing::encode_challenge(&challenge)).write_to(out);
            session.phase = Phase::ScriptExchange {
                mechanism,
                step: step + 1,
            };
            Flow::Continue
        }
        ScriptStepOutcome::Finished(verdict) => {
            session.phase = Phase::AwaitingAuth {
                mechanism: AuthMechanism::Script(mechanism),
                success_data: None,
                failure_data: None,
            };
            crate::auth::finished(session, verdict, out)
        }
    }
}

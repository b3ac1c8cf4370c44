//! Any bytes into a session over TLS, split at a fuzzer-chosen point, with
//! every effect answered: the session never panics and never consumes more
//! than it was given.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use portcullis_session::{
    AuthOutcome, ConnectionInfo, Effect, Flow, ScramLookup, ScriptStepOutcome, Session, SessionConfig,
    SpoolOutcome, TlsInfo,
};

fuzz_target!(|input: &[u8]| {
    let tls = TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "x".into(),
        channel_binding: portcullis_sasl::ChannelBinding {
            tls_exporter: Some(vec![1; 32]),
            tls_server_end_point: Some(vec![2; 32]),
        },
        client_certificate: None,
    };
    let conn = ConnectionInfo {
        client_ip: "192.0.2.1".into(),
        session_id: "f".into(),
        xclient_trusted: true,
    };
    let mut config = SessionConfig::new("fuzz");
    config.max_message_size = 4096;
    config.mechanisms = portcullis_sasl::Mechanism::ALL.to_vec();
    config.check_sending = true;
    let mut out = Vec::new();
    let mut session = Session::new(Arc::new(config), conn, Some(tls.clone()), &mut out);
    let split = input.first().map_or(0, |&b| b as usize).min(input.len());
    let mut pending = input[..split].to_vec();
    let mut later = input[split..].to_vec();
    for _ in 0..10_000 {
        let progress = session.feed(&pending, &mut out);
        assert!(progress.consumed <= pending.len());
        pending.drain(..progress.consumed);
        match progress.effect {
            None if later.is_empty() => break,
            None => pending.append(&mut later),
            Some(Effect::StartTls) => session.tls_established(tls.clone()),
            Some(Effect::Authenticate { credentials, .. }) => {
                let outcome = if credentials.authcid().len() % 2 == 0 {
                    AuthOutcome::Accepted {
                        authn_id: credentials.authcid().into(),
                        authz_id: credentials.authcid().into(),
                        credential: None,
                    }
                } else {
                    AuthOutcome::Rejected { reply: None, challenge: None }
                };
                if matches!(session.auth_finished(outcome, &mut out), Flow::Close) {
                    break;
                }
            }
            Some(Effect::LookupScramSecrets { hash, .. }) => {
                let secrets =
                    portcullis_sasl::ScramSecrets::derive(hash, b"pencil", vec![1; 16], 1)
                        .expect("ASCII passwords pass SASLprep");
                let lookup = ScramLookup::Found {
                    secrets,
                    nonce: [3; 18],
                };
                if matches!(session.scram_secrets_found(lookup, &mut out), Flow::Close) {
                    break;
                }
            }
            Some(Effect::ScriptStep { step, .. }) => {
                // Two challenge rounds, then a verdict: the script path.
                let outcome = match step {
                    0 | 1 => ScriptStepOutcome::Challenge(b"code?".to_vec()),
                    _ => ScriptStepOutcome::Finished(AuthOutcome::Rejected { reply: None, challenge: None }),
                };
                if matches!(session.script_step_finished(outcome, &mut out), Flow::Close) {
                    break;
                }
            }
            Some(Effect::Spool(_)) => {
                session.spool_finished(SpoolOutcome::Stored { id: "id".into() }, &mut out)
            }
            Some(Effect::XclientLogin { .. }) => {}
            Some(Effect::CheckSending(_)) => {
                // Alternate: let one through, refuse the next.
                let refusal = (out.len() % 2 == 1).then(portcullis_proto::Reply::sending_limit);
                session.sending_checked(refusal, &mut out)
            }
            Some(Effect::Close) => break,
        }
        out.clear();
    }
});

//! Mechanisms the policy script implements: advertised under TLS after
//! ours, rounds relayed as `ScriptStep` effects, bounded in number.

use super::*;

fn with_otp(tls_info: Option<TlsInfo>) -> Harness {
    let mut config = SessionConfig::new("mx.test");
    config.script_mechanisms = vec!["X-OTP".into()];
    let mut h = Harness::with(config, tls_info);
    h.take();
    h
}

/// Sends `input`; expects round `step` with `response`.
fn expect_round(h: &mut Harness, input: &str, step: u32, response: Option<&[u8]>) {
    let (replies, effect) = h.send(input);
    assert_eq!(replies, "");
    match effect {
        Some(Effect::ScriptStep {
            mechanism,
            step: s,
            response: r,
        }) => {
            assert_eq!((mechanism.as_str(), s), ("X-OTP", step));
            assert_eq!(r.as_ref().map(|r| r.expose()), response);
        }
        other => panic!("expected ScriptStep, got {other:?}"),
    }
}

fn challenge(h: &mut Harness, text: &[u8]) -> String {
    let effect = h
        .session
        .script_step_finished(ScriptStepOutcome::Challenge(text.to_vec()), &mut h.out);
    assert_eq!(effect, Flow::Continue);
    h.take()
}

#[test]
fn script_mechanisms_are_advertised_after_ours_and_only_under_tls() {
    let mut h = with_otp(None);
    assert!(!h.replies("EHLO c\r\n").contains("AUTH"));
    assert_eq!(h.codes("AUTH X-OTP\r\n"), ["538 5.7.11"]);
    let mut h = with_otp(Some(tls()));
    assert!(h
        .replies("EHLO c\r\n")
        .contains("250-AUTH PLAIN LOGIN X-OTP\r\n"));
}

#[test]
fn two_rounds_then_accepted() {
    let mut h = with_otp(Some(tls()));
    h.replies("EHLO c\r\n");
    expect_round(&mut h, "auth x-otp\r\n", 1, None);
    assert_eq!(challenge(&mut h, b"user?"), "334 dXNlcj8=\r\n");
    expect_round(&mut h, "ZG9yYQ==\r\n", 2, Some(b"dora"));
    assert_eq!(challenge(&mut h, b"code?"), "334 Y29kZT8=\r\n");
    expect_round(&mut h, "MTIzNDU2\r\n", 3, Some(b"123456"));
    let accepted = AuthOutcome::Accepted {
        authn_id: "dora".into(),
        authz_id: "dora".into(),
    };
    let _ = h
        .session
        .script_step_finished(ScriptStepOutcome::Finished(accepted), &mut h.out);
    assert!(h.take().starts_with("235 2.7.0"));
    let identity = h.session.identity().unwrap();
    assert_eq!(identity.mechanism, AuthMechanism::Script("X-OTP".into()));
    assert_eq!(
        (identity.authn_id.as_str(), identity.mechanism.name()),
        ("dora", "X-OTP")
    );
    assert_eq!(h.codes("MAIL FROM:<dora@example.test>\r\n"), ["250 2.1.0"]);
}

#[test]
fn initial_response_rejection_and_cancel() {
    let mut h = with_otp(Some(tls()));
    h.replies("EHLO c\r\n");
    expect_round(&mut h, "AUTH X-OTP ZG9yYQ==\r\n", 1, Some(b"dora"));
    let rejected = AuthOutcome::Rejected { reply: None };
    let _ = h
        .session
        .script_step_finished(ScriptStepOutcome::Finished(rejected), &mut h.out);
    assert_eq!(h.take(), "535 5.7.8 Authentication credentials invalid\r\n");
    assert!(h.session.identity().is_none());
    expect_round(&mut h, "AUTH X-OTP\r\n", 1, None);
    challenge(&mut h, b"code?");
    assert_eq!(h.codes("*\r\n"), ["501 5.7.0"]);
    assert_eq!(
        h.codes("NOOP\r\n"),
        ["250 2.0.0"],
        "back to commands after a cancel"
    );
}

#[test]
fn rounds_are_bounded() {
    let mut h = with_otp(Some(tls()));
    h.replies("EHLO c\r\n");
    expect_round(&mut h, "AUTH X-OTP\r\n", 1, None);
    for step in 2..=MAX_SCRIPT_ROUNDS {
        assert!(challenge(&mut h, b"more").starts_with("334 "));
        expect_round(&mut h, "eA==\r\n", step, Some(b"x"));
    }
    assert!(challenge(&mut h, b"more").starts_with("535 5.7.8"));
    assert_eq!(h.codes("NOOP\r\n"), ["250 2.0.0"]);
}

#[test]
fn an_overlong_answer_ends_the_exchange() {
    let mut h = with_otp(Some(tls()));
    h.replies("EHLO c\r\n");
    expect_round(&mut h, "AUTH X-OTP\r\n", 1, None);
    challenge(&mut h, b"code?");
    let long = format!("{}\r\n", "A".repeat(13_000));
    assert_eq!(h.codes(&long), ["500 5.5.6"]);
    assert_eq!(h.codes("NOOP\r\n"), ["250 2.0.0"]);
}

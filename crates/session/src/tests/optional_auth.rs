//! Nodemailer smtp-server's AUTH behaviours: `authOptional`, a custom
//! `authRequiredMessage`, and an unauthenticated-command limit that leaves
//! failed AUTHs to their own limit.

use super::*;
use crate::SenderRule;

fn optional() -> Harness {
    let mut config = SessionConfig::new("mx.test");
    config.auth = AuthPolicy::Optional;
    Harness::with(config, Some(tls()))
}

fn spool(h: &mut Harness, from: &str) -> Box<Message> {
    let codes = h.codes(&format!(
        "MAIL FROM:<{from}>\r\nRCPT TO:<r@x.test>\r\nDATA\r\n"
    ));
    assert_eq!(codes, ["250 2.1.0", "250 2.1.5", "354"]);
    let (_, effect) = h.send("Subject: s\r\n\r\nhi\r\n.\r\n");
    let Some(Effect::Spool(message)) = effect else {
        panic!("expected Spool, got {effect:?}");
    };
    message
}

#[test]
fn optional_auth_offers_auth_and_takes_mail_without_it() {
    let mut h = optional();
    h.take();
    assert!(h.replies("EHLO c\r\n").contains("250-AUTH PLAIN LOGIN\r\n"));
    let message = spool(&mut h, "anyone@example.com");
    assert!(message.identity.is_none());
    assert_eq!(message.protocol, "ESMTPS");
}

#[test]
fn optional_auth_offers_auth_only_under_tls() {
    let mut config = SessionConfig::new("mx.test");
    config.auth = AuthPolicy::Optional;
    let mut h = Harness::with(config, None);
    h.take();
    assert!(!h.replies("EHLO c\r\n").contains("AUTH"));
    assert_eq!(h.codes("AUTH PLAIN AHVzZXIAcGFzcw==\r\n"), ["538 5.7.11"]);
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["250 2.1.0"]);
}

#[test]
fn optional_auth_records_the_identity_of_a_session_that_authenticates() {
    let mut h = optional();
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("alice");
    let message = spool(&mut h, "alice@example.com");
    assert_eq!(message.identity.unwrap().authn_id, "alice");
    assert_eq!(message.protocol, "ESMTPSA");
}

#[test]
fn optional_auth_applies_sender_rules_to_authenticated_sessions_only() {
    let mut h = optional();
    h.take();
    h.replies("EHLO c\r\n");
    assert_eq!(h.codes("MAIL FROM:<bob@example.com>\r\n"), ["250 2.1.0"]);
    h.replies("RSET\r\n");
    h.authenticate("alice");
    h.session
        .restrict_senders(SenderRule::new(["alice@example.com"]));
    assert_eq!(h.codes("MAIL FROM:<bob@example.com>\r\n"), ["553 5.7.1"]);
}

#[test]
fn optional_auth_does_not_trust_auth_param_without_auth() {
    let mut h = optional();
    h.take();
    h.replies("EHLO c\r\n");
    h.replies("MAIL FROM:<a@example.com> AUTH=ceo@example.com\r\nRCPT TO:<r@x.test>\r\nDATA\r\n");
    let (_, effect) = h.send("hi\r\n.\r\n");
    let Some(Effect::Spool(message)) = effect else {
        panic!("expected Spool, got {effect:?}");
    };
    assert_eq!(message.envelope.params.auth.as_deref(), Some("<>"));
}

#[test]
fn optional_auth_is_not_held_to_the_unauthenticated_command_limit() {
    let mut config = SessionConfig::new("mx.test");
    config.auth = AuthPolicy::Optional;
    config.max_unauthenticated_commands = 2;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    assert_eq!(h.replies(&"NOOP\r\n".repeat(5)).lines().count(), 5);
}

#[test]
fn failed_auth_still_counts_against_max_auth_failures_when_optional() {
    let mut config = SessionConfig::new("mx.test");
    config.auth = AuthPolicy::Optional;
    config.max_auth_failures = 1;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    let (replies, effect) = h.send("AUTH PLAIN !!!\r\n");
    assert!(replies.contains("421 4.7.0"), "{replies}");
    assert!(matches!(effect, Some(Effect::Close)));
}

#[test]
fn custom_auth_required_text_keeps_530_5_7_0() {
    let mut config = SessionConfig::new("mx.test");
    config.auth_required_message = Some("Please authenticate before sending mail".into());
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    assert_eq!(
        h.replies("MAIL FROM:<a@b>\r\n"),
        "530 5.7.0 Please authenticate before sending mail\r\n"
    );
}

#[test]
fn custom_auth_required_text_leaves_the_starttls_530_alone() {
    let mut config = SessionConfig::new("mx.test");
    config.auth_required_message = Some("Please authenticate".into());
    let mut h = Harness::with(config, None);
    h.take();
    h.replies("EHLO c\r\n");
    assert_eq!(
        h.replies("MAIL FROM:<a@b>\r\n"),
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
}

/// Fails one AUTH PLAIN attempt: the driver rejects the credentials.
fn fail_once(h: &mut Harness) -> Flow {
    let (_, effect) = h.send("AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n");
    assert!(matches!(effect, Some(Effect::Authenticate { .. })));
    h.session
        .auth_finished(AuthOutcome::Rejected { reply: None }, &mut h.out)
}

#[test]
fn failed_auths_below_max_auth_failures_do_not_trip_the_unauthenticated_limit() {
    let mut config = SessionConfig::new("mx.test");
    config.max_unauthenticated_commands = 3;
    config.max_auth_failures = 10;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    for attempt in 1..10 {
        assert_eq!(
            fail_once(&mut h),
            Flow::Continue,
            "closed at attempt {attempt}"
        );
        assert!(h.take().starts_with("535 5.7.8"));
    }
    // The failed-AUTH limit is unchanged: the tenth failure closes.
    assert_eq!(fail_once(&mut h), Flow::Close);
    assert!(h.take().contains("421 4.7.0"));
}

#[test]
fn failed_auths_leave_the_budget_to_other_commands() {
    let mut config = SessionConfig::new("mx.test");
    config.max_unauthenticated_commands = 3;
    config.max_auth_failures = 10;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    for _ in 0..5 {
        assert_eq!(fail_once(&mut h), Flow::Continue);
        h.take();
    }
    assert_eq!(h.codes("NOOP\r\nNOOP\r\n"), ["250 2.0.0", "250 2.0.0"]);
    let (replies, effect) = h.send("NOOP\r\n");
    assert!(replies.starts_with("421 4.7.0"), "{replies}");
    assert!(matches!(effect, Some(Effect::Close)));
}

#[test]
fn cancelled_auths_still_count_as_unauthenticated_commands() {
    let mut config = SessionConfig::new("mx.test");
    config.max_unauthenticated_commands = 3;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    assert_eq!(h.codes("AUTH LOGIN\r\n*\r\n"), ["334", "501 5.7.0"]);
    assert_eq!(h.codes("AUTH NOSUCH\r\n"), ["504 5.5.4"]);
    let (replies, effect) = h.send("AUTH LOGIN\r\n");
    assert!(replies.starts_with("421 4.7.0"), "{replies}");
    assert!(matches!(effect, Some(Effect::Close)));
}

#[test]
fn zero_switches_the_unauthenticated_command_limit_off() {
    let mut config = SessionConfig::new("mx.test");
    config.max_unauthenticated_commands = 0;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    assert_eq!(h.replies(&"NOOP\r\n".repeat(50)).lines().count(), 50);
    h.replies("EHLO c\r\n");
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["530 5.7.0"]);
}

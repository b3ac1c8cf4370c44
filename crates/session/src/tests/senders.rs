//! Sender authorization at MAIL FROM, and RFC 4954 §5 `AUTH=` trust.

use portcullis_proto::Path;

use super::*;
use crate::SenderRule;

#[test]
fn sender_rule_entries() {
    let rule = SenderRule::new(["alice@example.com", "@sales.example.com", "team", ""]);
    let path = |a: &str| Path::Mailbox(a.to_string());
    assert!(rule.allows(&path("alice@example.com")));
    assert!(rule.allows(&path("Alice@Example.COM")), "case-insensitive");
    assert!(rule.allows(&path("anyone@sales.example.com")));
    assert!(!rule.allows(&path("bob@example.com")));
    assert!(!rule.allows(&path("alice@example.com.evil")));
    assert!(!rule.allows(&path("team")));
    assert!(rule.allows(&Path::Null), "bounces name no one");
    assert!(SenderRule::new(["*"]).allows(&path("ceo@anywhere.test")));
    assert!(!SenderRule::default().allows(&path("x@y.z")));
}

#[test]
fn mail_from_an_address_the_user_does_not_own_gets_553() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("alice");
    h.session
        .restrict_senders(SenderRule::new(["alice@example.com"]));
    assert_eq!(h.codes("MAIL FROM:<bob@example.com>\r\n"), ["553 5.7.1"]);
    assert_eq!(h.codes("MAIL FROM:<alice@example.com>\r\n"), ["250 2.1.0"]);
}

#[test]
fn auth_param_from_an_unauthenticated_client_is_not_trusted() {
    let mut config = SessionConfig::new("mx.test");
    config.auth = AuthPolicy::Disabled;
    config.starttls = false;
    let mut h = Harness::with(config, None);
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
fn from_header_the_user_does_not_own_gets_550_and_is_not_spooled() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("alice");
    let rule = SenderRule::new(["alice@example.com"]).checking_from_header();
    h.session.restrict_senders(rule);
    let body = |from: &str| {
        format!("MAIL FROM:<alice@example.com>\r\nRCPT TO:<r@x.test>\r\nDATA\r\nFrom: {from}\r\nSubject: s\r\n\r\nhi\r\n.\r\n")
    };
    let (replies, effect) = h.send(&body("\"Boss\" <ceo@example.com>"));
    assert!(
        replies.ends_with("550 5.7.1 From: header address not owned by the authenticated user\r\n"),
        "{replies}"
    );
    assert!(effect.is_none(), "nothing to spool");
    let (_, effect) = h.send(&body("Alice <ALICE@example.com>"));
    assert!(matches!(effect, Some(Effect::Spool(_))));
}

#[test]
fn a_second_from_header_gets_550_even_spelled_with_a_space() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("alice");
    let rule = SenderRule::new(["alice@example.com"]).checking_from_header();
    h.session.restrict_senders(rule);
    let body = |headers: &str| {
        format!("MAIL FROM:<alice@example.com>\r\nRCPT TO:<r@x.test>\r\nDATA\r\n{headers}Subject: s\r\n\r\nhi\r\n.\r\n")
    };
    for headers in [
        "From: <alice@example.com>\r\nFrom : <ceo@example.com>\r\n",
        "From\t: <ceo@example.com>\r\nFrom: <alice@example.com>\r\n",
        "From: <alice@example.com>\r\nfrom: <alice@example.com>\r\n",
        "",
    ] {
        let (replies, effect) = h.send(&body(headers));
        assert!(
            replies.ends_with("550 5.7.1 Exactly one From: header is required\r\n"),
            "{headers:?}: {replies}"
        );
        assert!(effect.is_none(), "{headers:?}: nothing to spool");
    }
    let (replies, effect) = h.send(&body("From : <ceo@example.com>\r\n"));
    assert!(
        replies.ends_with("550 5.7.1 From: header address not owned by the authenticated user\r\n"),
        "{replies}"
    );
    assert!(effect.is_none());
}

/// The `AUTH=` value recorded for a transaction from `user` (with `rule`).
fn recorded_auth_param(user: &str, rule: Option<SenderRule>, param: &str) -> Option<String> {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate(user);
    if let Some(rule) = rule {
        h.session.restrict_senders(rule);
    }
    h.replies(&format!(
        "MAIL FROM:<{user}@example.com> AUTH={param}\r\nRCPT TO:<r@x.test>\r\nDATA\r\n"
    ));
    let (_, effect) = h.send("hi\r\n.\r\n");
    let Some(Effect::Spool(message)) = effect else {
        panic!("expected Spool, got {effect:?}");
    };
    message.envelope.params.auth
}

#[test]
fn auth_param_naming_an_identity_the_user_may_not_use_is_recorded_as_unknown() {
    let record = |rule: Option<SenderRule>, param: &str| recorded_auth_param("alice", rule, param);
    // Without a sender rule: the user's own name, in any domain.
    assert_eq!(record(None, "<bob@example.com>").as_deref(), Some("<>"));
    assert_eq!(record(None, "bob@example.com").as_deref(), Some("<>"));
    assert_eq!(
        record(None, "alice.evil@example.com").as_deref(),
        Some("<>")
    );
    assert_eq!(
        record(None, "<alice@example.com>").as_deref(),
        Some("<alice@example.com>")
    );
    assert_eq!(record(None, "alice").as_deref(), Some("alice"));
    assert_eq!(record(None, "<>").as_deref(), Some("<>"));
    // With one: what the rule lets the user send from.
    let rule = || Some(SenderRule::new(["alice@example.com", "@sales.example.com"]));
    assert_eq!(
        record(rule(), "alice@example.com").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        record(rule(), "x@sales.example.com").as_deref(),
        Some("x@sales.example.com")
    );
    assert_eq!(record(rule(), "alice@other.example").as_deref(), Some("<>"));
    assert_eq!(record(rule(), "bob@example.com").as_deref(), Some("<>"));
}

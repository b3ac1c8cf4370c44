//! OAUTHBEARER and XOAUTH2: the RFC 7628 error challenge before `535`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::*;

fn oauth_harness() -> Harness {
    let mut config = SessionConfig::new("mx.test");
    config.mechanisms = vec![Mechanism::OAuthBearer, Mechanism::XOAuth2, Mechanism::Plain];
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    h
}

fn start(h: &mut Harness, mechanism: &str, message: &[u8]) -> Credentials {
    let (replies, effect) = h.send(&format!(
        "AUTH {mechanism} {}\r\n",
        STANDARD.encode(message)
    ));
    assert_eq!(replies, "");
    match effect {
        Some(Effect::Authenticate { credentials, .. }) => credentials,
        other => panic!("expected Authenticate, got {other:?}"),
    }
}

#[test]
fn refused_token_gets_the_json_challenge_then_535() {
    for (mechanism, message, ack) in [
        ("XOAUTH2", &b"user=ann\x01auth=Bearer t\x01\x01"[..], ""),
        ("OAUTHBEARER", b"n,a=ann,\x01auth=Bearer t\x01\x01", "AQ=="),
        ("OAUTHBEARER", b"n,,\x01auth=Bearer t\x01\x01", "*"),
    ] {
        let mut h = oauth_harness();
        let credentials = start(&mut h, mechanism, message);
        assert!(matches!(credentials, Credentials::Bearer { .. }));
        let _ = h
            .session
            .auth_finished(AuthOutcome::Rejected { reply: None }, &mut h.out);
        let challenge = h.take();
        let json = STANDARD
            .decode(challenge.trim_end().strip_prefix("334 ").expect("334"))
            .expect("base64");
        assert!(
            json.starts_with(br#"{"status":"invalid_token""#),
            "{challenge}"
        );
        assert_eq!(h.codes(&format!("{ack}\r\n")), ["535 5.7.8"], "{mechanism}");
        assert!(h.session.identity().is_none());
    }
}

#[test]
fn accepted_token_gets_235_at_once() {
    let mut h = oauth_harness();
    start(&mut h, "XOAUTH2", b"user=ann\x01auth=Bearer t\x01\x01");
    let outcome = AuthOutcome::Accepted {
        authn_id: "ann".into(),
        authz_id: "ann".into(),
    };
    let _ = h.session.auth_finished(outcome, &mut h.out);
    assert!(h.take().starts_with("235 2.7.0"));
}

#[test]
fn oauthbearer_without_initial_response_asks_with_an_empty_challenge() {
    let mut h = oauth_harness();
    assert_eq!(h.replies("AUTH OAUTHBEARER\r\n"), "334 \r\n");
    let (_, effect) = h.send(&format!(
        "{}\r\n",
        STANDARD.encode(b"n,a=ann,\x01auth=Bearer t\x01\x01")
    ));
    assert!(matches!(effect, Some(Effect::Authenticate { .. })));
}

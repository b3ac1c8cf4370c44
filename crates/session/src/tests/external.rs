//! EXTERNAL: offered only with a verified client certificate that maps to
//! a user; the identity comes from the certificate, never the client.

use super::*;

fn with_certificate(identity: Option<&str>) -> Harness {
    let mut config = SessionConfig::new("mx.test");
    config.mechanisms = vec![Mechanism::External, Mechanism::Plain];
    let mut info = tls();
    info.client_certificate = Some(ClientCertificate {
        subject: "CN=alice".into(),
        issuer: "CN=Test CA".into(),
        sha256: "AB:CD".into(),
        identity: identity.map(str::to_string),
    });
    let mut h = Harness::with(config, Some(info));
    h.take();
    h
}

fn authenticate_effect(h: &mut Harness, input: &str) -> Credentials {
    let (replies, effect) = h.send(input);
    assert_eq!(replies, "");
    match effect {
        Some(Effect::Authenticate {
            mechanism: Mechanism::External,
            credentials,
        }) => credentials,
        other => panic!("expected Authenticate EXTERNAL, got {other:?}"),
    }
}

#[test]
fn external_is_advertised_only_with_a_mapped_certificate() {
    let mut h = with_certificate(Some("alice"));
    assert!(h.replies("EHLO c\r\n").contains("AUTH EXTERNAL PLAIN"));

    let mut h = with_certificate(None);
    let ehlo = h.replies("EHLO c\r\n");
    assert!(
        ehlo.contains("AUTH PLAIN") && !ehlo.contains("EXTERNAL"),
        "{ehlo}"
    );
    assert_eq!(h.codes("AUTH EXTERNAL =\r\n"), ["504 5.5.4"]);

    let mut config = SessionConfig::new("mx.test");
    config.mechanisms = vec![Mechanism::External, Mechanism::Plain];
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    assert!(!h.replies("EHLO c\r\n").contains("EXTERNAL"));
    assert_eq!(h.codes("AUTH EXTERNAL =\r\n"), ["504 5.5.4"]);
}

#[test]
fn empty_initial_response_authenticates_as_the_certificate() {
    let mut h = with_certificate(Some("alice"));
    h.replies("EHLO c\r\n");
    let credentials = authenticate_effect(&mut h, "AUTH EXTERNAL =\r\n");
    assert_eq!(credentials.authcid(), "alice");
    assert_eq!(credentials.authzid(), None);
    let _ = h.session.auth_finished(
        AuthOutcome::Accepted {
            authn_id: "alice".into(),
            authz_id: "alice".into(),
        },
        &mut h.out,
    );
    assert!(h.take().starts_with("235 2.7.0"));
    assert_eq!(h.session.identity().unwrap().mechanism, Mechanism::External);
}

#[test]
fn authzid_after_an_empty_challenge_goes_to_the_decision() {
    let mut h = with_certificate(Some("alice"));
    h.replies("EHLO c\r\n");
    assert_eq!(h.replies("AUTH EXTERNAL\r\n"), "334 \r\n");
    // base64("shared")
    let credentials = authenticate_effect(&mut h, "c2hhcmVk\r\n");
    assert_eq!(credentials.authcid(), "alice");
    assert_eq!(credentials.authzid(), Some("shared"));
}

//! RFC 5802 and RFC 7677 test vectors, and the channel-binding rules.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::*;
use crate::{Mechanism, StartContext};

fn secrets(hash: ScramHash, salt_b64: &str) -> ScramSecrets {
    let salt = STANDARD.decode(salt_b64).expect("vector salt");
    ScramSecrets::derive(hash, b"pencil", salt, 4096).expect("derives")
}

fn need_secrets(step: Result<Step, SaslError>) -> SecretsRequest {
    match step.expect("no error") {
        Step::NeedSecrets(request) => request,
        other => panic!("expected NeedSecrets, got {other:?}"),
    }
}

fn challenge(step: Result<Step, SaslError>) -> (Exchange, String) {
    match step.expect("no error") {
        Step::Challenge(exchange, text) => (exchange, String::from_utf8(text).expect("utf-8")),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn done(step: Result<Step, SaslError>) -> Credentials {
    match step.expect("no error") {
        Step::Done(credentials) => credentials,
        other => panic!("expected Done, got {other:?}"),
    }
}

/// Runs one RFC vector: client-first (as initial response), our
/// server-first with the RFC's server nonce, client-final, server-final.
fn rfc_vector(mechanism: Mechanism, salt: &str, lines: [&str; 4], server_nonce: &str) {
    let (hash, _) = mechanism.scram().expect("SCRAM");
    let request = need_secrets(Exchange::start(mechanism, Some(lines[0].into()), ""));
    assert_eq!(request.authcid(), "user");
    let (exchange, server_first) = challenge(request.resume(secrets(hash, salt), server_nonce));
    assert_eq!(server_first, lines[1]);
    let credentials = done(exchange.respond(lines[2].into()));
    assert_eq!(credentials.authcid(), "user");
    assert_eq!(credentials.success_data(), Some(lines[3].as_bytes()));
}

#[test]
fn rfc_7677_scram_sha_256() {
    rfc_vector(
        Mechanism::ScramSha256,
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        [
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ],
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
}

#[test]
fn rfc_5802_scram_sha_1() {
    rfc_vector(
        Mechanism::ScramSha1,
        "QSXCR+Q6sek8bf92",
        [
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ],
        "3rfcNHYJY1ZVvWVs7j",
    );
}

#[test]
fn wrong_proof_is_reported_not_signed() {
    let request = need_secrets(Exchange::start(
        Mechanism::ScramSha256,
        Some(b"n,,n=user,r=abc".to_vec()),
        "",
    ));
    let (exchange, _) = challenge(request.resume(secrets(ScramHash::Sha256, "AAAA"), "def"));
    let proof = STANDARD.encode([0u8; 32]);
    let credentials = done(exchange.respond(format!("c=biws,r=abcdef,p={proof}").into_bytes()));
    assert!(matches!(
        credentials,
        Credentials::Scram {
            outcome: ScramOutcome::WrongProof,
            ..
        }
    ));
    assert_eq!(credentials.success_data(), None);
}

#[test]
fn a_nonce_that_is_not_ours_is_malformed() {
    let request = need_secrets(Exchange::start(
        Mechanism::ScramSha256,
        Some(b"n,,n=user,r=abc".to_vec()),
        "",
    ));
    let (exchange, _) = challenge(request.resume(secrets(ScramHash::Sha256, "AAAA"), "def"));
    let proof = STANDARD.encode([0u8; 32]);
    let result = exchange.respond(format!("c=biws,r=abcxyz,p={proof}").into_bytes());
    assert!(matches!(result, Err(SaslError::Malformed(_))));
}

/// A full client side of SCRAM, to test binding against our own maths.
fn client_final(first_bare: &str, gs2: &[u8], server_first: &str, password: &[u8]) -> String {
    let hash = ScramHash::Sha256;
    let fields: Vec<&str> = server_first.split(',').collect();
    let nonce = &fields[0][2..];
    let salt = STANDARD.decode(&fields[1][2..]).expect("salt");
    let iterations: u32 = fields[2][2..].parse().expect("i");
    let salted = hash.salted_password(password, &salt, iterations);
    let client_key = hash.hmac(&salted, b"Client Key");
    let stored_key = hash.digest(&client_key);
    let without_proof = format!("c={},r={nonce}", STANDARD.encode(gs2));
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hash.hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", STANDARD.encode(proof))
}

fn binding() -> ChannelBinding {
    ChannelBinding {
        tls_exporter: Some(vec![7; 32]),
        tls_server_end_point: Some(vec![9; 32]),
    }
}

fn plus_context(binding: &ChannelBinding) -> StartContext<'_> {
    StartContext {
        unique_challenge: "",
        channel_binding: Some(binding),
        plus_offered: true,
        external_identity: None,
    }
}

#[test]
fn plus_with_the_right_binding_is_verified_and_forged_is_not() {
    let binding = binding();
    for (name, data) in [
        ("tls-exporter", [7u8; 32]),
        ("tls-server-end-point", [9u8; 32]),
    ] {
        for (cb_data, expect_ok) in [(data, true), ([0u8; 32], false)] {
            let first = format!("p={name},,n=user,r=abc");
            let request = need_secrets(Exchange::start_with(
                Mechanism::ScramSha256Plus,
                Some(first.clone().into_bytes()),
                &plus_context(&binding),
            ));
            let (exchange, server_first) =
                challenge(request.resume(secrets(ScramHash::Sha256, "AAAA"), "def"));
            let mut gs2 = format!("p={name},,").into_bytes();
            gs2.extend_from_slice(&cb_data);
            let last = client_final("n=user,r=abc", &gs2, &server_first, b"pencil");
            let credentials = done(exchange.respond(last.into_bytes()));
            let Credentials::Scram { outcome, .. } = credentials else {
                panic!("SCRAM credentials");
            };
            match expect_ok {
                true => assert!(matches!(outcome, ScramOutcome::Verified { .. }), "{name}"),
                false => assert_eq!(outcome, ScramOutcome::ChannelBindingMismatch, "{name}"),
            }
        }
    }
}

#[test]
fn binding_flag_rules() {
    let binding = binding();
    let plus = plus_context(&binding);
    let start = |mechanism, first: &str, context: &StartContext<'_>| {
        Exchange::start_with(mechanism, Some(first.as_bytes().to_vec()), context)
    };
    // `y` while we offer -PLUS: a downgrade, answered with e= then refused.
    let (exchange, error) = challenge(start(Mechanism::ScramSha256, "y,,n=u,r=a", &plus));
    assert_eq!(error, "e=server-does-support-channel-binding");
    assert!(matches!(
        exchange.respond(vec![]),
        Err(SaslError::Refused(_))
    ));
    // `y` where -PLUS is not offered is fine.
    let no_plus = StartContext::default();
    need_secrets(start(Mechanism::ScramSha256, "y,,n=u,r=a", &no_plus));
    // -PLUS without binding, and binding without -PLUS: refused.
    for (mechanism, first) in [
        (Mechanism::ScramSha256Plus, "n,,n=u,r=a"),
        (Mechanism::ScramSha256Plus, "y,,n=u,r=a"),
        (Mechanism::ScramSha256, "p=tls-exporter,,n=u,r=a"),
    ] {
        assert!(
            matches!(start(mechanism, first, &plus), Err(SaslError::Refused(_))),
            "{mechanism} {first}"
        );
    }
    // A binding type we do not have.
    let (_, error) = challenge(start(
        Mechanism::ScramSha256Plus,
        "p=tls-unique,,n=u,r=a",
        &plus,
    ));
    assert_eq!(error, "e=unsupported-channel-binding-type");
}

#[test]
fn without_initial_response_the_server_asks_first() {
    let (exchange, text) = challenge(Exchange::start(Mechanism::ScramSha256, None, ""));
    assert_eq!(text, "");
    let request = need_secrets(exchange.respond(b"n,a=admin,n=user,r=abc".to_vec()));
    assert_eq!(request.authcid(), "user");
    assert_eq!(request.hash(), ScramHash::Sha256);
}

#[test]
fn user_names_and_passwords_are_saslprepped() {
    // U+2168 ROMAN NUMERAL NINE normalises (NFKC) to "IX".
    let request = need_secrets(Exchange::start(
        Mechanism::ScramSha256,
        Some("n,,n=\u{2168},r=abc".as_bytes().to_vec()),
        "",
    ));
    assert_eq!(request.authcid(), "IX");
    let a = ScramSecrets::derive(ScramHash::Sha256, "\u{2168}".as_bytes(), vec![1], 1);
    let b = ScramSecrets::derive(ScramHash::Sha256, b"IX", vec![1], 1);
    assert_eq!(a.expect("ok"), b.expect("ok"));
    assert!(ScramSecrets::derive(ScramHash::Sha256, b"a\x07b", vec![1], 1).is_err());
}

#[test]
fn secrets_debug_is_redacted() {
    let s = secrets(ScramHash::Sha256, "AAAA");
    let debug = format!("{s:?} {:?}", binding());
    assert!(!debug.contains("stored_key"), "{debug}");
    assert!(!debug.contains('7'), "{debug}");
}

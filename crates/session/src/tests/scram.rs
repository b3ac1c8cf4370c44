//! SCRAM scenarios: the secrets look-up effect, the server signature sent
//! only after the decision, channel binding only under TLS.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use portcullis_sasl::scram::client_proof;
use portcullis_sasl::{ScramHash, ScramOutcome, ScramSecrets};

use super::*;

const SALT: &[u8] = b"0123456789abcdef";

fn scram_config() -> SessionConfig {
    let mut config = SessionConfig::new("mx.test");
    config.mechanisms = vec![
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha256,
        Mechanism::Plain,
    ];
    config
}

fn secrets() -> ScramSecrets {
    ScramSecrets::derive(ScramHash::Sha256, b"pencil", SALT.to_vec(), 4096).expect("derives")
}

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

fn unb64(line: &str) -> String {
    let text = line.trim_end().strip_prefix("334 ").expect("a 334 line");
    String::from_utf8(STANDARD.decode(text).expect("base64")).expect("utf-8")
}

/// Runs AUTH up to the Authenticate effect with `password`; returns the
/// credentials' outcome and the expected server signature.
fn exchange(
    h: &mut Harness,
    mechanism: &str,
    gs2: &str,
    cb_data: &[u8],
    password: &[u8],
) -> (Credentials, Vec<u8>) {
    let first_bare = "n=user,r=clientnonce";
    let (replies, effect) = h.send(&format!(
        "AUTH {mechanism} {}\r\n",
        b64(format!("{gs2}{first_bare}").as_bytes())
    ));
    assert_eq!(replies, "");
    let Some(Effect::LookupScramSecrets { authcid, hash }) = effect else {
        panic!("expected a look-up, got {effect:?}");
    };
    assert_eq!((authcid.as_str(), hash), ("user", ScramHash::Sha256));
    let lookup = ScramLookup::Found {
        secrets: secrets(),
        nonce: [42; 18],
    };
    assert_eq!(
        h.session.scram_secrets_found(lookup, &mut h.out),
        Flow::Continue
    );
    let server_first = unb64(&h.take());
    let nonce = server_first.split(',').next().expect("r=")[2..].to_string();
    assert!(nonce.starts_with("clientnonce") && nonce.len() > "clientnonce".len() + 16);
    let mut binding = gs2.as_bytes().to_vec();
    binding.extend_from_slice(cb_data);
    let without_proof = format!("c={},r={nonce}", b64(&binding));
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let (proof, signature) = client_proof(
        ScramHash::Sha256,
        password,
        SALT,
        4096,
        auth_message.as_bytes(),
    );
    let (replies, effect) = h.send(&format!(
        "{}\r\n",
        b64(format!("{without_proof},p={}", b64(&proof)).as_bytes())
    ));
    assert_eq!(replies, "");
    let Some(Effect::Authenticate { credentials, .. }) = effect else {
        panic!("expected Authenticate, got {effect:?}");
    };
    (credentials, signature)
}

fn accept(h: &mut Harness) {
    let outcome = AuthOutcome::Accepted {
        authn_id: "user".into(),
        authz_id: "user".into(),
    };
    assert_eq!(h.session.auth_finished(outcome, &mut h.out), Flow::Continue);
}

#[test]
fn ehlo_offers_plus_only_under_tls() {
    let mut config = scram_config();
    config.allow_insecure_auth = true;
    let mut h = Harness::with(config, None);
    h.take();
    assert!(h
        .replies("EHLO c\r\n")
        .contains("250-AUTH SCRAM-SHA-256 PLAIN\r\n"));
    assert_eq!(h.codes("AUTH SCRAM-SHA-256-PLUS\r\n"), ["504 5.5.4"]);
    let mut h = Harness::with(scram_config(), Some(tls()));
    h.take();
    assert!(h
        .replies("EHLO c\r\n")
        .contains("250-AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN\r\n"));
}

#[test]
fn scram_success_sends_the_server_signature_then_235() {
    let mut h = Harness::with(scram_config(), Some(tls()));
    h.replies("EHLO c\r\n");
    let (credentials, signature) = exchange(
        &mut h,
        "SCRAM-SHA-256-PLUS",
        "p=tls-exporter,,",
        &[1; 32],
        b"pencil",
    );
    assert_eq!(
        credentials.success_data(),
        Some(format!("v={}", b64(&signature)).as_bytes())
    );
    accept(&mut h);
    assert_eq!(unb64(&h.take()), format!("v={}", b64(&signature)));
    assert!(
        h.session.identity().is_none(),
        "not before the client's ack"
    );
    assert_eq!(h.codes("\r\n"), ["235 2.7.0"]);
    let identity = h.session.identity().expect("authenticated");
    assert_eq!(identity.mechanism, Mechanism::ScramSha256Plus);
}

#[test]
fn wrong_password_gets_535_without_a_signature() {
    let mut h = Harness::with(scram_config(), Some(tls()));
    h.replies("EHLO c\r\n");
    let (credentials, _) = exchange(&mut h, "SCRAM-SHA-256", "n,,", &[], b"wrong");
    assert!(matches!(
        credentials,
        Credentials::Scram {
            outcome: ScramOutcome::WrongProof,
            ..
        }
    ));
    let _ = h
        .session
        .auth_finished(AuthOutcome::Rejected { reply: None }, &mut h.out);
    assert!(h.take().starts_with("535 5.7.8"));
}

#[test]
fn forged_binding_is_reported_as_a_mismatch() {
    let mut h = Harness::with(scram_config(), Some(tls()));
    h.replies("EHLO c\r\n");
    let (credentials, _) = exchange(
        &mut h,
        "SCRAM-SHA-256-PLUS",
        "p=tls-server-end-point,,",
        &[9; 32],
        b"pencil",
    );
    assert!(matches!(
        credentials,
        Credentials::Scram {
            outcome: ScramOutcome::ChannelBindingMismatch,
            ..
        }
    ));
}

#[test]
fn cancelling_after_the_signature_leaves_the_client_unauthenticated() {
    let mut h = Harness::with(scram_config(), Some(tls()));
    h.replies("EHLO c\r\n");
    exchange(&mut h, "SCRAM-SHA-256", "n,,", &[], b"pencil");
    accept(&mut h);
    h.take();
    assert_eq!(h.codes("*\r\n"), ["501 5.7.0"]);
    assert!(h.session.identity().is_none());
}

#[test]
fn downgrade_to_y_while_plus_is_offered_is_refused() {
    let mut h = Harness::with(scram_config(), Some(tls()));
    h.replies("EHLO c\r\n");
    let reply = h.replies(&format!(
        "AUTH SCRAM-SHA-256 {}\r\n",
        b64(b"y,,n=user,r=abc")
    ));
    assert_eq!(unb64(&reply), "e=server-does-support-channel-binding");
    assert_eq!(h.codes("\r\n"), ["535 5.7.8"]);
}

#[test]
fn store_down_during_the_lookup_is_454() {
    let mut h = Harness::with(scram_config(), Some(tls()));
    h.replies("EHLO c\r\n");
    let (_, effect) = h.send(&format!(
        "AUTH SCRAM-SHA-256 {}\r\n",
        b64(b"n,,n=user,r=abc")
    ));
    assert!(matches!(effect, Some(Effect::LookupScramSecrets { .. })));
    let _ = h
        .session
        .scram_secrets_found(ScramLookup::Unavailable, &mut h.out);
    assert!(h.take().starts_with("454 4.7.0"));
    assert_eq!(h.codes("NOOP\r\n"), ["250 2.0.0"]);
}

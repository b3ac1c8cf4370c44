//! What real clients do that the RFCs allow and a strict reading refused:
//! STARTTLS before EHLO (gsasl), -PLUS only where a client's binding can
//! be served (GNU SASL picks `tls-unique` on TLS 1.2).

use super::*;

fn plus_config() -> SessionConfig {
    let mut config = SessionConfig::new("mx.test");
    config.mechanisms = vec![
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha256,
        Mechanism::Plain,
    ];
    config
}

fn tls12() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.2".into(),
        cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
        channel_binding: portcullis_sasl::ChannelBinding {
            tls_exporter: None,
            tls_server_end_point: Some(vec![2; 32]),
        },
        client_certificate: None,
    }
}

#[test]
fn starttls_before_ehlo_is_accepted_and_the_client_greets_after() {
    let mut h = Harness::plain();
    h.take();
    let (replies, effect) = h.send("STARTTLS\r\n");
    assert_eq!(replies, "220 2.0.0 Ready to start TLS\r\n");
    assert!(matches!(effect, Some(Effect::StartTls)));
    h.session.tls_established(tls());
    let ehlo = h.replies("EHLO c\r\n");
    assert!(ehlo.contains("AUTH "), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
}

#[test]
fn plus_is_advertised_on_tls13_only() {
    let mut h = Harness::with(plus_config(), Some(tls()));
    let ehlo = h.replies("EHLO c\r\n");
    assert!(
        ehlo.contains("AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN"),
        "{ehlo}"
    );

    let mut h = Harness::with(plus_config(), Some(tls12()));
    let ehlo = h.replies("EHLO c\r\n");
    assert!(ehlo.contains("AUTH SCRAM-SHA-256 PLAIN\r\n"), "{ehlo}");
    // Not offered, so not startable either.
    assert_eq!(
        h.codes("AUTH SCRAM-SHA-256-PLUS\r\n"),
        ["504 5.5.4"],
        "-PLUS must not start where it is not offered"
    );
}

#[test]
fn an_overlong_but_well_formed_plain_password_is_not_a_syntax_error() {
    use base64::Engine;
    let mut h = Harness::over_tls();
    h.replies("EHLO c\r\n");
    let password = "p".repeat(9_000);
    let response = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{password}"));
    let replies = h.replies(&format!("AUTH PLAIN {response}\r\n"));
    assert!(replies.starts_with("500 5.5.6 "), "{replies}");
    // The session goes on.
    assert_eq!(h.codes("NOOP\r\n"), ["250 2.0.0"]);
}

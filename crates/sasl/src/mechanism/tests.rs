use super::*;

fn done(step: Result<Step, SaslError>) -> Credentials {
    match step {
        Ok(Step::Done(c)) => c,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn challenged(step: Result<Step, SaslError>) -> (Exchange, Vec<u8>) {
    match step {
        Ok(Step::Challenge(e, c)) => (e, c),
        other => panic!("expected Challenge, got {other:?}"),
    }
}

fn password_of(c: &Credentials) -> (&str, Option<&str>, &[u8]) {
    match c {
        Credentials::Password {
            authcid,
            authzid,
            password,
        } => (authcid, authzid.as_deref(), password.expose()),
        other => panic!("not a password: {other:?}"),
    }
}

#[test]
fn mechanism_names_are_case_insensitive() {
    assert_eq!(Mechanism::from_name("plain"), Some(Mechanism::Plain));
    assert_eq!(Mechanism::from_name("Cram-Md5"), Some(Mechanism::CramMd5));
    assert_eq!(Mechanism::from_name("GSSAPI"), None);
}

#[test]
fn plain_with_initial_response() {
    let c = done(Exchange::start(
        Mechanism::Plain,
        Some(b"\0tim\0tanstaaftanstaaf".to_vec()),
        "",
    ));
    assert_eq!(password_of(&c), ("tim", None, &b"tanstaaftanstaaf"[..]));
}

#[test]
fn plain_with_authzid() {
    let c = done(Exchange::start(
        Mechanism::Plain,
        Some(b"Ursel\0Kurt\0xipj3plmq".to_vec()),
        "",
    ));
    assert_eq!(password_of(&c), ("Kurt", Some("Ursel"), &b"xipj3plmq"[..]));
}

#[test]
fn plain_without_initial_response_sends_empty_challenge() {
    let (exchange, text) = challenged(Exchange::start(Mechanism::Plain, None, ""));
    assert!(text.is_empty());
    let c = done(exchange.respond(b"\0u\0p".to_vec()));
    assert_eq!(password_of(&c), ("u", None, &b"p"[..]));
}

#[test]
fn plain_empty_initial_response_is_malformed() {
    assert!(matches!(
        Exchange::start(Mechanism::Plain, Some(vec![]), ""),
        Err(SaslError::Malformed(_))
    ));
}

#[test]
fn plain_rejects_missing_fields_and_empty_authcid() {
    for bad in [&b"user\0pass"[..], b"\0\0pass", b"a\0b\0c\0d"] {
        assert!(
            matches!(
                Exchange::start(Mechanism::Plain, Some(bad.to_vec()), ""),
                Err(SaslError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn plain_accepts_255_octet_fields() {
    let long = "x".repeat(255);
    let msg = format!("{long}\0{long}\0{long}");
    let c = done(Exchange::start(
        Mechanism::Plain,
        Some(msg.into_bytes()),
        "",
    ));
    let (authcid, authzid, password) = password_of(&c);
    assert_eq!(
        (authcid.len(), authzid.map(str::len), password.len()),
        (255, Some(255), 255)
    );
}

#[test]
fn plain_rejects_oversized_fields() {
    let long = "x".repeat(MAX_IDENTITY_LEN + 1);
    let msg = format!("\0{long}\0p");
    assert_eq!(
        Exchange::start(Mechanism::Plain, Some(msg.into_bytes()), "").unwrap_err(),
        SaslError::TooLong
    );
}

#[test]
fn login_asks_for_user_then_password() {
    let (exchange, text) = challenged(Exchange::start(Mechanism::Login, None, ""));
    assert_eq!(text, b"Username:");
    let (exchange, text) = challenged(exchange.respond(b"alice".to_vec()));
    assert_eq!(text, b"Password:");
    let c = done(exchange.respond(b"secret".to_vec()));
    assert_eq!(password_of(&c), ("alice", None, &b"secret"[..]));
}

#[test]
fn login_with_initial_response_skips_the_user_prompt() {
    let (exchange, text) = challenged(Exchange::start(Mechanism::Login, Some(b"bob".to_vec()), ""));
    assert_eq!(text, b"Password:");
    let c = done(exchange.respond(b"pw".to_vec()));
    assert_eq!(password_of(&c).0, "bob");
}

#[test]
fn cram_md5_refuses_an_initial_response() {
    assert_eq!(
        Exchange::start(Mechanism::CramMd5, Some(b"x".to_vec()), "<1@h>").unwrap_err(),
        SaslError::InitialResponseNotAllowed
    );
}

#[test]
fn cram_md5_rfc2195_example() {
    let challenge = "<1896.697170952@postoffice.reston.mci.net>";
    let (exchange, text) = challenged(Exchange::start(Mechanism::CramMd5, None, challenge));
    assert_eq!(text, challenge.as_bytes());
    let c = done(exchange.respond(b"tim b913a602c7eda7a495b4e6e7334d3890".to_vec()));
    match c {
        Credentials::CramMd5 {
            authcid,
            challenge: ch,
            digest,
        } => {
            assert_eq!(authcid, "tim");
            assert_eq!(ch, challenge.as_bytes());
            assert_eq!(hex::encode(digest), "b913a602c7eda7a495b4e6e7334d3890");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cram_md5_rejects_bad_digests() {
    for bad in [
        &b"tim"[..],
        b"tim xyz",
        b" b913a602c7eda7a495b4e6e7334d3890",
    ] {
        let (exchange, _) = challenged(Exchange::start(Mechanism::CramMd5, None, "<c>"));
        assert!(
            matches!(exchange.respond(bad.to_vec()), Err(SaslError::Malformed(_))),
            "{bad:?}"
        );
    }
}

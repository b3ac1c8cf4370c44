//! Python's smtplib: each mechanism with good and bad passwords, and the
//! RFC 4954 error replies that well-behaved clients never provoke.

use portcullis_integration_tests::{python, TestServer};

/// Wrong password, then the right one on the same connection, then a
/// submission: one failure must not poison the session.
fn refuses_wrong_then_accepts_right(mechanism: &str, initial_response_ok: bool) {
    let server = TestServer::start("");
    let script = format!(
        r#"
        s = connect()
        login("bad", s, "alice", "wrong horse", "{mechanism}", {ir})
        login("unknown", s, "nobody", "correct horse", "{mechanism}", {ir})
        login("good", s, "alice", "correct horse", "{mechanism}", {ir})
        submit("msg", s)
        show("quit", s.quit())
        "#,
        ir = if initial_response_ok { "True" } else { "False" }
    );
    let out = python(&script, &[server.submission_port()]);
    out.assert_reply("bad", "535 5.7.8")
        .assert_reply("unknown", "535 5.7.8")
        .assert_reply("good", "235 2.7.0")
        .assert_reply("msg.mail", "250")
        .assert_reply("msg.rcpt", "250")
        .assert_reply("msg.data", "250")
        .assert_reply("quit", "221");
    server
        .single_message()
        .assert_submitted_by("alice", mechanism);
}

#[test]
fn python_cram_md5_refuses_wrong_password_then_accepts_right_one() {
    refuses_wrong_then_accepts_right("CRAM-MD5", false);
}

#[test]
fn python_plain_with_initial_response_refuses_wrong_password_then_accepts_right_one() {
    refuses_wrong_then_accepts_right("PLAIN", true);
}

#[test]
fn python_plain_without_initial_response_refuses_wrong_password_then_accepts_right_one() {
    refuses_wrong_then_accepts_right("PLAIN", false);
}

#[test]
fn python_login_with_initial_response_refuses_wrong_password_then_accepts_right_one() {
    refuses_wrong_then_accepts_right("LOGIN", true);
}

#[test]
fn python_login_without_initial_response_refuses_wrong_password_then_accepts_right_one() {
    refuses_wrong_then_accepts_right("LOGIN", false);
}

#[test]
fn python_implicit_tls_listener_accepts_authenticated_submission() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect_tls(PORT)
        print(f"starttls: {s.has_extn('starttls')}")
        login("good", s, "alice", "correct horse", "PLAIN")
        submit("msg", s)
        s.quit()
        "#,
        &[server.implicit_port()],
    );
    out.assert_reply("good", "235 2.7.0")
        .assert_reply("msg.data", "250");
    assert_eq!(
        out.reply("starttls"),
        "False",
        "STARTTLS offered inside implicit TLS\n{}",
        out.transcript()
    );
    server
        .single_message()
        .assert_submitted_by("alice", "PLAIN");
}

#[test]
fn auth_is_advertised_only_after_starttls() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect(starttls=False)
        print(f"plain.starttls: {s.has_extn('starttls')}")
        print(f"plain.auth: {s.has_extn('auth')}")
        s.starttls(context=ctx())
        s.ehlo()
        print(f"tls.starttls: {s.has_extn('starttls')}")
        print(f"tls.auth: {s.esmtp_features.get('auth', 'NONE').upper()}")
        "#,
        &[server.submission_port()],
    );
    let got = out.labelled();
    assert_eq!(
        got.get("plain.starttls").map(String::as_str),
        Some("True"),
        "{}",
        out.transcript()
    );
    assert_eq!(
        got.get("plain.auth").map(String::as_str),
        Some("False"),
        "AUTH advertised before TLS\n{}",
        out.transcript()
    );
    assert_eq!(
        got.get("tls.starttls").map(String::as_str),
        Some("False"),
        "STARTTLS offered twice\n{}",
        out.transcript()
    );
    let mechanisms: Vec<&str> = got
        .get("tls.auth")
        .map(|m| m.split_whitespace().collect())
        .unwrap_or_default();
    for expected in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        assert!(
            mechanisms.contains(&expected),
            "{expected} not advertised after TLS: {mechanisms:?}"
        );
    }
}

#[test]
fn auth_before_starttls_is_refused_with_538() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect(starttls=False)
        show("plain", s.docmd("AUTH", "PLAIN " + b64("\0alice\0correct horse")))
        show("login", s.docmd("AUTH", "LOGIN"))
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("plain", "538 5.7.11")
        .assert_reply("login", "538 5.7.11");
}

#[test]
fn mail_before_auth_is_refused_with_530() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect(starttls=False)
        show("cleartext", s.docmd("MAIL", "FROM:<alice@example.test>"))
        s.starttls(context=ctx())
        s.ehlo()
        show("tls", s.docmd("MAIL", "FROM:<alice@example.test>"))
        show("rcpt", s.docmd("RCPT", "TO:<rcpt@example.test>"))
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("cleartext", "530")
        .assert_reply("tls", "530 5.7.0");
    let rcpt = out.reply("rcpt");
    assert!(
        rcpt.starts_with('5'),
        "RCPT without MAIL/AUTH must fail, got {rcpt}"
    );
    assert!(server.spool_messages().is_empty());
}

#[test]
fn third_auth_failure_on_a_connection_gets_421_and_close() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        login("try1", s, "alice", "wrong", "PLAIN")
        login("try2", s, "alice", "wrong", "LOGIN")
        login("try3", s, "alice", "wrong", "CRAM-MD5")
        # The third failure may be answered 535 with the 421 right behind it.
        try:
            show("after3", s.getreply())
        except (smtplib.SMTPException, OSError) as e:
            print(f"after3: EXC {e!r}")
        print(f"closed: {closed(s) if s.sock else True}")
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("try1", "535 5.7.8")
        .assert_reply("try2", "535 5.7.8");
    let (try3, after3) = (out.reply("try3"), out.reply("after3"));
    assert!(
        try3.starts_with("421 4.7.0")
            || (try3.starts_with("535 5.7.8") && after3.starts_with("421 4.7.0")),
        "third failure must end in 421 4.7.0\n{}",
        out.transcript()
    );
    assert_eq!(
        out.reply("closed"),
        "True",
        "connection still open after 421\n{}",
        out.transcript()
    );
}

#[test]
fn star_cancels_an_auth_exchange_with_501() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        show("login", s.docmd("AUTH", "LOGIN"))
        show("cancel.login", s.docmd("*"))
        show("cram", s.docmd("AUTH", "CRAM-MD5"))
        show("cancel.cram", s.docmd("*"))
        login("after", s, "alice", "correct horse", "PLAIN")
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("login", "334")
        .assert_reply("cancel.login", "501")
        .assert_reply("cram", "334")
        .assert_reply("cancel.cram", "501")
        .assert_reply("after", "235 2.7.0");
}

#[test]
fn invalid_base64_in_auth_gets_501_5_5_2() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        show("initial", s.docmd("AUTH", "PLAIN !!!not-base64!!!"))
        show("login", s.docmd("AUTH", "LOGIN"))
        show("continuation", s.docmd("%%%="))
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("initial", "501 5.5.2")
        .assert_reply("login", "334")
        .assert_reply("continuation", "501 5.5.2");
}

#[test]
fn unknown_mechanism_gets_504_5_5_4() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        show("unknown", s.docmd("AUTH", "X-NOT-A-MECHANISM"))
        show("digest", s.docmd("AUTH", "DIGEST-MD5"))
        login("after", s, "alice", "correct horse", "LOGIN")
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("unknown", "504 5.5.4")
        .assert_reply("digest", "504 5.5.4")
        .assert_reply("after", "235 2.7.0");
}

#[test]
fn auth_after_successful_auth_gets_503() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        login("first", s, "alice", "correct horse", "PLAIN")
        show("again", s.docmd("AUTH", "PLAIN " + b64("\0bob\0battery staple")))
        submit("msg", s)
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("first", "235 2.7.0")
        .assert_reply("again", "503")
        .assert_reply("msg.data", "250");
    // The second AUTH must not have switched identity.
    server
        .single_message()
        .assert_submitted_by("alice", "PLAIN");
}

#[test]
fn cram_md5_with_initial_response_gets_501() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        show("cram", s.docmd("AUTH", "CRAM-MD5 " + b64("alice 0123456789abcdef0123456789abcdef")))
        login("after", s, "alice", "correct horse", "CRAM-MD5")
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("cram", "501")
        .assert_reply("after", "235 2.7.0");
}

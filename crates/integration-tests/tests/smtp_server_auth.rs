//! Nodemailer smtp-server's AUTH behaviours with the real binary and
//! Python's smtplib: an `auth = "optional"` listener, a listener's own
//! `530` text, and failed AUTHs that spend `max_auth_failures`, not the
//! unauthenticated-command budget.

use portcullis_integration_tests::{python, TestServer};

#[test]
fn optional_auth_listener_takes_mail_without_auth_and_records_identity_with_it() {
    let server = TestServer::start(
        "[[listener]]\nname = \"optional\"\naddress = \"127.0.0.1:{port:optional}\"\n\
         tls = \"starttls\"\nauth = \"optional\"\n",
    );
    let out = python(
        r#"
        s = connect()
        print(f"auth: {s.has_extn('auth')}")
        s.mail("anon@example.test")
        show("anon.rcpt", s.rcpt(TO))
        show("anon.data", s.data(MSG.replace("python", "anonymous")))
        s.quit()
        s = connect()
        login("good", s, "alice", "correct horse", "PLAIN")
        submit("msg", s)
        s.quit()
        "#,
        &[server.port("optional")],
    );
    out.assert_reply("anon.data", "250")
        .assert_reply("good", "235 2.7.0")
        .assert_reply("msg.data", "250");
    assert_eq!(out.reply("auth"), "True", "{}", out.transcript());
    let messages = server.spool_messages();
    assert_eq!(messages.len(), 2);
    let (anonymous, alice): (Vec<_>, Vec<_>) = messages
        .into_iter()
        .partition(|m| m.eml.contains("Subject: anonymous"));
    assert_eq!(anonymous.len(), 1);
    assert_eq!(anonymous[0].auth_field("authn_id"), None);
    assert!(
        !anonymous[0].first_header().contains("ESMTPSA"),
        "{}",
        anonymous[0].first_header()
    );
    alice[0].assert_submitted_by("alice", "PLAIN");
}

#[test]
fn required_listener_sends_its_own_530_text() {
    let server = TestServer::start(
        "[[listener]]\nname = \"custom\"\naddress = \"127.0.0.1:{port:custom}\"\n\
         tls = \"starttls\"\nauth = \"required\"\n\
         auth_required_message = \"Please authenticate before sending mail\"\n",
    );
    let out = python(
        r#"
        s = connect()
        show("mail", s.mail(FROM))
        s.quit()
        s = connect(port=PORTS[1])
        show("default", s.mail(FROM))
        s.quit()
        "#,
        &[server.port("custom"), server.submission_port()],
    );
    out.assert_reply("mail", "530 5.7.0 Please authenticate before sending mail")
        .assert_reply("default", "530 5.7.0 Authentication required");
}

#[test]
fn failed_auths_below_max_auth_failures_do_not_trip_the_unauthenticated_limit() {
    // EHLO, STARTTLS and EHLO spend three of the four commands.
    let server =
        TestServer::start("[limits]\nmax_unauthenticated_commands = 4\nmax_auth_failures = 10\n");
    let out = python(
        r#"
        s = connect()
        for i in range(9):
            login(f"bad{i}", s, "alice", "wrong horse", "PLAIN")
        login("good", s, "alice", "correct horse", "PLAIN")
        submit("msg", s)
        s.quit()
        "#,
        &[server.submission_port()],
    );
    for i in 0..9 {
        out.assert_reply(&format!("bad{i}"), "535 5.7.8");
    }
    out.assert_reply("good", "235 2.7.0")
        .assert_reply("msg.data", "250");
    server
        .single_message()
        .assert_submitted_by("alice", "PLAIN");
}

#[test]
fn failed_auth_limit_still_closes_the_connection() {
    let server =
        TestServer::start("[limits]\nmax_unauthenticated_commands = 4\nmax_auth_failures = 3\n");
    let out = python(
        r#"
        s = connect()
        for i in range(3):
            login(f"bad{i}", s, "alice", "wrong horse", "PLAIN")
        print(f"closed: {closed(s)}")
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("bad0", "535 5.7.8")
        .assert_reply("bad1", "535 5.7.8");
    assert_eq!(out.reply("closed"), "True", "{}", out.transcript());
}

#[test]
fn zero_unauthenticated_commands_is_no_limit() {
    let server = TestServer::start("[limits]\nmax_unauthenticated_commands = 0\n");
    let out = python(
        r#"
        s = connect()
        for i in range(40):
            show(f"noop{i}", s.noop())
        show("mail", s.mail(FROM))
        s.quit()
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("noop39", "250")
        .assert_reply("mail", "530 5.7.0");
}

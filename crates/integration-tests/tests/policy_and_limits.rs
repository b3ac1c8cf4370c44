//! Config-driven policy seen from a client: cleartext listeners, size and
//! recipient limits, the unauthenticated-command budget, what the spool
//! records, and that secrets stay out of the log.

use base64::Engine as _;
use portcullis_integration_tests::{python, TestServer};

const CLEARTEXT_LISTENER: &str = r#"
[[listener]]
name = "cleartext"
address = "127.0.0.1:{port:cleartext}"
tls = "none"
auth = "required"
allow_insecure_auth = true
"#;

#[test]
fn cleartext_listener_with_allow_insecure_auth_accepts_auth_and_records_esmtpa() {
    let server = TestServer::start(CLEARTEXT_LISTENER);
    let out = python(
        r#"
        s = connect(starttls=False)
        print(f"starttls: {s.has_extn('starttls')}")
        print(f"auth: {s.esmtp_features.get('auth', 'NONE').upper()}")
        login("good", s, "alice", "correct horse", "LOGIN")
        submit("msg", s)
        "#,
        &[server.port("cleartext")],
    );
    assert_eq!(
        out.reply("starttls"),
        "False",
        "STARTTLS offered on a tls = none listener\n{}",
        out.transcript()
    );
    assert!(
        out.reply("auth").contains("PLAIN"),
        "AUTH not advertised on the insecure listener\n{}",
        out.transcript()
    );
    out.assert_reply("good", "235 2.7.0")
        .assert_reply("msg.data", "250");
    let message = server.single_message();
    assert_eq!(message.auth_field("authn_id").as_deref(), Some("alice"));
    assert!(
        message.meta["tls"].is_null(),
        "tls recorded for a cleartext session: {:#}",
        message.meta
    );
    assert_eq!(message.meta["listener"], "cleartext", "{:#}", message.meta);
    let received = message.first_header();
    assert!(
        received.contains("ESMTPA") && !received.contains("ESMTPSA"),
        "expected `with ESMTPA`: {received}"
    );
}

#[test]
fn message_over_max_message_size_is_refused_with_552() {
    let server = TestServer::start("[limits]\nmax_message_size = 2000\n");
    let out = python(
        r#"
        s = connect()
        print(f"size: {s.esmtp_features.get('size', 'NONE')}")
        login("auth", s, "alice", "correct horse", "PLAIN")
        show("declared", s.docmd("MAIL", "FROM:<alice@example.test> SIZE=5000"))
        show("mail", s.docmd("MAIL", "FROM:<alice@example.test>"))
        show("rcpt", s.docmd("RCPT", "TO:<rcpt@example.test>"))
        show("data", s.docmd("DATA"))
        s.send(("Subject: big\r\n\r\n" + ("y" * 70 + "\r\n") * 60 + ".\r\n").encode())
        show("end", s.getreply())
        show("noop", s.docmd("NOOP"))
        "#,
        &[server.submission_port()],
    );
    assert_eq!(
        out.reply("size"),
        "2000",
        "SIZE not advertised with the limit\n{}",
        out.transcript()
    );
    out.assert_reply("auth", "235")
        .assert_reply("declared", "552")
        .assert_reply("mail", "250")
        .assert_reply("data", "354")
        .assert_reply("end", "552")
        .assert_reply("noop", "250");
    assert!(
        server.spool_messages().is_empty(),
        "an oversized message was spooled"
    );
}

#[test]
fn recipient_over_max_recipients_gets_452_and_the_rest_are_kept() {
    let server = TestServer::start("[limits]\nmax_recipients = 2\n");
    let out = python(
        r#"
        s = connect()
        login("auth", s, "alice", "correct horse", "PLAIN")
        show("mail", s.docmd("MAIL", "FROM:<alice@example.test>"))
        for i in range(1, 4):
            show(f"rcpt{i}", s.docmd("RCPT", f"TO:<r{i}@example.test>"))
        show("data", s.data(MSG))
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("rcpt1", "250")
        .assert_reply("rcpt2", "250")
        .assert_reply("rcpt3", "452 4.5.3")
        .assert_reply("data", "250");
    let message = server.single_message();
    assert_eq!(
        message.meta["rcpt_to"],
        serde_json::json!(["r1@example.test", "r2@example.test"]),
        "{:#}",
        message.meta
    );
}

#[test]
fn too_many_commands_before_auth_get_421_and_close() {
    let server = TestServer::start("[limits]\nmax_unauthenticated_commands = 5\n");
    let out = python(
        r#"
        s = connect(starttls=False)
        for i in range(1, 20):
            try:
                code, msg = s.docmd("NOOP")
            except (smtplib.SMTPException, OSError) as e:
                print(f"error_at: {i} {e!r}")
                break
            if code != 250:
                show("refusal", (code, msg))
                print(f"refused_at: {i}")
                break
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("refusal", "421 4.7.0");
    let at: u32 = out.reply("refused_at").parse().expect("a number");
    // EHLO counts too, so the refusal comes at or before the 5th NOOP.
    assert!(at <= 5, "421 only at NOOP #{at}\n{}", out.transcript());
}

#[test]
fn spool_metadata_records_envelope_session_and_tls() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        login("auth", s, "alice", "correct horse", "PLAIN")
        show("mail", s.docmd("MAIL", "FROM:<alice@example.test> SIZE=123 BODY=8BITMIME AUTH=<alice@example.test>"))
        show("rcpt", s.docmd("RCPT", "TO:<rcpt@example.test>"))
        show("data", s.data(MSG))
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("mail", "250")
        .assert_reply("rcpt", "250")
        .assert_reply("data", "250");
    let message = server.single_message();
    let meta = &message.meta;
    message.assert_submitted_by("alice", "PLAIN");
    assert_eq!(meta["helo"], "client.test", "{meta:#}");
    assert_eq!(meta["listener"], "submission", "{meta:#}");
    assert_eq!(meta["declared_size"], 123, "{meta:#}");
    assert!(
        meta["body"]
            .as_str()
            .is_some_and(|b| b.eq_ignore_ascii_case("8BITMIME")),
        "body: {meta:#}"
    );
    assert!(
        meta["mail_auth_param"]
            .as_str()
            .is_some_and(|a| a.contains("alice@example.test")),
        "AUTH= param: {meta:#}"
    );
    assert!(
        meta["client_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1")),
        "{meta:#}"
    );
    let port = server.submission_port().to_string();
    assert!(
        meta["server_addr"]
            .as_str()
            .is_some_and(|a| a.ends_with(&port)),
        "{meta:#}"
    );
    assert!(
        meta["tls"]["cipher"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{meta:#}"
    );
    assert!(!meta["received_at"].is_null(), "{meta:#}");
    assert!(!meta["id"].is_null(), "{meta:#}");
}

#[test]
fn passwords_never_appear_in_the_trace_log() {
    let server = TestServer::builder().log_filter("trace").start();
    let out = python(
        r#"
        s = connect()
        login("plain.bad", s, "alice", "wrong horse", "PLAIN")
        login("login.bad", s, "alice", "wrong horse", "LOGIN", False)
        s.close()
        s = connect()
        login("plain.good", s, "alice", "correct horse", "PLAIN")
        s.close()
        s = connect()
        login("login.good", s, "alice", "correct horse", "LOGIN", False)
        s.close()
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("plain.bad", "535")
        .assert_reply("plain.good", "235")
        .assert_reply("login.good", "235");
    // The check below reads the lines these logins wrote: wait until all
    // four AUTH lines are there (the log is written after the replies),
    // so that an empty or partial log cannot pass for a clean one.
    let auth_lines = |result: &str| {
        let wanted = format!("result=\"{result}\"");
        let lines = server.log();
        let auth = |l: &&str| l.contains("user=alice") && l.contains(&wanted);
        lines.lines().filter(auth).count()
    };
    portcullis_integration_tests::wait_until(
        &server,
        "the four AUTH lines",
        std::time::Duration::from_secs(30),
        || auth_lines("rejected") >= 2 && auth_lines("accepted") >= 2,
    );
    let log = server.log();
    assert!(
        log.contains("listening"),
        "the trace log is empty; is PORTCULLIS_LOG honoured?\n{log}"
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [
        "correct horse".to_string(),
        "wrong horse".to_string(),
        b64("correct horse"),
        b64("wrong horse"),
        b64("\0alice\0correct horse"),
        b64("\0alice\0wrong horse"),
    ] {
        assert!(
            !log.contains(&secret),
            "secret {secret:?} found in the server log:\n{log}"
        );
    }
}

#[test]
fn idle_connection_gets_421_4_4_2_and_close() {
    let server = TestServer::start("[limits]\nidle_timeout = \"1s\"\n");
    let (mut client, greeting) =
        portcullis_integration_tests::RawClient::connect(server.submission_port());
    assert_eq!(greeting.code, 220);
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    // Say nothing; the next thing we hear must be the timeout.
    let reply = client.read_reply();
    assert!(
        reply.first_line().starts_with("421 4.4.2"),
        "after idling: {reply:?}"
    );
    assert!(
        client.is_closed(),
        "connection left open after the idle 421"
    );
}

/// The idle timeout counts from the last command, not from the first: a
/// session that keeps talking outlives it many times over, and once it
/// falls silent it gets the 421 one timeout later, not sooner, not never.
#[test]
fn the_idle_timeout_counts_from_the_last_command() {
    let server = TestServer::start("[limits]\nidle_timeout = \"1s\"\n");
    let (mut client, greeting) =
        portcullis_integration_tests::RawClient::connect(server.submission_port());
    assert_eq!(greeting.code, 220);
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(client.cmd("NOOP").code, 250, "cut off while talking");
    }
    let silent = std::time::Instant::now();
    let reply = client.read_reply();
    let waited = silent.elapsed();
    assert!(
        reply.first_line().starts_with("421 4.4.2"),
        "after idling: {reply:?}"
    );
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "the 421 came {waited:?} after the last command"
    );
    assert!(client.is_closed());
}

#[test]
fn connection_over_max_connections_gets_421_and_the_first_keeps_working() {
    let server = TestServer::start("[limits]\nmax_connections = 1\n");
    let (mut first, _) = connect_when_slot_free(server.submission_port());
    let (mut second, refusal) =
        portcullis_integration_tests::RawClient::connect(server.submission_port());
    assert!(
        refusal.first_line().starts_with("421 4.7.0"),
        "second connection: {refusal:?}"
    );
    assert!(second.is_closed(), "refused connection left open");
    assert_eq!(
        first.cmd("EHLO client.test").code,
        250,
        "the first connection must be unaffected"
    );
    assert_eq!(first.cmd("QUIT").code, 221);
    drop(first);
    // The slot is released when the first connection ends.
    let (mut third, _) = connect_when_slot_free(server.submission_port());
    assert_eq!(third.cmd("QUIT").code, 221);
}

/// Connects until the greeting is 220: the harness's readiness probe (and a
/// just-closed connection) holds the only slot until the server sees its EOF.
fn connect_when_slot_free(
    port: u16,
) -> (
    portcullis_integration_tests::RawClient,
    portcullis_integration_tests::Reply,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (client, greeting) = portcullis_integration_tests::RawClient::connect(port);
        if greeting.code == 220 {
            return (client, greeting);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no free connection slot after 5 s: {greeting:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

//! Protocol edges a client can bend: an identity proved before STARTTLS
//! (RFC 3207 §4.2 says it is forgotten), `MAIL FROM ... AUTH=` naming
//! someone else (RFC 4954 §5), bare CR and bare LF inside a body (SMTP
//! smuggling towards a lenient next hop), and control characters in names
//! the server logs.

use base64::Engine as _;
use portcullis_integration_tests::{python, RawClient, TestServer};

/// A STARTTLS listener that also allows AUTH in clear.
const CLEAR_AUTH: &str = "[[listener]]\nname = \"clear\"\naddress = \"127.0.0.1:{port:clear}\"\n\
                          tls = \"starttls\"\nauth = \"required\"\nallow_insecure_auth = true\n";

#[test]
fn starttls_forgets_an_identity_proved_in_clear() {
    let server = TestServer::start(CLEAR_AUTH);
    let (mut client, _) = RawClient::connect(server.port("clear"));
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    let auth = client.auth_plain("alice", "correct horse");
    assert_eq!(auth.code, 235, "AUTH in clear: {auth:?}");
    client.starttls();
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    let mail = client.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!(
        mail.code, 530,
        "the identity proved before STARTTLS survived it: {mail:?}"
    );
    let again = client.auth_plain("alice", "correct horse");
    assert_eq!(again.code, 235, "AUTH inside TLS: {again:?}");
    assert_eq!(client.cmd("MAIL FROM:<alice@example.test>").code, 250);
}

#[test]
fn mail_auth_param_naming_another_identity_is_recorded_as_unknown() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        login("auth", s, "alice", "correct horse", "PLAIN")
        show("other", s.docmd("MAIL", "FROM:<alice@example.test> AUTH=<bob@example.test>"))
        s.rcpt("rcpt@example.test")
        show("other.data", s.data(MSG.replace("python", "other")))
        show("own", s.docmd("MAIL", "FROM:<alice@example.test> AUTH=alice@example.test"))
        s.rcpt("rcpt@example.test")
        show("own.data", s.data(MSG.replace("python", "own")))
        s.quit()
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("auth", "235")
        .assert_reply("other", "250")
        .assert_reply("other.data", "250")
        .assert_reply("own", "250")
        .assert_reply("own.data", "250");
    let messages = server.spool_messages();
    let param = |subject: &str| {
        let message = messages
            .iter()
            .find(|m| m.eml.contains(&format!("Subject: {subject}")))
            .unwrap_or_else(|| panic!("message {subject} not spooled: {messages:#?}"));
        message.meta["mail_auth_param"].as_str().map(String::from)
    };
    assert_eq!(param("other").as_deref(), Some("<>"));
    assert_eq!(param("own").as_deref(), Some("alice@example.test"));
}

/// Each of these bodies carries a line end other than CRLF, followed by a
/// smuggled transaction a lenient next hop would run.
const SMUGGLED: &str = "MAIL FROM:<ceo@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\
                        From: <ceo@example.test>\r\n\r\nPay now.\r\n";

#[test]
fn bare_cr_and_bare_lf_in_a_body_are_stored_as_crlf() {
    let server = TestServer::start("");
    let (mut client, _) = RawClient::connect(server.submission_port());
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    client.starttls();
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    assert_eq!(client.auth_plain("alice", "correct horse").code, 235);
    let bodies: [(&str, String); 4] = [
        ("lf-dot-lf", format!("a\n.\n{SMUGGLED}")),
        ("cr-dot-crlf", format!("a\r.\r\n{SMUGGLED}")),
        ("bare-cr", "one\rtwo\r\n".to_string()),
        ("bare-lf", "one\ntwo\n".to_string()),
    ];
    for (name, body) in &bodies {
        assert_eq!(client.cmd("MAIL FROM:<alice@example.test>").code, 250);
        assert_eq!(client.cmd("RCPT TO:<rcpt@example.test>").code, 250);
        assert_eq!(client.cmd("DATA").code, 354);
        let message =
            format!("From: <alice@example.test>\r\nSubject: {name}\r\n\r\n{body}\r\n.\r\n");
        client.send(message.as_bytes()).expect("body can be sent");
        let reply = client.read_reply();
        assert_eq!(reply.code, 250, "{name}: {reply:?}");
    }
    assert_eq!(client.cmd("QUIT").code, 221);
    let messages = server.spool_messages();
    assert_eq!(messages.len(), bodies.len(), "{messages:#?}");
    for message in &messages {
        let bytes = message.eml.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let bare_cr = b == b'\r' && bytes.get(i + 1) != Some(&b'\n');
            let bare_lf = b == b'\n' && (i == 0 || bytes[i - 1] != b'\r');
            assert!(
                !bare_cr && !bare_lf,
                "bare CR or LF at {i} stored: {:?}",
                message.eml
            );
        }
    }
    for name in ["lf-dot-lf", "cr-dot-crlf"] {
        let message = messages
            .iter()
            .find(|m| m.eml.contains(&format!("Subject: {name}")))
            .expect("each body is spooled");
        assert!(
            message
                .eml
                .contains("a\r\n.\r\nMAIL FROM:<ceo@example.test>"),
            "{name}: the smuggled transaction is not kept as text: {:?}",
            message.eml
        );
    }
}

#[test]
fn control_characters_in_an_auth_name_cannot_forge_a_log_line() {
    let server = TestServer::start("");
    let forged = "2026-01-01T00:00:00.000000Z  INFO portcullis_server::verify: auth \
                  client=192.0.2.1 mechanism=PLAIN user=ceo authz=ceo result=\"accepted\"";
    let authcid = format!("mallory\n{forged}\x1b[2K\r");
    let (mut client, _) = RawClient::connect(server.submission_port());
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    client.starttls();
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{authcid}\0wrong"));
    let reply = client.cmd(&format!("AUTH PLAIN {token}"));
    assert_eq!(reply.code, 535, "{reply:?}");
    assert_eq!(client.cmd("QUIT").code, 221);
    drop(client);

    let log = server.log();
    assert!(log.contains("mallory"), "the attempt is not logged:\n{log}");
    for line in log.lines() {
        assert!(
            !line.contains("result=\"accepted\"") || line.contains("mallory"),
            "a forged line stands on its own in the log: {line:?}\n{log}"
        );
    }
    assert!(!log.contains('\x1b'), "a raw ESC reached the log:\n{log}");
    assert!(!log.contains('\r'), "a raw CR reached the log:\n{log:?}");
}

//! DATA as clients send it: dot-stuffing, PIPELINING, and end-of-data
//! smuggling with bare line feeds.

use portcullis_integration_tests::{python, swaks, RawClient, TestServer, FROM, TO};

#[test]
fn dot_stuffed_lines_are_stored_unstuffed() {
    let server = TestServer::start("");
    let out = python(
        r#"
        s = connect()
        login("auth", s, "alice", "correct horse", "PLAIN")
        body = "Subject: dots\r\n\r\nHello from the portcullis tests.\r\n.leading dot\r\n..two dots\r\n.\r\nafter lone dot? no\r\n"
        # smtplib dot-stuffs: ".leading" goes out as "..leading"; the lone "."
        # line inside the body goes out as "..".
        s.mail(FROM)
        s.rcpt(TO)
        show("data", s.data(body))
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("data", "250");
    let eml = server.single_message().eml;
    assert!(
        eml.contains("\r\n.leading dot\r\n"),
        "leading dot not unstuffed: {eml:?}"
    );
    assert!(
        eml.contains("\r\n..two dots\r\n"),
        "double dot mangled: {eml:?}"
    );
    assert!(
        eml.contains("\r\n.\r\nafter lone dot? no\r\n"),
        "lone dot line lost: {eml:?}"
    );
}

#[test]
fn bare_lf_dot_lf_does_not_end_data_or_smuggle_a_second_message() {
    let server = TestServer::start("");
    let (mut client, _) = RawClient::connect(server.submission_port());
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    client.starttls();
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    assert_eq!(client.auth_plain("alice", "correct horse").code, 235);
    assert_eq!(client.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    assert_eq!(client.cmd(&format!("RCPT TO:<{TO}>")).code, 250);
    assert_eq!(client.cmd("DATA").code, 354);
    let smuggled = format!(
        "Subject: outer\r\n\r\nHello from the portcullis tests.\r\n\n.\nMAIL FROM:<{FROM}>\r\nRCPT TO:<smuggled@example.test>\r\n\
         DATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n.\r\n"
    );
    client.send(smuggled.as_bytes()).expect("data can be sent");
    let end = client.read_reply();
    // Either the whole thing is one message (250) or bare LF is refused (5xx);
    // never a second transaction.
    assert!(end.code == 250 || end.code >= 500, "end of DATA: {end:?}");
    let quit = client.cmd("QUIT");
    assert_eq!(quit.code, 221, "a smuggled command was answered: {quit:?}");
    let messages = server.spool_messages();
    assert!(
        messages.len() <= 1,
        "SMTP smuggling produced {} messages: {messages:#?}",
        messages.len()
    );
    for message in messages {
        assert_eq!(
            message.meta["rcpt_to"],
            serde_json::json!([TO]),
            "smuggled recipient: {:#}",
            message.meta
        );
    }
}

#[test]
fn swaks_pipelined_transaction_is_accepted_and_spooled() {
    let server = TestServer::start("");
    let address = format!("127.0.0.1:{}", server.submission_port());
    let recipients = format!("{TO},second@example.test");
    let out = swaks(&[
        "--server",
        &address,
        "--tls",
        "--pipeline",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "correct horse",
        "--from",
        FROM,
        "--to",
        &recipients,
        "--body",
        "Hello from the portcullis tests.",
    ]);
    out.assert_contains("235 2.7.0").assert_success(true);
    let message = server.single_message();
    message.assert_submitted_by("alice", "PLAIN");
    assert_eq!(
        message.meta["rcpt_to"],
        serde_json::json!([TO, "second@example.test"]),
        "{:#}",
        message.meta
    );
}

//! A 250 after DATA is a promise: the message must survive the server being
//! SIGKILLed the instant the client reads that reply.

use portcullis_integration_tests::{RawClient, TestServer, FROM, TO};

#[test]
fn message_acknowledged_with_250_survives_sigkill() {
    let mut server = TestServer::start("");
    let (mut client, _) = RawClient::connect(server.submission_port());
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    client.starttls();
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    assert_eq!(client.auth_plain("alice", "correct horse").code, 235);
    assert_eq!(client.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    assert_eq!(client.cmd(&format!("RCPT TO:<{TO}>")).code, 250);
    assert_eq!(client.cmd("DATA").code, 354);
    let body = "Subject: durable\r\n\r\nHello from the portcullis tests.\r\n".to_string()
        + &"x".repeat(998)
        + "\r\n";
    client
        .send(format!("{body}.\r\n").as_bytes())
        .expect("message can be sent");
    let accepted = client.read_reply();
    server.kill_hard();
    assert_eq!(accepted.code, 250, "DATA reply: {accepted:?}");

    let message = server.single_message();
    message.assert_submitted_by("alice", "PLAIN");
    assert!(
        message.eml.contains(&"x".repeat(998)),
        "message body truncated"
    );
    assert!(
        message.eml.ends_with("\r\n"),
        "message does not end with CRLF: {:?}",
        &message.eml[message.eml.len().saturating_sub(20)..]
    );
    // `size` counts either the stored file or the bytes the client sent
    // (the file minus the Received: header portcullis prepends).
    let size = message.meta["size"].as_u64().expect("size is a number") as usize;
    let received_len = message
        .eml
        .find("\r\nSubject: durable")
        .map(|i| i + 2)
        .unwrap_or(0);
    assert!(
        size == message.eml.len() || size == message.eml.len() - received_len,
        "size {size} matches neither the .eml ({}) nor the client's bytes ({}): {:#}",
        message.eml.len(),
        message.eml.len() - received_len,
        message.meta
    );

    // The message is in one journal segment, and nothing is left
    // half-written in tmp/.
    let spool = server.data_dir().join("spool");
    let listing = |dir: &str| -> Vec<String> {
        std::fs::read_dir(spool.join(dir))
            .expect("spool directory exists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    let segments = listing("journal");
    assert_eq!(segments.len(), 1, "one journal segment: {segments:?}");
    assert!(listing("tmp").is_empty());

    // A restart over the spool works and keeps the message.
    server.restart();
    let (mut client, greeting) = RawClient::connect(server.submission_port());
    assert_eq!(greeting.code, 220);
    assert_eq!(client.cmd("QUIT").code, 221);
    assert_eq!(
        server.spool_messages().len(),
        1,
        "restart lost or duplicated the spooled message"
    );
}

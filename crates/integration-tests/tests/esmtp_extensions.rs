//! SMTPUTF8, CHUNKING (BDAT) and DSN as real clients use them: Python's
//! smtplib with a UTF-8 sender and recipient, swaks with an 8-bit body,
//! lettre with an internationalised recipient, and raw BDAT chunks. The
//! MTA end of it (Postfix as a client and as the next hop, Dovecot relaying
//! with BDAT) is in `esmtp_postfix.rs`.
//!
//! Each test prints the lines of the client's transcript that show which
//! extension it used (`cargo test -- --nocapture`).

use lettre::message::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::SmtpTransport;
use lettre::Transport as _;
use portcullis_integration_tests::{python, swaks, RawClient, TestServer, ALICE, FROM, TO};

const JUERGEN: &str = "j\u{fc}rgen@b\u{fc}cher.example";
const CHINESE: &str = "\u{7528}\u{6237}@\u{4f8b}\u{5b50}.example";

/// The lines of a transcript that name the extensions under test.
fn extension_lines(transcript: &str) -> Vec<&str> {
    transcript
        .lines()
        .filter(|l| {
            [
                "SMTPUTF8",
                "CHUNKING",
                "DSN",
                "BDAT",
                "MAIL FROM",
                "8BITMIME",
            ]
            .iter()
            .any(|k| l.to_ascii_uppercase().contains(k))
        })
        .collect()
}

fn logged_in(server: &TestServer) -> RawClient {
    let (mut c, _) = RawClient::connect(server.submission_port());
    c.cmd("EHLO client.test");
    c.starttls();
    c.cmd("EHLO client.test");
    assert_eq!(c.auth_plain(ALICE.0, ALICE.1).code, 235);
    c
}

#[test]
fn ehlo_after_auth_lists_smtputf8_chunking_and_dsn() {
    let server = TestServer::start("");
    let mut c = logged_in(&server);
    let ehlo = c.cmd("EHLO client.test");
    for keyword in ["SMTPUTF8", "CHUNKING", "DSN", "8BITMIME", "PIPELINING"] {
        assert!(ehlo.has_line(keyword), "{keyword} missing: {ehlo:?}");
    }
    assert!(!ehlo.has_line("BINARYMIME"), "{ehlo:?}");
}

/// Python's smtplib sends `SMTPUTF8` when asked (`mail_options`), with a
/// UTF-8 sender and recipient and a UTF-8 Subject; all of it is spooled as
/// sent, and the metadata says SMTPUTF8.
#[test]
fn python_smtplib_sends_a_utf8_sender_and_recipient() {
    let server = TestServer::start("");
    let script = format!(
        r#"
        s = connect()
        s.set_debuglevel(1)
        s.login("alice", "correct horse")
        msg = ("From: <{JUERGEN}>\r\nTo: <{CHINESE}>\r\nSubject: Gr\u00fc\u00dfe\r\n\r\n"
               "Sch\u00f6ne Gr\u00fc\u00dfe.\r\n").encode("utf-8")
        refused = s.sendmail("{JUERGEN}", ["{CHINESE}"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        say(f"refused: {{refused!r}}")
        s.command_encoding = "utf-8"  # the bytes as they are, without the option
        show("no-smtputf8", s.mail("{JUERGEN}"))
        s.quit()
        "#
    );
    let out = python(&script, &[server.submission_port()]);
    println!("smtplib: {:#?}", extension_lines(&out.stderr));
    out.assert_contains("refused: {}");
    out.assert_reply("no-smtputf8", "553 5.6.7");
    assert!(
        out.stderr.contains("SMTPUTF8"),
        "smtplib sent SMTPUTF8: {}",
        out.transcript()
    );
    let message = server.single_message();
    assert_eq!(message.meta["mail_from"], JUERGEN);
    assert_eq!(message.meta["rcpt_to"][0], CHINESE);
    assert_eq!(message.meta["smtputf8"], true);
    assert!(
        message
            .eml
            .contains("Subject: Gr\u{fc}\u{df}e\r\n\r\nSch\u{f6}ne Gr\u{fc}\u{df}e.\r\n"),
        "{}",
        message.eml
    );
}

/// swaks with an 8-bit body (Debian's swaks 20201014 has no `--8bit`
/// switch; it sends the UTF-8 body as given) and pipelining: kept as sent.
#[test]
fn swaks_sends_an_8bit_body_pipelined() {
    let server = TestServer::start("");
    let port = server.submission_port().to_string();
    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{port}"),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "correct horse",
        "--from",
        FROM,
        "--to",
        TO,
        "--pipeline",
        "--header",
        "Subject: 8bit",
        "--add-header",
        "Content-Type: text/plain; charset=utf-8",
        "--add-header",
        "Content-Transfer-Encoding: 8bit",
        "--body",
        "Gr\u{fc}\u{df}e aus K\u{f6}ln",
    ]);
    println!("swaks: {:#?}", extension_lines(&out.stdout));
    out.assert_success(true);
    out.assert_contains("250-SMTPUTF8")
        .assert_contains("250-CHUNKING");
    let message = server.single_message();
    assert!(
        message.eml.contains("Gr\u{fc}\u{df}e aus K\u{f6}ln"),
        "{}",
        message.eml
    );
}

/// lettre adds `SMTPUTF8` by itself for a non-ASCII address when the server
/// offers it (and refuses to send otherwise).
#[test]
fn lettre_sends_to_an_internationalised_recipient() {
    let server = TestServer::start("");
    let params = TlsParameters::builder("localhost".to_string())
        .certificate_store(CertificateStore::None)
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .expect("rustls TLS parameters build");
    let transport = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.submission_port())
        .tls(Tls::Required(params))
        .credentials(Credentials::new(ALICE.0.into(), ALICE.1.into()))
        .authentication(vec![Mechanism::Plain])
        .timeout(Some(std::time::Duration::from_secs(15)))
        .build();
    let message = Message::builder()
        .from(FROM.parse().expect("valid mailbox"))
        .to(CHINESE.parse().expect("lettre takes a UTF-8 mailbox"))
        .subject("Gr\u{fc}\u{df}e")
        .body("Sch\u{f6}ne Gr\u{fc}\u{df}e.\r\n".to_string())
        .expect("message builds");
    transport
        .send(&message)
        .expect("lettre sends with SMTPUTF8");
    let spooled = server.single_message();
    assert_eq!(spooled.meta["rcpt_to"][0], CHINESE);
    assert_eq!(spooled.meta["smtputf8"], true, "lettre sent SMTPUTF8");
}

/// BDAT chunks, pipelined in one write, with a line that would end DATA
/// and one that looks like a command: stored byte for byte like the same
/// message sent with DATA. The `250` to `BDAT ... LAST` is the queued reply.
#[test]
fn bdat_chunks_are_stored_like_the_data_form() {
    let server = TestServer::start("");
    let body = "Subject: chunks\r\n\r\n.\r\nQUIT\r\n..two dots\r\nlast line\r\n";
    let mut c = logged_in(&server);
    let (first, second) = body.split_at(20);
    let pipelined = format!(
        "MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nBDAT {}\r\n{first}BDAT {} LAST\r\n{second}",
        first.len(),
        second.len()
    );
    c.send(pipelined.as_bytes()).unwrap();
    let replies: Vec<String> = (0..4).map(|_| c.read_reply().first_line()).collect();
    println!("raw BDAT: {replies:#?}");
    assert!(replies[2].starts_with("250 2.0.0 20 octets"), "{replies:?}");
    assert!(
        replies[3].starts_with("250 2.0.0 OK queued as"),
        "{replies:?}"
    );
    assert_eq!(c.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{TO}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let stuffed = body.replace("\r\n.", "\r\n..");
    c.send(format!("{stuffed}.\r\n").as_bytes()).unwrap();
    assert_eq!(c.read_reply().code, 250);
    let mut bodies: Vec<String> = server
        .spool_messages()
        .into_iter()
        .map(|m| {
            m.eml
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap()
        })
        .collect();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        1,
        "BDAT and DATA stored the same: {bodies:#?}"
    );
    assert_eq!(bodies[0], ".\r\nQUIT\r\n..two dots\r\nlast line\r\n");
}

//! SMTPUTF8, DSN and CHUNKING between portcullis and real MTAs: a private
//! Postfix instance (Debian's `postfix`, see [`PostfixRelay`]) as a
//! client relaying to us, as the next hop we relay to, and as a next hop
//! that offers neither SMTPUTF8 nor DSN; and Dovecot's submission service
//! ([`DovecotSubmission`]) relaying to us with BDAT (Postfix's SMTP client
//! never sends BDAT: Postfix implements CHUNKING as a server only).
//!
//! Both log every command they exchange with us (Postfix:
//! `debug_peer_list`; Dovecot: `log_debug = category=smtp-client`); the
//! tests print the lines that show which extension was used
//! (`cargo test -- --nocapture`).
//!
//! Postfix and Dovecot need root: without it (or without the packages)
//! each test says so and passes without running, like the other
//! service-backed tests.

use std::time::Duration;

use portcullis_integration_tests::{
    python, wait_until, DovecotSubmission, PostfixRelay, RawClient, TestServer, ALICE, FROM,
};

const JUERGEN: &str = "j\u{fc}rgen@b\u{fc}cher.example";
const CHINESE: &str = "\u{7528}\u{6237}@\u{4f8b}\u{5b50}.example";
const FAST: &str = "[delivery]\nscan_interval = \"100ms\"\nretry_initial = \"200ms\"\nretry_max = \"500ms\"\nconnect_timeout = \"5s\"\ncommand_timeout = \"20s\"\n";
const WAIT: Duration = Duration::from_secs(60);

fn postfix(main_cf_extra: &str) -> Option<PostfixRelay> {
    let started = PostfixRelay::start(main_cf_extra);
    if started.is_none() {
        eprintln!("skipped: needs Debian's postfix and root");
    }
    started
}

/// The SMTP lines Postfix logged that name an extension or carry mail.
fn transcript(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("[127.0.0.1]"))
        .filter(|l| {
            [
                "EHLO",
                "MAIL FROM",
                "RCPT TO",
                "BDAT",
                ": DATA",
                "SMTPUTF8",
                "CHUNKING",
                "DSN",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect()
}

/// Submits a message as alice over STARTTLS with the given MAIL and RCPT
/// lines; panics unless it is queued.
fn submit(server: &TestServer, mail: &str, rcpts: &[&str], message: &str) {
    let (mut c, _) = RawClient::connect(server.submission_port());
    c.cmd("EHLO client.test");
    c.starttls();
    c.cmd("EHLO client.test");
    assert_eq!(c.auth_plain(ALICE.0, ALICE.1).code, 235);
    let reply = c.cmd(mail);
    assert_eq!(reply.code, 250, "{mail}: {reply:?}");
    for rcpt in rcpts {
        let reply = c.cmd(rcpt);
        assert_eq!(reply.code, 250, "{rcpt}: {reply:?}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(format!("{message}.\r\n").as_bytes()).unwrap();
    let reply = c.read_reply();
    assert_eq!(reply.code, 250, "{reply:?}");
    let _ = c.cmd("QUIT");
}

fn maildir_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Postfix relays an SMTPUTF8 message with DSN requests to us: it sees
/// CHUNKING, SMTPUTF8 and DSN in our EHLO and passes SMTPUTF8, RET, ENVID
/// and NOTIFY on, which we record. Postfix's SMTP client sends the data
/// with DATA: it implements CHUNKING only as a server (Postfix 3.4 and
/// later), so it never sends BDAT whatever we offer.
#[test]
fn postfix_relays_smtputf8_and_dsn_requests_to_us() {
    let server = TestServer::start(
        "[[listener]]\nname = \"relay\"\naddress = \"127.0.0.1:{port:relay}\"\ntls = \"none\"\nauth = \"disabled\"\n",
    );
    let Some(postfix) = postfix(&format!(
        "default_transport = smtp\nheader_checks =\nrelayhost = [127.0.0.1]:{}\n",
        server.port("relay")
    )) else {
        return;
    };
    let script = format!(
        r#"
        s = connect(starttls=False)
        msg = ("From: <{JUERGEN}>\r\nTo: <{CHINESE}>\r\nSubject: Gr\u00fc\u00dfe\r\n\r\n"
               "Sch\u00f6ne Gr\u00fc\u00dfe.\r\n").encode("utf-8")
        refused = s.sendmail("{JUERGEN}", ["{CHINESE}"], msg,
                             mail_options=["SMTPUTF8", "BODY=8BITMIME", "RET=HDRS", "ENVID=QQ314159"],
                             rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
        say(f"refused: {{refused!r}}")
        s.quit()
        "#
    );
    python(&script, &[postfix.port()]).assert_contains("refused: {}");
    wait_until(&server, "Postfix to relay the message to us", WAIT, || {
        server.spool_len() == 1
    });
    let log = postfix.log();
    println!("postfix as client: {:#?}", transcript(&log));
    let message = server.single_message();
    assert_eq!(message.meta["mail_from"], JUERGEN);
    assert_eq!(message.meta["rcpt_to"][0], CHINESE);
    assert_eq!(message.meta["smtputf8"], true, "{:#}", message.meta);
    assert_eq!(message.meta["dsn"]["ret"], "HDRS", "{:#}", message.meta);
    assert_eq!(message.meta["dsn"]["envid"], "QQ314159");
    assert_eq!(
        message.meta["dsn"]["recipients"][0]["notify"],
        "SUCCESS,FAILURE"
    );
    assert!(
        message.eml.contains("Subject: Gr\u{fc}\u{df}e\r\n"),
        "{}",
        message.eml
    );
    assert!(log.contains("250-CHUNKING"), "Postfix saw CHUNKING:\n{log}");
    assert!(log.contains(" SMTPUTF8"), "{log}");
}

/// We relay to Postfix: SMTPUTF8, RET, ENVID, NOTIFY and ORCPT go with the
/// message (Postfix logs the commands and keeps the DSN records), and the
/// UTF-8 envelope and header arrive intact.
#[test]
fn postfix_next_hop_receives_smtputf8_and_dsn_parameters() {
    let Some(postfix) = postfix("") else {
        return;
    };
    let server = TestServer::start(&format!(
        "{FAST}[[route]]\nname = \"postfix\"\ntransport = \"smtp\"\naddress = \"127.0.0.1:{}\"\ntls = \"none\"\n",
        postfix.port()
    ));
    submit(
        &server,
        &format!("MAIL FROM:<{JUERGEN}> SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=x"),
        &[
            "RCPT TO:<rcpt@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+40example.test",
            &format!("RCPT TO:<{CHINESE}>"),
        ],
        "From: <j\u{fc}rgen@b\u{fc}cher.example>\r\nSubject: Gr\u{fc}\u{df}e\r\n\r\nSch\u{f6}ne Gr\u{fc}\u{df}e.\r\n",
    );
    wait_until(&server, "the message on hold in Postfix", WAIT, || {
        postfix.held_messages().len() == 1
    });
    wait_until(&server, "our spool to empty", WAIT, || {
        server.spool_len() == 0
    });
    let log = postfix.log();
    println!("postfix as next hop: {:#?}", transcript(&log));
    assert!(
        log.contains(&format!("MAIL FROM:<{JUERGEN}>"))
            && log.contains("SMTPUTF8 RET=HDRS ENVID=x"),
        "{log}"
    );
    assert!(
        log.contains(
            "RCPT TO:<rcpt@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@example.test"
        ),
        "{log}"
    );
    let held = postfix.held_messages().remove(0);
    println!("postcat: {held}");
    for expected in [
        &format!("sender: {JUERGEN}"),
        &format!("recipient: {CHINESE}"),
        "Subject: Gr\u{fc}\u{df}e",
        "Sch\u{f6}ne Gr\u{fc}\u{df}e.",
        "with UTF8SMTP id",
        "envelope_id=x",
        "ret_flags=2",    // RET=HDRS
        "notify_flags=6", // SUCCESS,FAILURE
        "dsn_orig_rcpt=rfc822;orig@example.test",
    ] {
        assert!(held.contains(expected), "{expected:?} not in:\n{held}");
    }
}

/// A next hop that offers neither SMTPUTF8 nor DSN (Postfix with
/// `smtputf8_enable = no` and DSN discarded from its EHLO): the
/// internationalised message is not sent (no MAIL) and its bounce says
/// 5.6.7, except to the recipient that asked for none (NOTIFY=NEVER); an
/// ASCII message that asked for NOTIFY=SUCCESS is relayed, and since the
/// next hop cannot take the request over, we report "relayed".
#[test]
fn next_hop_without_smtputf8_or_dsn() {
    let Some(postfix) = postfix("smtputf8_enable = no\nsmtpd_discard_ehlo_keywords = dsn\n") else {
        return;
    };
    let server = TestServer::start(&format!(
        "{FAST}[[route]]\nname = \"local\"\ndomains = [\"b\u{fc}cher.example\", \"example.test\"]\n\
         transport = \"maildir\"\npath = \"mail\"\n\
         [[route]]\nname = \"postfix\"\ntransport = \"smtp\"\naddress = \"127.0.0.1:{}\"\ntls = \"none\"\n",
        postfix.port()
    ));
    submit(
        &server,
        &format!("MAIL FROM:<{JUERGEN}> SMTPUTF8 ENVID=intl"),
        &[
            &format!("RCPT TO:<{CHINESE}>"),
            "RCPT TO:<never@remote.example> NOTIFY=NEVER",
        ],
        "Subject: Gr\u{fc}\u{df}e\r\n\r\nhi\r\n",
    );
    submit(
        &server,
        &format!("MAIL FROM:<{FROM}> ENVID=ascii"),
        &["RCPT TO:<told@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;told+40remote.example"],
        "Subject: ascii\r\n\r\nhi\r\n",
    );
    let bounces = server.data_dir().join("mail").join(JUERGEN).join("new");
    let reports = server.data_dir().join("mail").join(FROM).join("new");
    wait_until(
        &server,
        "the 5.6.7 bounce and the success report",
        WAIT,
        || maildir_files(&bounces).len() == 1 && maildir_files(&reports).len() == 1,
    );
    let bounce = maildir_files(&bounces).remove(0);
    println!("bounce: {bounce}");
    assert!(
        bounce.contains(&format!(
            "Final-Recipient: utf-8; {CHINESE}\nAction: failed\nStatus: 5.6.7"
        )),
        "{bounce}"
    );
    assert!(bounce.contains("Original-Envelope-Id: intl"), "{bounce}");
    assert!(
        bounce.contains("Content-Type: message/global-delivery-status")
            && bounce.contains("Content-Type: message/global-headers"),
        "RFC 6533 parts for an internationalised message: {bounce}"
    );
    assert!(
        bounce.contains("Subject: Gr\u{fc}\u{df}e\n"),
        "UTF-8 header kept in the Maildir: {bounce}"
    );
    assert!(
        !bounce.contains("never@remote.example"),
        "NOTIFY=NEVER: {bounce}"
    );
    let report = maildir_files(&reports).remove(0);
    println!("success report: {report}");
    assert!(
        report.contains("Subject: Successful Mail Delivery Report"),
        "{report}"
    );
    assert!(
        report.contains("Original-Recipient: rfc822;told@remote.example\nFinal-Recipient: rfc822; told@remote.example\nAction: relayed\nStatus: 2.0.0"),
        "{report}"
    );
    let log = postfix.log();
    println!("postfix without SMTPUTF8/DSN: {:#?}", transcript(&log));
    assert!(
        !log.contains(&format!("MAIL FROM:<{JUERGEN}")),
        "not sent: {log}"
    );
    assert!(log.contains(&format!("MAIL FROM:<{FROM}>")), "{log}");
    assert!(
        !log.contains("NOTIFY="),
        "no DSN parameters to a next hop without DSN: {log}"
    );
}

/// Dovecot's submission service relaying to us: its SMTP client sees
/// CHUNKING and sends the message with `BDAT … LAST`, which we store byte
/// for byte as sent, 8-bit text included.
#[test]
fn dovecot_submission_relays_to_us_with_bdat() {
    let server = TestServer::start(
        "[[listener]]\nname = \"relay\"\naddress = \"127.0.0.1:{port:relay}\"\ntls = \"none\"\nauth = \"disabled\"\n",
    );
    let Some(dovecot) = DovecotSubmission::start(server.port("relay")) else {
        eprintln!("skipped: needs Debian's dovecot-submissiond and root");
        return;
    };
    let script = format!(
        r#"
        s = connect(starttls=False)
        s.login("alice", "{}")
        msg = ("From: <alice@example.test>\r\nSubject: Gr\u00fc\u00dfe\r\n\r\n"
               ".a line with a leading dot\r\nSch\u00f6ne Gr\u00fc\u00dfe.\r\n").encode("utf-8")
        say(f"refused: {{s.sendmail('alice@example.test', ['rcpt@example.test'], msg, mail_options=['BODY=8BITMIME'])!r}}")
        s.quit()
        "#,
        DovecotSubmission::PASSWORD
    );
    python(&script, &[dovecot.port()]).assert_contains("refused: {}");
    wait_until(&server, "Dovecot to relay the message to us", WAIT, || {
        server.spool_len() == 1
    });
    let log = dovecot.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Sent:") || l.contains("CHUNKING"))
        .collect();
    println!("dovecot submission as client: {lines:#?}");
    assert!(
        log.contains("command BDAT: Sent: BDAT "),
        "Dovecot used BDAT:\n{log}"
    );
    let message = server.single_message();
    assert!(
        message.eml.ends_with(
            "Subject: Gr\u{fc}\u{df}e\r\n\r\n.a line with a leading dot\r\nSch\u{f6}ne Gr\u{fc}\u{df}e.\r\n"
        ),
        "{}",
        message.eml
    );
}

//! portcullis as Postfix's policy service (`check_policy_service`): a
//! private Postfix authenticates through our Dovecot-protocol listener and
//! asks our policy listener about each recipient. A user who logged in is
//! let through (`DUNNO`); once the client's address is banned, its next
//! recipient is deferred (`450 4.7.1` from Postfix) in the same session.

use portcullis_integration_tests::{portcullis_bin, python, PostfixServer, TestServer};

#[test]
fn an_address_banned_after_login_is_deferred_at_the_next_recipient() {
    if !PostfixServer::available() {
        eprintln!("skipped: postfix is not installed or the tests do not run as root");
        return;
    }
    let server = TestServer::builder()
        .config(
            "[limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n\n\
             [[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{port:mta}\"\n\n\
             [[auth_listener]]\nname = \"policy\"\nprotocol = \"postfix-policy\"\n\
             address = \"127.0.0.1:{port:policy}\"\n",
        )
        .start();
    let postfix = PostfixServer::builder()
        .dovecot_sasl(&format!("inet:127.0.0.1:{}", server.port("mta")))
        .policy_service(&format!("inet:127.0.0.1:{}", server.port("policy")))
        .start()
        .expect("postfix starts");
    let ban = format!(
        "[{:?}, 'ban', 'add', '127.0.0.8', '--duration', '1h', '--config', {:?}]",
        portcullis_bin().display().to_string(),
        server.config_path().display().to_string()
    );
    let script = format!(
        r#"
        import subprocess, time
        s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=30,
                         source_address=("127.0.0.8", 0))
        s.ehlo()
        login("login", s, "alice", "correct horse", "PLAIN")
        show("mail", s.mail(FROM))
        show("before", s.rcpt("first@example.test"))
        subprocess.run({ban}, check=True, capture_output=True)
        # The server reloads the ban file within a second of the change.
        deadline = time.time() + 20
        while True:
            reply = s.rcpt("next@example.test")
            if reply[0] != 250 or time.time() > deadline:
                break
            time.sleep(0.2)
        show("after", reply)
        s.quit()
        "#
    );
    let out = python(&script, &[postfix.port()]);
    out.assert_reply("login", "235 ");
    out.assert_reply("before", "250 ");
    out.assert_reply("after", "450 4.7.1");
    let log = server.log();
    assert!(log.contains("address banned since it logged in"), "{log}");
}

/// Per-identity sending limits through Postfix: with one message an hour,
/// the user's first message passes and the second is deferred at DATA
/// (`450 4.7.1` from Postfix, the limit named), counted by the policy
/// service as a message submitted here would be.
#[test]
fn a_user_over_its_sending_limit_is_deferred_by_postfix() {
    if !PostfixServer::available() {
        eprintln!("skipped: postfix is not installed or the tests do not run as root");
        return;
    }
    let server = TestServer::builder()
        .config(
            "[limits.sending]\nmessages = [\"1/h\"]\n\n\
             [[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{port:mta}\"\n\n\
             [[auth_listener]]\nname = \"policy\"\nprotocol = \"postfix-policy\"\n\
             address = \"127.0.0.1:{port:policy}\"\n",
        )
        .start();
    let postfix = PostfixServer::builder()
        .dovecot_sasl(&format!("inet:127.0.0.1:{}", server.port("mta")))
        .policy_service(&format!("inet:127.0.0.1:{}", server.port("policy")))
        .start()
        .expect("postfix starts");
    let script = r#"
s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=30)
s.ehlo()
login("login", s, "alice", "correct horse", "PLAIN")
for n in ("first", "second"):
    show(n + ".mail", s.mail(FROM))
    show(n + ".rcpt", s.rcpt(TO))
    try:
        show(n + ".data", s.data(MSG))
    except smtplib.SMTPDataError as e:
        show(n + ".data", (e.smtp_code, e.smtp_error))
    s.rset()
s.quit()
"#;
    let out = python(script, &[postfix.port()]);
    out.assert_reply("login", "235 ");
    out.assert_reply("first.data", "250 ");
    out.assert_reply("second.rcpt", "250 ");
    out.assert_reply("second.data", "450 4.7.1");
    assert!(
        out.reply("second.data").contains("messages"),
        "the limit is named: {}",
        out.transcript()
    );
}

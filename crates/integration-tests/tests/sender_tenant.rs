//! Authorization after AUTH through a real client: envelope senders the
//! user does not own get `553 5.7.1`; a message naming a tenant its
//! authorization identity may not use gets `550 5.7.1` and is not spooled;
//! the tenant header is removed from what is.

use portcullis_integration_tests::{python, TestServer};

#[test]
fn senders_and_tenants_are_authorized_and_refusals_leave_the_spool_empty() {
    let server = TestServer::builder()
        .config(
            "[senders]\ndomains = [\"example.test\"]\n\
             [tenant.'acme']\nrequire_authz = [\"alice\"]\n\
             [tenant.'globex']\nrequire_authz = [\"bob\"]\n",
        )
        .start();
    let allow = server
        .cli(&["user", "allow", "alice", "sales@example.test"])
        .output()
        .unwrap();
    assert!(allow.status.success(), "{allow:?}");
    let out = python(
        r#"
        def message(tenant):
            return (f"From: <alice@example.test>\r\nTo: <rcpt@example.test>\r\n"
                    f"X-Tenant: {tenant}\r\nSubject: tenant\r\n\r\nHello.\r\n")
        s = connect()
        login("auth", s, "alice", "correct horse", "PLAIN")
        show("foreign", s.docmd("MAIL", "FROM:<bob@example.test>"))
        show("alias", s.docmd("MAIL", "FROM:<sales@example.test>"))
        s.rset()
        show("own", s.docmd("MAIL", "FROM:<alice@example.test>"))
        s.rcpt("rcpt@example.test")
        show("acme", s.data(message("acme")))
        s.mail("alice@example.test"); s.rcpt("rcpt@example.test")
        show("globex", s.data(message("globex")))
        s.quit()
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("auth", "235")
        .assert_reply("foreign", "553 5.7.1")
        .assert_reply("alias", "250")
        .assert_reply("own", "250")
        .assert_reply("acme", "250")
        .assert_reply("globex", "550 5.7.1");
    let message = server.single_message();
    assert!(
        !message.eml.to_ascii_lowercase().contains("x-tenant"),
        "tenant header kept: {}",
        message.eml
    );
}

#[test]
fn from_header_check_refuses_a_forged_from_and_spools_nothing() {
    let server = TestServer::builder()
        .config("[senders]\ndomains = [\"example.test\"]\ncheck_from_header = true\n")
        .start();
    let out = python(
        r#"
        forged = ("From: \"The Boss\" <boss@example.test>\r\nTo: <rcpt@example.test>\r\n"
                  "Subject: pay this\r\n\r\nUrgent.\r\n")
        s = connect()
        login("auth", s, "alice", "correct horse", "PLAIN")
        s.mail("alice@example.test"); s.rcpt("rcpt@example.test")
        show("forged", s.data(forged))
        s.quit()
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("auth", "235")
        .assert_reply("forged", "550 5.7.1");
    assert!(server.spool_messages().is_empty());
}

//! XCLIENT (Postfix's extension) driven by Python's smtplib `docmd`: a
//! proxy in the listener's trusted networks names the real client and its
//! login and gets a fresh `220`; the message is spooled as that user, with
//! the proxy's own address beside the client's. From anywhere else XCLIENT
//! is neither advertised nor obeyed (`550 5.7.0`).

use portcullis_integration_tests::{python, TestServer, ALICE};

fn server() -> TestServer {
    TestServer::builder()
        .without_default_listeners()
        .config(
            "[[listener]]\nname = \"proxied\"\naddress = \"127.0.0.1:{port:proxied}\"\n\
             tls = \"starttls\"\nxclient_trusted = [\"127.0.0.1/32\", \"::1\"]\n\n\
             [[listener]]\nname = \"direct\"\naddress = \"127.0.0.1:{port:direct}\"\n\
             tls = \"starttls\"\nxclient_trusted = [\"10.0.0.0/8\"]\n",
        )
        .start()
}

#[test]
fn trusted_proxy_login_is_spooled_with_both_addresses() {
    let server = server();
    let out = python(
        r#"
        s = connect()
        print("ehlo: " + s.ehlo_resp.decode().replace("\n", " | "), flush=True)
        show("xclient", s.docmd("XCLIENT", "NAME=laptop.example ADDR=192.0.2.7 PORT=4711 "
                                "PROTO=ESMTP HELO=laptop LOGIN=alice DESTADDR=[UNAVAILABLE]"))
        show("ehlo2", s.ehlo())
        show("auth", s.docmd("AUTH", "PLAIN " + b64("\0alice\0correct horse")))
        submit("m", s)
        s.quit()
        "#,
        &[server.port("proxied")],
    );
    assert!(
        out.reply("ehlo")
            .contains("XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT"),
        "{}",
        out.transcript()
    );
    out.assert_reply("xclient", "220 mx.test ESMTP")
        .assert_reply("ehlo2", "250")
        .assert_reply("auth", "503 5.5.1")
        .assert_reply("m.mail", "250 2.1.0")
        .assert_reply("m.data", "250 2.0.0");
    let message = server.single_message();
    let meta = &message.meta;
    assert_eq!(
        message.auth_field("authn_id").as_deref(),
        Some(ALICE.0),
        "{meta:#}"
    );
    assert_eq!(
        message.auth_field("mechanism").as_deref(),
        Some("XCLIENT"),
        "{meta:#}"
    );
    assert_eq!(meta["client_addr"], "192.0.2.7:4711", "{meta:#}");
    let proxy = meta["xclient"]["proxy_addr"].as_str().unwrap_or_default();
    assert!(proxy.starts_with("127.0.0.1:"), "{meta:#}");
    assert_eq!(meta["xclient"]["login"], ALICE.0, "{meta:#}");
    assert_eq!(meta["xclient"]["name"], "laptop.example", "{meta:#}");
    assert!(meta["xclient"].get("dest_addr").is_none(), "{meta:#}");
    let received = message.first_header();
    assert!(
        received.contains("laptop") && received.contains("192.0.2.7"),
        "{received}"
    );
}

#[test]
fn untrusted_client_gets_550_and_stays_unauthenticated() {
    let server = server();
    let out = python(
        r#"
        s = connect()
        print("ehlo: " + s.ehlo_resp.decode().replace("\n", " | "), flush=True)
        show("xclient", s.docmd("XCLIENT", "LOGIN=alice ADDR=192.0.2.7"))
        show("mail", s.mail(FROM))
        s.quit()
        "#,
        &[server.port("direct")],
    );
    assert!(
        !out.reply("ehlo").contains("XCLIENT"),
        "{}",
        out.transcript()
    );
    out.assert_reply("xclient", "550 5.7.0")
        .assert_reply("mail", "530 5.7.0");
    assert!(server.spool_messages().is_empty());
}

/// A user the proxy names with `LOGIN=` is held to the senders it owns,
/// like one who logged in with AUTH; a second `LOGIN=` takes the first
/// user's senders away.
#[test]
fn senders_are_checked_for_a_proxy_named_login() {
    let server = TestServer::builder()
        .without_default_listeners()
        .config(
            "[senders]\ndomains = [\"example.test\"]\n\n\
             [[listener]]\nname = \"proxied\"\naddress = \"127.0.0.1:{port:proxied}\"\n\
             tls = \"starttls\"\nxclient_trusted = [\"127.0.0.1/32\", \"::1\"]\n",
        )
        .start();
    let out = python(
        r#"
        s = connect()
        # Pipelined on purpose: the MAIL must see the rule for alice.
        s.send(b"XCLIENT LOGIN=alice ADDR=192.0.2.7\r\nEHLO client.test\r\nMAIL FROM:<ceo@example.test>\r\n")
        show("xclient", s.getreply())
        show("ehlo", s.getreply())
        show("forged", s.getreply())
        show("rset", s.rset())
        show("own", s.mail("alice@example.test"))
        show("rset2", s.rset())
        show("relogin", s.docmd("XCLIENT", "LOGIN=bob"))
        s.ehlo()
        show("alices", s.mail("alice@example.test"))
        s.quit()
        "#,
        &[server.port("proxied")],
    );
    out.assert_reply("xclient", "220")
        .assert_reply("forged", "553 5.7.1")
        .assert_reply("own", "250 2.1.0")
        .assert_reply("relogin", "220")
        .assert_reply("alices", "553 5.7.1");
    assert!(server.spool_messages().is_empty());
}

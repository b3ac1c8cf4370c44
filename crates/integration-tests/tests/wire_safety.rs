//! Attacks and abuse on the wire: STARTTLS command injection (CVE-2011-0411
//! class), over-long lines, endless lines.

use portcullis_integration_tests::{python, RawClient, TestServer};

#[test]
fn starttls_discards_commands_pipelined_in_the_same_packet() {
    let server = TestServer::start("");
    let (mut client, greeting) = RawClient::connect(server.submission_port());
    assert_eq!(greeting.code, 220, "{greeting:?}");
    let ehlo = client.cmd("EHLO client.test");
    assert!(ehlo.has_line("STARTTLS"), "STARTTLS not offered: {ehlo:?}");

    client
        .send(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<injected@example.test>\r\n")
        .expect("one write");
    let ready = client.read_reply();
    assert_eq!(ready.code, 220, "STARTTLS reply: {ready:?}");
    // upgrade() also fails if a plaintext reply to NOOP followed the 220.
    client.upgrade();

    let ehlo = client.cmd("EHLO client.test");
    assert_eq!(ehlo.code, 250, "first reply inside TLS: {ehlo:?}");
    assert!(
        ehlo.has_line("AUTH"),
        "first reply inside TLS is not the EHLO reply (injected NOOP answered?): {ehlo:?}"
    );
    let quit = client.cmd("QUIT");
    assert_eq!(
        quit.code, 221,
        "a reply to an injected command arrived inside TLS: {quit:?}"
    );
}

#[test]
fn starttls_injection_is_discarded_for_python_ssl_client() {
    let server = TestServer::start("");
    let out = python(
        r#"
        raw = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        f = raw.makefile("rb")
        def reply(f):
            lines = []
            while True:
                line = f.readline().decode().rstrip("\r\n")
                lines.append(line)
                if len(line) < 4 or line[3] != "-":
                    return " | ".join(lines)
        print("greeting: " + reply(f))
        raw.sendall(b"EHLO client.test\r\n")
        print("ehlo: " + reply(f))
        raw.sendall(b"STARTTLS\r\nNOOP\r\nRSET\r\n")
        print("starttls: " + reply(f))
        # No plaintext may follow the 220: the injected commands are dropped.
        raw.settimeout(0.5)
        try:
            extra = raw.recv(1, socket.MSG_PEEK)
        except (socket.timeout, BlockingIOError):
            extra = b""
        print(f"plaintext_after_220: {extra!r}")
        raw.settimeout(10)
        tls = ctx().wrap_socket(raw, server_hostname="localhost")
        tf = tls.makefile("rb")
        tls.sendall(b"EHLO client.test\r\n")
        print("tls.first: " + reply(tf))
        tls.sendall(b"QUIT\r\n")
        print("tls.second: " + reply(tf))
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("starttls", "220")
        .assert_reply("tls.first", "250")
        .assert_reply("tls.second", "221");
    assert_eq!(
        out.reply("plaintext_after_220"),
        "b''",
        "{}",
        out.transcript()
    );
    assert!(
        out.reply("tls.first").to_ascii_uppercase().contains("AUTH"),
        "first TLS reply is not the EHLO reply\n{}",
        out.transcript()
    );
}

#[test]
fn line_of_64_kib_gets_500_5_5_6_and_session_continues() {
    let server = TestServer::start("");
    let (mut client, _) = RawClient::connect(server.submission_port());
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    let mut long = b"NOOP ".to_vec();
    long.resize(64 * 1024, b'a');
    long.extend_from_slice(b"\r\n");
    client.send(&long).expect("long line can be sent");
    let reply = client.read_reply();
    assert!(
        reply.first_line().starts_with("500 5.5.6"),
        "over-long line: {reply:?}"
    );
    let noop = client.cmd("NOOP");
    assert_eq!(
        noop.code, 250,
        "session unusable after an over-long line: {noop:?}"
    );

    // The same inside TLS, where an AUTH continuation line could be long.
    client.starttls();
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    client
        .send(&long)
        .expect("long line can be sent inside TLS");
    let reply = client.read_reply();
    assert!(
        reply.first_line().starts_with("500 5.5.6"),
        "over-long line inside TLS: {reply:?}"
    );
    let auth = client.auth_plain("alice", "correct horse");
    assert!(
        auth.first_line().starts_with("235 2.7.0"),
        "AUTH after over-long line: {auth:?}"
    );
}

#[test]
fn endless_line_then_close_leaves_server_accepting() {
    let mut server = TestServer::start("");
    let (mut client, _) = RawClient::connect(server.submission_port());
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        // The server may cut us off early; that is fine, keep going until it does.
        if client.send(&chunk).is_err() {
            break;
        }
    }
    drop(client);

    for _ in 0..3 {
        let (mut fresh, greeting) = RawClient::connect(server.submission_port());
        assert_eq!(
            greeting.code, 220,
            "new connection after an endless line: {greeting:?}"
        );
        assert_eq!(fresh.cmd("EHLO client.test").code, 250);
        fresh.starttls();
        assert_eq!(fresh.cmd("EHLO client.test").code, 250);
        let auth = fresh.auth_plain("alice", "correct horse");
        assert_eq!(auth.code, 235, "{auth:?}");
    }
    assert!(
        server.is_running(),
        "server died after an endless line\n{}",
        server.log()
    );
}

#[test]
fn endless_line_inside_tls_is_cut_off_without_killing_the_server() {
    let mut server = TestServer::start("");
    let (mut client, _) = RawClient::connect_tls(server.implicit_port());
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        if client.send(&chunk).is_err() {
            break;
        }
    }
    drop(client);
    let (mut fresh, greeting) = RawClient::connect_tls(server.implicit_port());
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(fresh.cmd("EHLO client.test").code, 250);
    assert!(server.is_running(), "server died\n{}", server.log());
}

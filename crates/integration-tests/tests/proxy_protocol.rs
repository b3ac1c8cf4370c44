//! HAProxy PROXY protocol v1 and v2 on listeners behind a "load balancer"
//! (this test, on 127.0.0.1): the header is written by hand on a raw
//! socket, then Python's smtplib takes the socket over (STARTTLS, AUTH,
//! a message) and the spool must show the client the header named. An
//! implicit-TLS listener gets the v2 header and the ClientHello back to
//! back, so nothing after the header may be read as part of it. Headers
//! from outside `proxy_trusted`, and connections without one, are closed.

use portcullis_integration_tests::{python, TestServer, ALICE};

fn server() -> TestServer {
    TestServer::builder()
        .without_default_listeners()
        .config(
            "[[listener]]\nname = \"lb\"\naddress = \"127.0.0.1:{port:lb}\"\n\
             tls = \"starttls\"\nproxy_protocol = true\nproxy_trusted = [\"127.0.0.0/8\"]\n\n\
             [[listener]]\nname = \"lbtls\"\naddress = \"127.0.0.1:{port:lbtls}\"\n\
             tls = \"implicit\"\nproxy_protocol = true\nproxy_trusted = [\"127.0.0.1\"]\n\n\
             [[listener]]\nname = \"elsewhere\"\naddress = \"127.0.0.1:{port:elsewhere}\"\n\
             tls = \"starttls\"\nproxy_protocol = true\nproxy_trusted = [\"10.0.0.0/8\"]\n",
        )
        .start()
}

/// Python helpers: a raw socket that sends `header` first, handed to smtplib.
const PROXY_PRELUDE: &str = r#"
import ipaddress, struct
def v1(src, sport, dst="198.51.100.1", dport=587):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()
def v2(src, sport, dst, dport, tlv=b""):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x21 if s.version == 6 else 0x11
    body = s.packed + d.packed + struct.pack("!HH", sport, dport) + tlv
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body
def proxied(port, header, implicit=False):
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(header)
    if implicit:
        sock = ctx().wrap_socket(sock, server_hostname="mx.test")
    s = smtplib.SMTP(local_hostname="client.test", timeout=15)
    s.sock, s._host = sock, "127.0.0.1"
    show("greeting", s.getreply())
    s.ehlo()
    if not implicit:
        s.starttls(context=ctx())
        s.ehlo()
    login("auth", s, "alice", "correct horse", "PLAIN")
    submit("m", s)
    s.quit()
def closed_without_greeting(port, first):
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(first)
    try:
        data = sock.recv(100)
    except ConnectionError:
        data = b""
    print("closed: " + ("yes" if data == b"" else repr(data)), flush=True)
"#;

fn run(server: &TestServer, script: &str) -> portcullis_integration_tests::ToolOutput {
    let script = format!("{PROXY_PRELUDE}\n{}", dedent(script));
    python(
        &script,
        &[
            server.port("lb"),
            server.port("lbtls"),
            server.port("elsewhere"),
        ],
    )
}

/// The python helper dedents the whole script; keep ours flush left.
fn dedent(script: &str) -> String {
    script.lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

fn client_addrs(server: &TestServer) -> Vec<String> {
    let mut addrs: Vec<String> = server
        .spool_messages()
        .iter()
        .inspect(|m| assert_eq!(m.auth_field("authn_id").as_deref(), Some(ALICE.0)))
        .map(|m| {
            m.meta["client_addr"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    addrs.sort();
    addrs
}

#[test]
fn v1_and_v2_headers_name_the_client() {
    let server = server();
    let out = run(
        &server,
        r#"
        proxied(PORTS[0], v1("192.0.2.7", 4711))
        proxied(PORTS[0], v2("2001:db8::7", 4712, "2001:db8::1", 587, tlv=b"\x04\x00\x01\x00"))
        proxied(PORTS[1], v2("192.0.2.9", 4713, "198.51.100.1", 465), implicit=True)
        "#,
    );
    out.assert_success(true);
    assert_eq!(
        out.stdout.matches("greeting: 220").count(),
        3,
        "{}",
        out.transcript()
    );
    assert_eq!(
        out.stdout.matches("m.data: 250").count(),
        3,
        "{}",
        out.transcript()
    );
    assert_eq!(
        client_addrs(&server),
        ["192.0.2.7:4711", "192.0.2.9:4713", "[2001:db8::7]:4712"]
    );
    let received: Vec<String> = server
        .spool_messages()
        .iter()
        .map(|m| m.first_header())
        .collect();
    assert!(
        received.iter().any(|r| r.contains("192.0.2.7")),
        "{received:?}"
    );
}

#[test]
fn untrusted_senders_and_missing_headers_are_closed() {
    let server = server();
    let out = run(
        &server,
        r#"
        closed_without_greeting(PORTS[2], v1("192.0.2.7", 4711))
        closed_without_greeting(PORTS[0], b"EHLO client.test\r\n")
        closed_without_greeting(PORTS[0], b"PROXY TCP4 192.0.2.7 nonsense\r\n")
        "#,
    );
    assert_eq!(
        out.stdout.matches("closed: yes").count(),
        3,
        "{}",
        out.transcript()
    );
    let log = server.log();
    assert!(log.contains("trusted load balancer"), "{log}");
    assert!(log.contains("bad PROXY header"), "{log}");
}

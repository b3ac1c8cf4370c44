//! SIGTERM as a client sees it: the ports close at once (a connect after
//! the signal is refused, not left waiting for a greeting), and a DATA
//! transfer still running when the grace period ends is told `421 4.3.2`
//! before the close, never cut off in silence.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{RawClient, TestServer, ALICE, FROM, TO};

fn in_data(server: &TestServer) -> RawClient {
    let (mut client, greeting) = RawClient::connect(server.submission_port());
    assert_eq!(greeting.code, 220);
    client.cmd("EHLO client.test");
    client.starttls();
    client.cmd("EHLO client.test");
    assert_eq!(client.auth_plain(ALICE.0, ALICE.1).code, 235);
    assert_eq!(client.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    assert_eq!(client.cmd(&format!("RCPT TO:<{TO}>")).code, 250);
    assert_eq!(client.cmd("DATA").code, 354);
    client
        .send(b"Subject: never ends\r\n\r\nstill typing\r\n")
        .expect("send");
    client
}

#[test]
fn after_sigterm_ports_close_at_once_and_a_stalled_data_gets_421_at_the_end_of_grace() {
    let mut server = TestServer::start("");
    let mut stalled = in_data(&server);
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let signalled = Instant::now();

    // Within half a second no listener takes new connections.
    std::thread::sleep(Duration::from_millis(500));
    for port in [server.submission_port(), server.implicit_port()] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still accepts connections after SIGTERM"
        );
    }

    // The transaction that never ends is told why it is closed.
    let reply = stalled.read_reply();
    assert_eq!(
        reply.first_line(),
        "421 4.3.2 Service shutting down, try again later"
    );
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "the grace period was cut short: {waited:?}"
    );
    assert!(stalled.is_closed());
    server.wait_for_exit(Duration::from_secs(10));
    assert_eq!(
        server.spool_len(),
        0,
        "a message that never ended was spooled"
    );
}

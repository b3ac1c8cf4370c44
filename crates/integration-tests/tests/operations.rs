//! What operators see and do: the metrics a session leaves behind, and a
//! graceful stop with sessions in flight.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{swaks, RawClient, TestServer, FROM, TO};

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of the sample line that starts with `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_count_what_a_test_did() {
    let server = TestServer::builder()
        .config("[admin]\naddress = \"127.0.0.1:{port:admin}\"")
        .start();
    let admin = server.port("admin");
    assert!(http_get(admin, "/health").ends_with("ok\n"));

    let address = format!("127.0.0.1:{}", server.submission_port());
    let submit = |password: &str| {
        swaks(&[
            "--server",
            &address,
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            password,
            "--from",
            FROM,
            "--to",
            TO,
            "--body",
            "metrics",
        ])
    };
    submit("correct horse").assert_contains("250 2.0.0");
    submit("wrong").assert_contains("535 5.7.8");

    let metrics = http_get(admin, "/metrics");
    let accepted = r#"portcullis_auth_attempts_total{mechanism="PLAIN",result="accepted"}"#;
    let rejected = r#"portcullis_auth_attempts_total{mechanism="PLAIN",result="rejected"}"#;
    assert_eq!(sample(&metrics, accepted), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, rejected), Some(1.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "portcullis_messages_spooled_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "portcullis_auth_duration_seconds_count"),
        Some(2.0)
    );
    let connections = r#"portcullis_connections_total{listener="submission"}"#;
    assert!(
        sample(&metrics, connections).unwrap_or(0.0) >= 2.0,
        "{metrics}"
    );
    assert!(http_get(admin, "/nope").starts_with("HTTP/1.1 404"));
}

fn authenticated(server: &TestServer) -> RawClient {
    let (mut client, greeting) = RawClient::connect(server.submission_port());
    assert_eq!(greeting.code, 220);
    client.cmd("EHLO client.test");
    client.starttls();
    client.cmd("EHLO client.test");
    assert_eq!(client.auth_plain("alice", "correct horse").code, 235);
    client
}

#[test]
fn sigterm_lets_a_transaction_finish_and_tells_idle_sessions_421() {
    let mut server = TestServer::start("");
    let mut idle = authenticated(&server);
    let mut busy = authenticated(&server);
    assert_eq!(busy.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    assert_eq!(busy.cmd(&format!("RCPT TO:<{TO}>")).code, 250);
    assert_eq!(busy.cmd("DATA").code, 354);
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
        .unwrap();

    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // The idle session is told at once, without having to send anything.
    assert_eq!(
        idle.read_reply().first_line(),
        "421 4.3.2 Service shutting down, try again later"
    );
    // The transaction in flight completes and is durable, then the session ends.
    busy.send(b"second half\r\n.\r\n").unwrap();
    assert_eq!(busy.read_reply().code, 250);
    assert_eq!(
        busy.cmd("NOOP").first_line(),
        "421 4.3.2 Service shutting down, try again later"
    );

    let message = server.single_message();
    assert!(message.eml.contains("second half"), "{}", message.eml);
    server.wait_for_exit(Duration::from_secs(15));
    assert!(TcpStream::connect(("127.0.0.1", server.submission_port())).is_err());
}

fn hangup_and_wait(server: &TestServer, needle: &str) {
    let before = server.log().matches(needle).count();
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches(needle).count() <= before {
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn advertised_size(server: &TestServer) -> String {
    let (mut client, _) = RawClient::connect(server.submission_port());
    let ehlo = client.cmd("EHLO client.test");
    ehlo.lines
        .iter()
        .find(|l| l.starts_with("SIZE "))
        .cloned()
        .unwrap_or_default()
}

#[test]
fn sighup_applies_a_changed_config_to_new_sessions_and_keeps_it_on_error() {
    let server = TestServer::start("[limits]\nmax_message_size = 1000\n");
    let (mut open_before, _) = RawClient::connect(server.submission_port());
    assert_eq!(advertised_size(&server), "SIZE 1000");

    let path = server.config_path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("max_message_size = 1000", "max_message_size = 2000"),
    )
    .unwrap();
    hangup_and_wait(&server, "config reloaded");
    assert_eq!(advertised_size(&server), "SIZE 2000");
    // A session that was open keeps the settings it started with.
    let ehlo = open_before.cmd("EHLO client.test");
    assert!(ehlo.has_line("SIZE 1000"), "{ehlo:?}");

    std::fs::write(&path, "this is = not [valid toml").unwrap();
    hangup_and_wait(&server, "config reload failed");
    assert_eq!(advertised_size(&server), "SIZE 2000");
}

//! Clients that talk too slowly to be anything but an attempt to hold a
//! connection: one byte every few seconds used to restart the idle timeout
//! for ever, in a command line and inside DATA. Now a command line must
//! arrive whole within `command_timeout`, message data must keep to
//! `min_data_rate` after that much grace, and a /24 has its own cap on
//! open connections beside the address's.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{python, sample_message, TestServer, FROM, TO};

/// `limits`, and a plain listener without AUTH, so DATA can be reached
/// without TLS.
fn relay(limits: &str) -> String {
    format!(
        "[limits]\n{limits}\n[[listener]]\nname = \"relay\"\naddress = \"127.0.0.1:{{port:relay}}\"\n\
         tls = \"none\"\nauth = \"disabled\"\n"
    )
}

/// Slow clients are cut at these.
fn slow() -> String {
    relay("command_timeout = \"1s\"\nmin_data_rate = 100\nidle_timeout = \"30s\"\n")
}

/// How often the dribbling client sends its next byte.
const INTERVAL: Duration = Duration::from_millis(200);

fn connect(port: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("server accepts");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let greeting = read_some(&mut tcp);
    assert!(greeting.starts_with("220"), "{greeting}");
    tcp
}

fn read_some(tcp: &mut TcpStream) -> String {
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).expect("server replies");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn command(tcp: &mut TcpStream, line: &str) -> String {
    tcp.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    read_some(tcp)
}

/// Sends `bytes` one at a time, `INTERVAL` apart, until the server says
/// something; returns what it said and when, or `None` if it never did.
fn dribble(tcp: &mut TcpStream, bytes: &[u8]) -> Option<(String, Duration)> {
    let started = Instant::now();
    tcp.set_read_timeout(Some(INTERVAL)).unwrap();
    let mut buf = [0u8; 4096];
    for byte in bytes {
        if tcp.write_all(&[*byte]).is_err() {
            break;
        }
        match tcp.read(&mut buf) {
            Ok(0) => return Some((String::new(), started.elapsed())),
            Ok(n) => {
                let said = String::from_utf8_lossy(&buf[..n]).into_owned();
                return Some((said, started.elapsed()));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some((String::new(), started.elapsed())),
        }
    }
    None
}

#[test]
fn a_command_line_sent_byte_by_byte_is_cut_at_the_command_deadline() {
    let server = TestServer::start(&slow());
    let mut tcp = connect(server.port("relay"));
    assert!(command(&mut tcp, "EHLO client.test").starts_with("250"));
    // 40 bytes at 5 a second: 8 s, far past the 1 s deadline, though no
    // gap comes near the 30 s idle timeout.
    let line = format!("MAIL FROM:<{FROM}> {}\r\n", "x".repeat(10));
    let (said, after) = dribble(&mut tcp, line.as_bytes()).expect("the server speaks first");
    assert!(said.starts_with("421 4.4.2"), "{said:?}");
    assert!(after < Duration::from_secs(3), "cut after {after:?}");
}

/// An over-long line is thrown away as it arrives: trickled, its bytes
/// must not each restart the line's clock.
#[test]
fn an_over_long_line_trickled_in_is_cut_at_the_command_deadline() {
    let server = TestServer::start(&slow());
    let mut tcp = connect(server.port("relay"));
    assert!(command(&mut tcp, "EHLO client.test").starts_with("250"));
    tcp.write_all("x".repeat(13_000).as_bytes()).expect("send");
    // The server says the line is too long as soon as it is, and throws
    // the rest of it away as it comes.
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).expect("a reply");
    assert!(
        buf[..n].starts_with(b"500 5.5.6"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let (said, after) = dribble(&mut tcp, "y".repeat(40).as_bytes()).expect("the server speaks");
    assert!(said.contains("421 4.4.2"), "{said:?}");
    assert!(after < Duration::from_secs(3), "cut after {after:?}");
}

#[test]
fn message_data_below_the_minimum_rate_is_cut() {
    let server = TestServer::start(&slow());
    let port = server.port("relay");
    // A client at full speed is not concerned.
    let mut fast = connect(port);
    assert!(command(&mut fast, "EHLO client.test").starts_with("250"));
    assert!(command(&mut fast, &format!("MAIL FROM:<{FROM}>")).starts_with("250"));
    assert!(command(&mut fast, &format!("RCPT TO:<{TO}>")).starts_with("250"));
    assert!(command(&mut fast, "DATA").starts_with("354"));
    let queued = command(&mut fast, &format!("{}.", sample_message("fast")));
    assert!(queued.starts_with("250"), "{queued}");
    // One byte every 200 ms: 5 bytes a second against a minimum of 100.
    let mut slow = connect(port);
    assert!(command(&mut slow, "EHLO client.test").starts_with("250"));
    assert!(command(&mut slow, &format!("MAIL FROM:<{FROM}>")).starts_with("250"));
    assert!(command(&mut slow, &format!("RCPT TO:<{TO}>")).starts_with("250"));
    assert!(command(&mut slow, "DATA").starts_with("354"));
    let body = format!("{}.\r\n", sample_message("slow"));
    let (said, after) = dribble(&mut slow, body.as_bytes()).expect("the server speaks first");
    assert!(said.starts_with("421 4.4.2"), "{said:?}");
    assert!(after < Duration::from_secs(4), "cut after {after:?}");
    assert_eq!(server.spool_len(), 1, "only the fast message");
}

#[test]
fn open_connections_per_slash_24_are_capped() {
    let server = TestServer::start(
        "[limits]\nmax_connections_per_address = 5\nmax_connections_per_network = 3\n\
         max_connection_rate = 1000\n[limits.auth]\nallow = []\n",
    );
    let out = python(
        r#"
        import time
        def open_from(label, source):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=(source, 0))
            print(f"{label}: {s.recv(512).decode().strip()}", flush=True)
            return s
        held = [open_from(f"c{i}", f"127.0.0.{i + 2}") for i in range(3)]
        fourth = open_from("c3", "127.0.0.5")
        other_net = open_from("other", "127.0.1.2")
        held[0].close()
        time.sleep(0.5)
        again = open_from("again", "127.0.0.6")
        "#,
        &[server.submission_port()],
    );
    for label in ["c0", "c1", "c2", "other", "again"] {
        out.assert_reply(label, "220");
    }
    out.assert_reply("c3", "421 4.7.0");
}

/// A client that sends and sends but never reads its replies fills the
/// server's socket buffer; the write of the next reply then waits, and
/// must give up after the idle timeout and drop the connection (the
/// session must not hold its slot for ever), while others are served.
#[test]
fn a_client_that_never_reads_its_replies_is_dropped_after_the_idle_timeout() {
    let server = TestServer::start(&relay("idle_timeout = \"2s\"\n"));
    let port = server.port("relay");
    let mut deaf = connect(port);
    deaf.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Each EHLO is answered with several hundred bytes: the replies fill
    // both socket buffers long before the commands do.
    let commands = "EHLO deaf.test\r\n".repeat(1000);
    let started = Instant::now();
    let mut blocked_since: Option<Instant> = None;
    let dropped_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still connected after a minute of unread replies"
        );
        match deaf.write(commands.as_bytes()) {
            Ok(_) => blocked_since = None,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                blocked_since.get_or_insert_with(Instant::now);
            }
            Err(_) => break blocked_since.map(|at| at.elapsed()),
        }
    };
    // The server stopped reading when its write stalled, so the client's
    // writes stalled soon after: the drop came about the idle timeout
    // after that, not at once and not never.
    let after = dropped_after.expect("the client's writes stalled before the drop");
    assert!(
        after < Duration::from_secs(10),
        "dropped {after:?} after the stall"
    );
    // Others are served meanwhile and after.
    let mut other = connect(port);
    assert!(command(&mut other, "EHLO other.test").starts_with("250"));
}

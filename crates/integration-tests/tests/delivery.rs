//! Delivery end to end: the real binary relays what it spooled to a real
//! next hop — a second portcullis (STARTTLS, AUTH, its spool checked) or
//! the test sink (`delivery/sink.rs`, told to answer 4xx/5xx) — or into a
//! Maildir, and keeps each message until the next hop took it.

#[path = "delivery/sink.rs"]
mod sink;

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{wait_until, TestServer, FROM};
use sink::{Plan, Sink};

/// Short timings so retries happen within a test.
const FAST: &str = "[delivery]\nscan_interval = \"100ms\"\nretry_initial = \"200ms\"\nretry_max = \"500ms\"\nconnect_timeout = \"2s\"\ncommand_timeout = \"10s\"\n";

use portcullis_integration_tests::free_port;

/// A route to the sink on `port`, plain text.
fn sink_route(port: u16, extra: &str) -> String {
    format!("[[route]]\nname = \"sink\"\ntransport = \"smtp\"\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\n{extra}\n")
}

/// Submits one message as alice over STARTTLS.
fn submit(server: &TestServer, rcpts: &[&str], subject: &str) {
    portcullis_integration_tests::submit_as_alice(
        server,
        rcpts,
        subject,
        "X-Authenticated-User: mallory\r\n",
    );
}

fn spool_is_empty(server: &TestServer) -> bool {
    server.spool_len() == 0
}

#[test]
fn relays_to_a_second_portcullis_over_starttls_with_auth() {
    let next_hop = TestServer::start("");
    let config = format!(
        "{FAST}[[route]]\ntransport = \"smtp\"\naddress = \"127.0.0.1:{}\"\ntls = \"starttls\"\n\
         dangerous_accept_invalid_certs = true\nauth_username = \"bob\"\nauth_password = \"battery staple\"\nidentity = \"header\"\n",
        next_hop.submission_port()
    );
    let server = TestServer::start(&config);
    submit(&server, &["rcpt@example.test"], "relayed");
    wait_until(
        &server,
        "the next hop to spool the message",
        Duration::from_secs(15),
        || next_hop.spool_messages().len() == 1,
    );
    wait_until(
        &server,
        "our spool to empty",
        Duration::from_secs(5),
        || spool_is_empty(&server),
    );
    let got = next_hop.single_message();
    assert_eq!(
        got.auth_field("authn_id").as_deref(),
        Some("bob"),
        "we authenticated as bob"
    );
    assert_eq!(got.meta["mail_from"], FROM);
    assert_eq!(got.meta["rcpt_to"][0], "rcpt@example.test");
    assert!(
        got.meta["tls"]["version"].is_string(),
        "relayed over TLS: {:#}",
        got.meta
    );
    assert!(
        got.eml.contains("X-Authenticated-User: alice\r\n"),
        "identity header: {}",
        got.eml
    );
    assert!(
        !got.eml.contains("mallory"),
        "a forged identity header must be removed: {}",
        got.eml
    );
    assert!(
        got.eml.contains("\r\n.leading dot\r\n"),
        "dot-stuffing round trip: {}",
        got.eml
    );
}

#[test]
fn unverifiable_certificate_is_refused_by_default() {
    let next_hop = TestServer::start("");
    let config = format!(
        "{FAST}[[route]]\ntransport = \"smtp\"\naddress = \"127.0.0.1:{}\"\n",
        next_hop.submission_port()
    );
    let server = TestServer::start(&config);
    submit(&server, &["rcpt@example.test"], "untrusted");
    wait_until(&server, "a TLS deferral", Duration::from_secs(10), || {
        server.log().contains("4.7.5")
    });
    assert!(next_hop.spool_messages().is_empty());
    assert_eq!(server.spool_len(), 1, "the message is kept for a retry");
}

#[test]
fn temporary_failure_is_retried_then_delivered() {
    let port = free_port();
    let plan = Plan {
        dot_replies: ["451 4.3.0 Try again later".to_string()].into(),
        ..Plan::default()
    };
    let sink = Sink::tcp(port, plan);
    let server = TestServer::start(&format!("{FAST}{}", sink_route(port, "")));
    submit(&server, &["rcpt@example.test"], "retry-me");
    wait_until(
        &server,
        "a delivery after the 451",
        Duration::from_secs(15),
        || sink.acked().len() == 1,
    );
    wait_until(
        &server,
        "our spool to empty",
        Duration::from_secs(5),
        || spool_is_empty(&server),
    );
    let txns = sink.txns();
    assert_eq!(
        txns.len(),
        2,
        "one refused attempt, one accepted: {txns:#?}"
    );
    assert!(txns[1].data.contains("Subject: retry-me"));
    assert_eq!(txns[1].mail_from, FROM);
    assert!(server.log().contains("deferred"), "the retry is logged");
}

#[test]
fn permanent_failure_bounces_to_the_senders_maildir_and_others_are_delivered() {
    let port = free_port();
    let mut plan = Plan::default();
    plan.reject_rcpt.insert(
        "nobody@remote.test".into(),
        "550 5.1.1 No such user here".into(),
    );
    let sink = Sink::tcp(port, plan);
    // The sender's domain (example.test) is delivered locally, so the bounce
    // lands in alice's Maildir; remote.test goes to the sink.
    let config = format!(
        "{FAST}[[route]]\nname = \"local\"\ndomains = [\"example.test\"]\ntransport = \"maildir\"\npath = \"mail\"\n{}",
        sink_route(port, "domains = [\"remote.test\"]")
    );
    let server = TestServer::start(&config);
    submit(
        &server,
        &["one@remote.test", "nobody@remote.test", "two@remote.test"],
        "partly",
    );
    let inbox = server.data_dir().join("mail").join(FROM).join("new");
    wait_until(
        &server,
        "the bounce in the sender's Maildir",
        Duration::from_secs(15),
        || maildir_count(&inbox) == 1,
    );
    wait_until(
        &server,
        "our spool to empty",
        Duration::from_secs(5),
        || spool_is_empty(&server),
    );
    let acked = sink.acked();
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].acked, vec!["one@remote.test", "two@remote.test"]);
    let dsn = read_only_file(&inbox);
    assert!(
        dsn.contains("multipart/report; report-type=delivery-status"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody@remote.test\nAction: failed\nStatus: 5.1.1"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user here"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Subject: partly"),
        "original headers returned: {dsn}"
    );
    assert!(
        !dsn.contains("one@remote.test"),
        "delivered recipients are not reported: {dsn}"
    );
}

#[test]
fn next_hop_down_then_up_loses_nothing() {
    let port = free_port();
    let server = TestServer::start(&format!("{FAST}{}", sink_route(port, "")));
    for i in 0..5 {
        submit(&server, &["rcpt@example.test"], &format!("queued-{i}"));
    }
    wait_until(
        &server,
        "connection failures",
        Duration::from_secs(10),
        || server.log().matches("deferred").count() >= 5,
    );
    assert_eq!(server.spool_len(), 5);
    let sink = Sink::tcp(port, Plan::default());
    wait_until(
        &server,
        "all five delivered",
        Duration::from_secs(20),
        || sink.acked().len() >= 5,
    );
    wait_until(
        &server,
        "our spool to empty",
        Duration::from_secs(5),
        || spool_is_empty(&server),
    );
    let mut subjects: Vec<String> = sink.acked().iter().map(|t| subject(&t.data)).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        (0..5).map(|i| format!("queued-{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn sigkill_during_delivery_delivers_after_restart_with_at_most_one_duplicate() {
    let port = free_port();
    let sink = Sink::tcp(
        port,
        Plan {
            stall_after_dot: true,
            ..Plan::default()
        },
    );
    let mut server = TestServer::start(&format!("{FAST}{}", sink_route(port, "")));
    submit(&server, &["rcpt@example.test"], "killed");
    wait_until(
        &server,
        "the message to reach the next hop",
        Duration::from_secs(10),
        || sink.txns().len() == 1,
    );
    server.kill_hard();
    assert_eq!(server.spool_len(), 1, "not acknowledged, so still spooled");
    sink.set_stall(false);
    server.restart();
    wait_until(
        &server,
        "delivery after the restart",
        Duration::from_secs(15),
        || sink.acked().len() == 1,
    );
    wait_until(
        &server,
        "our spool to empty",
        Duration::from_secs(5),
        || spool_is_empty(&server),
    );
    let copies = sink
        .txns()
        .iter()
        .filter(|t| subject(&t.data) == "killed")
        .count();
    assert!(copies <= 2, "at most one duplicate, got {copies} copies");
}

#[test]
fn lmtp_over_a_unix_socket_settles_each_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lmtp.sock");
    let plan = Plan {
        lmtp: true,
        dot_replies: [
            "250 2.0.0 a delivered".to_string(),
            "452 4.2.2 Mailbox full".to_string(),
        ]
        .into(),
        ..Plan::default()
    };
    let sink = Sink::unix(&socket, plan);
    let config = format!(
        "{FAST}[[route]]\ntransport = \"lmtp\"\nsocket = {:?}\n",
        socket.display().to_string()
    );
    let server = TestServer::start(&config);
    submit(&server, &["a@example.test", "b@example.test"], "lmtp");
    wait_until(&server, "the retry for b", Duration::from_secs(15), || {
        sink.acked().len() == 2
    });
    wait_until(
        &server,
        "our spool to empty",
        Duration::from_secs(5),
        || spool_is_empty(&server),
    );
    let txns = sink.txns();
    assert_eq!(txns[0].acked, vec!["a@example.test"]);
    assert_eq!(
        txns[1].rcpt_to,
        vec!["b@example.test"],
        "only the deferred recipient is retried"
    );
    assert_eq!(txns[1].acked, vec!["b@example.test"]);
}

#[test]
fn xclient_login_carries_the_identity() {
    let port = free_port();
    let sink = Sink::tcp(
        port,
        Plan {
            xclient: true,
            ..Plan::default()
        },
    );
    let server = TestServer::start(&format!(
        "{FAST}{}",
        sink_route(port, "identity = \"xclient\"")
    ));
    submit(&server, &["rcpt@example.test"], "xclient");
    wait_until(&server, "delivery", Duration::from_secs(10), || {
        sink.acked().len() == 1
    });
    assert_eq!(sink.xclient_lines(), vec!["XCLIENT LOGIN=alice"]);
}

#[test]
fn queue_command_lists_shows_retries_and_deletes() {
    let port = free_port();
    let slow =
        "[delivery]\nscan_interval = \"100ms\"\nretry_initial = \"1h\"\nconnect_timeout = \"1s\"\n";
    let server = TestServer::start(&format!("{slow}{}", sink_route(port, "")));
    submit(&server, &["rcpt@example.test"], "first");
    submit(&server, &["rcpt@example.test"], "second");
    wait_until(
        &server,
        "two failed attempts",
        Duration::from_secs(10),
        || server.log().matches("deferred").count() >= 2,
    );
    let list = run_cli(&server, &["queue", "list"]);
    assert!(
        list.contains("attempts=1") && list.contains("2 message(s)"),
        "{list}"
    );
    let ids: Vec<String> = list
        .lines()
        .filter(|l| l.contains("age="))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let (id, second) = (ids[0].clone(), ids[1].clone());
    let show = run_cli(&server, &["queue", "show", &id]);
    assert!(
        show.contains("rcpt@example.test") && show.contains("Subject: first"),
        "{show}"
    );
    run_cli(&server, &["queue", "delete", &second]);
    assert!(run_cli(&server, &["queue", "list"]).contains("1 message(s)"));
    let sink = Sink::tcp(port, Plan::default());
    run_cli(&server, &["queue", "retry", &id]);
    wait_until(
        &server,
        "delivery after `queue retry`",
        Duration::from_secs(10),
        || sink.acked().len() == 1,
    );
    wait_until(
        &server,
        "our spool to empty",
        Duration::from_secs(5),
        || spool_is_empty(&server),
    );
    assert!(run_cli(&server, &["queue", "list"]).contains("0 message(s)"));
    let subjects: Vec<String> = sink.txns().iter().map(|t| subject(&t.data)).collect();
    assert_eq!(
        subjects,
        vec!["first"],
        "the deleted message is never delivered"
    );
    assert!(!server
        .cli(&["queue", "show", "../../etc/passwd"])
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn a_thousand_queued_messages_drain() {
    const N: usize = 1000;
    let port = free_port();
    let sink = Sink::tcp(port, Plan::default());
    let mut builder =
        TestServer::builder().config(&format!("{FAST}workers = 8\n{}", sink_route(port, "")));
    let now_micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let base = now_micros - 10_000_000;
    for i in 0..N {
        let id = format!("{:016x}-{:08x}", base + i as u64, i);
        let eml = format!("Subject: bulk-{i}\r\n\r\nbody {i}\r\n");
        let meta = serde_json::json!({
            "id": id, "size": eml.len(), "received_at": "2024-01-01T00:00:00Z",
            "mail_from": FROM, "rcpt_to": ["rcpt@example.test"], "body": "7bit",
            "declared_size": null, "helo": "client.test", "client_addr": "127.0.0.1:1",
            "server_addr": "127.0.0.1:2", "listener": "submission", "tls": null,
            "auth": null, "mail_auth_param": null
        });
        builder = builder
            .file(&format!("spool/queue/{id}.eml"), &eml)
            .file(&format!("spool/queue/{id}.json"), &meta.to_string());
    }
    let started = Instant::now();
    let server = builder.start();
    wait_until(
        &server,
        "the queue to drain",
        Duration::from_secs(120),
        || spool_is_empty(&server),
    );
    let elapsed = started.elapsed();
    let acked = sink.acked();
    assert!(acked.len() >= N, "only {} of {N} delivered", acked.len());
    eprintln!(
        "drained {N} messages in {:.2}s: {:.0} messages/s",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );
}

fn maildir_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn read_only_file(dir: &Path) -> String {
    let entry = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap();
    std::fs::read_to_string(entry.path()).unwrap()
}

fn subject(data: &str) -> String {
    data.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn run_cli(server: &TestServer, args: &[&str]) -> String {
    let out = server.cli(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

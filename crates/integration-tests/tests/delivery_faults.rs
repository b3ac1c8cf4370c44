//! Delivery faults seen with real clients and real next hops: Maildir files
//! a mail reader can read, an identity the route requires, one stalled next
//! hop beside a working route, and a smarthost with a private CA.

#[path = "delivery/sink.rs"]
mod sink;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{free_port, wait_until, TestServer, FROM};
use sink::{Plan, Sink};

/// Short timings so retries happen within a test.
const FAST: &str = "[delivery]\nscan_interval = \"100ms\"\nretry_initial = \"200ms\"\nretry_max = \"500ms\"\nconnect_timeout = \"2s\"\ncommand_timeout = \"10s\"\n";

/// A Maildir route for example.test (the sender's domain, so bounces land there).
const LOCAL: &str =
    "[[route]]\nname = \"local\"\ndomains = [\"example.test\"]\ntransport = \"maildir\"\npath = \"mail\"\n";

/// Submits one message as alice over STARTTLS.
fn submit(server: &TestServer, rcpts: &[&str], subject: &str) {
    portcullis_integration_tests::submit_as_alice(
        server,
        rcpts,
        subject,
        "Return-Path: <forged@evil.test>\r\n",
    );
}

fn maildir_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn inbox(server: &TestServer, rcpt: &str) -> PathBuf {
    server.data_dir().join("mail").join(rcpt)
}

#[test]
fn maildir_file_has_lf_line_ends_return_path_and_delivered_to() {
    let server = TestServer::start(&format!("{FAST}{LOCAL}"));
    submit(&server, &["bob@example.test"], "lf please");
    let new = inbox(&server, "bob@example.test").join("new");
    wait_until(&server, "the Maildir file", Duration::from_secs(10), || {
        maildir_files(&new).len() == 1
    });
    let file = std::fs::read_to_string(&maildir_files(&new)[0]).unwrap();
    assert!(!file.contains('\r'), "LF line ends only: {file:?}");
    assert!(
        file.starts_with(&format!(
            "Return-Path: <{FROM}>\nDelivered-To: bob@example.test\nReceived: "
        )),
        "{file}"
    );
    assert!(
        !file.contains("forged@evil.test"),
        "a client's Return-Path is dropped: {file}"
    );
    assert!(
        file.ends_with("\n\nHello.\n.leading dot\n"),
        "body kept, dot-stuffing undone: {file:?}"
    );
}

/// s-nail, a real mail reader, lists and prints the message without a
/// complaint about its format.
#[test]
fn maildir_message_reads_cleanly_in_s_nail() {
    if Command::new("s-nail").arg("-V").output().is_err() {
        panic!("s-nail is not installed (scripts/test installs it)");
    }
    let server = TestServer::start(&format!("{FAST}{LOCAL}"));
    submit(&server, &["bob@example.test"], "read me");
    let mailbox = inbox(&server, "bob@example.test");
    wait_until(&server, "the Maildir file", Duration::from_secs(10), || {
        maildir_files(&mailbox.join("new")).len() == 1
    });
    let folder = format!("maildir://{}", mailbox.display());
    let s_nail = |args: &[&str]| {
        let out = Command::new("s-nail")
            .args(["-:/", "-#", "-R"])
            .args(args)
            .args(["-f", &folder])
            .env("HOME", server.data_dir())
            .env("MAIL", "/dev/null")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("s-nail runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "s-nail failed: {text}");
        text
    };
    let listing = s_nail(&["-H"]);
    assert!(listing.contains("read me"), "{listing}");
    assert!(
        !listing.contains('\u{240d}') && !listing.contains("Not a header line"),
        "no stray CR: {listing}"
    );
    let printed = s_nail(&["-Y", "print 1", "-Y", "quit"]);
    assert!(
        !printed.contains("Malformed") && !printed.contains("Not a header line"),
        "{printed}"
    );
    assert!(
        printed.contains("Return-Path: <alice@example.test>"),
        "{printed}"
    );
    assert!(printed.contains("\nHello.\n"), "{printed}");
}

/// A sink route for remote.test on `port`, plain text.
fn sink_route(port: u16, extra: &str) -> String {
    format!(
        "[[route]]\nname = \"sink\"\ndomains = [\"remote.test\"]\ntransport = \"smtp\"\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\n{extra}\n"
    )
}

#[test]
fn xclient_route_without_xclient_defers_then_bounces_instead_of_sending_anonymously() {
    let port = free_port();
    let sink = Sink::tcp(port, Plan::default());
    let config = format!(
        "{FAST}max_age = \"3s\"\n{LOCAL}{}",
        sink_route(port, "identity = \"xclient\"")
    );
    let server = TestServer::start(&config);
    submit(&server, &["rcpt@remote.test"], "who am i");
    let bounces = inbox(&server, FROM).join("new");
    wait_until(&server, "the bounce", Duration::from_secs(15), || {
        maildir_files(&bounces).len() == 1
    });
    assert!(
        sink.txns().is_empty(),
        "nothing goes out without the identity: {:#?}",
        sink.txns()
    );
    let log = server.log();
    assert!(log.contains("result=\"deferred\""), "retried first: {log}");
    let dsn = std::fs::read_to_string(&maildir_files(&bounces)[0]).unwrap();
    assert!(
        dsn.contains("Final-Recipient: rfc822; rcpt@remote.test\nAction: failed\nStatus: 4.4.7"),
        "{dsn}"
    );
    assert!(
        dsn.contains("does not offer XCLIENT LOGIN"),
        "the diagnostic says why: {dsn}"
    );
}

#[test]
fn xclient_route_with_identity_not_required_sends_without_it() {
    let port = free_port();
    let sink = Sink::tcp(port, Plan::default());
    let config = format!(
        "{FAST}{}",
        sink_route(port, "identity = \"xclient\"\nidentity_required = false")
    );
    let server = TestServer::start(&config);
    submit(&server, &["rcpt@remote.test"], "anonymous is fine");
    wait_until(&server, "delivery", Duration::from_secs(10), || {
        sink.acked().len() == 1
    });
    assert!(sink.xclient_lines().is_empty());
    assert!(server.log().contains("identity not passed"));
}

/// A next hop that accepts connections and never greets; counts them.
struct Mute {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Mute {
    fn start() -> Mute {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        Mute { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_stalled_route_does_not_delay_another_routes_mail() {
    let mute = Mute::start();
    let config = format!(
        "[delivery]\nscan_interval = \"100ms\"\nworkers = 2\nconnect_timeout = \"5s\"\n{LOCAL}{}",
        sink_route(mute.port, "")
    );
    let server = TestServer::start(&config);
    for i in 0..4 {
        submit(&server, &["rcpt@remote.test"], &format!("stalled-{i}"));
    }
    wait_until(
        &server,
        "the stalled route's connections",
        Duration::from_secs(5),
        || mute.accepted() >= 2,
    );
    let started = Instant::now();
    submit(&server, &["bob@example.test"], "local");
    let new = inbox(&server, "bob@example.test").join("new");
    wait_until(
        &server,
        "the Maildir delivery",
        Duration::from_secs(30),
        || maildir_files(&new).len() == 1,
    );
    let waited = started.elapsed();
    eprintln!(
        "Maildir message delivered {:.2}s after submission, beside a stalled route",
        waited.as_secs_f64()
    );
    assert!(
        waited < Duration::from_secs(2),
        "the Maildir message waited {waited:?} for the stalled route"
    );
    // A message for both routes: its Maildir recipient does not wait for
    // the stalled one either.
    let started = Instant::now();
    submit(&server, &["rcpt@remote.test", "carol@example.test"], "both");
    let new = inbox(&server, "carol@example.test").join("new");
    wait_until(
        &server,
        "the Maildir delivery",
        Duration::from_secs(30),
        || maildir_files(&new).len() == 1,
    );
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "the Maildir recipient waited {waited:?} for the stalled route"
    );
    assert_eq!(
        server.spool_len(),
        5,
        "the stalled route's messages wait in the spool"
    );
}

/// A CA made for one test, and the sink's TLS set-up with a certificate it
/// issued for 127.0.0.1; returns the CA certificate as PEM.
fn private_ca() -> (String, std::sync::Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    params
        .distinguished_name
        .push(DnType::CommonName, "Test Smarthost CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("a P-256 key");
    let ca = params.self_signed(&ca_key).expect("the CA signs itself");
    let leaf_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("an IP SAN");
    let leaf_key = KeyPair::generate().expect("a P-256 key");
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("the CA signs");
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("the certificate matches its key");
    (ca.pem(), std::sync::Arc::new(config))
}

#[test]
fn smarthost_with_a_private_ca_is_trusted_with_ca_file_and_not_without() {
    let (ca_pem, tls) = private_ca();
    let port = free_port();
    let sink = Sink::tcp(
        port,
        Plan {
            tls: Some(tls),
            ..Plan::default()
        },
    );
    let route = format!(
        "[[route]]\nname = \"smarthost\"\ntransport = \"smtp\"\naddress = \"127.0.0.1:{port}\"\ntls = \"starttls\"\n"
    );
    let without = TestServer::start(&format!("{FAST}{route}"));
    submit(&without, &["rcpt@remote.test"], "untrusted");
    wait_until(&without, "a TLS deferral", Duration::from_secs(10), || {
        without.log().contains("result=\"deferred\" status=4.7.5")
    });
    assert!(sink.txns().is_empty(), "nothing sent to an unverified host");
    assert_eq!(without.spool_len(), 1, "kept for a retry");

    let with = TestServer::builder()
        .file("smarthost-ca.pem", &ca_pem)
        .config(&format!("{FAST}{route}ca_file = \"smarthost-ca.pem\"\n"))
        .start();
    submit(&with, &["rcpt@remote.test"], "trusted");
    wait_until(&with, "delivery", Duration::from_secs(10), || {
        sink.acked().len() == 1
    });
    let txn = &sink.acked()[0];
    assert!(txn.tls && txn.data.contains("Subject: trusted"), "{txn:?}");
    wait_until(&with, "our spool to empty", Duration::from_secs(5), || {
        with.spool_len() == 0
    });
}

//! SIGHUP reloads the server certificate: new connections get the new one,
//! a connection opened before keeps working, and a broken pair is refused
//! while the old one stays in service.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{python, TestServer};

/// SHA-256 of the certificate a STARTTLS client is shown, with the session
/// then authenticated and one message sent (the connection stays useful).
const PEER_FINGERPRINT: &str = r#"
    import hashlib
    s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
    s.ehlo()
    s.starttls(context=ssl._create_unverified_context())
    print("fp:", hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest(), flush=True)
    show("ehlo", s.ehlo())
    s.quit()
"#;

fn fingerprint_seen(server: &TestServer) -> String {
    let out = python(PEER_FINGERPRINT, &[server.submission_port()]);
    out.reply("ehlo");
    out.labelled()
        .get("fp")
        .cloned()
        .unwrap_or_else(|| panic!("{}", out.transcript()))
}

fn der_fingerprint(pem: &str) -> String {
    let der = first_pem_block(pem);
    let digest = sha256(&der);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DER bytes of the first PEM block.
fn first_pem_block(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

fn hangup(server: &TestServer) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_for_log(server: &TestServer, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_serves_a_renewed_certificate_and_keeps_the_old_one_on_error() {
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let second = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let server = TestServer::builder()
        .config("[tls]\ncertificate = \"cert.pem\"\nprivate_key = \"key.pem\"\n")
        .file("cert.pem", &first.cert.pem())
        .file("key.pem", &first.key_pair.serialize_pem())
        .start();
    assert_eq!(
        fingerprint_seen(&server),
        der_fingerprint(&first.cert.pem())
    );

    fs::write(server.data_dir().join("cert.pem"), second.cert.pem()).unwrap();
    fs::write(
        server.data_dir().join("key.pem"),
        second.key_pair.serialize_pem(),
    )
    .unwrap();
    hangup(&server);
    wait_for_log(&server, "certificate reloaded", 1);
    assert_eq!(
        fingerprint_seen(&server),
        der_fingerprint(&second.cert.pem())
    );

    // A key that does not match the certificate: refused, the second pair stays.
    fs::write(
        server.data_dir().join("key.pem"),
        first.key_pair.serialize_pem(),
    )
    .unwrap();
    hangup(&server);
    wait_for_log(&server, "certificate reload failed", 1);
    assert_eq!(
        fingerprint_seen(&server),
        der_fingerprint(&second.cert.pem())
    );
}

//! SASL EXTERNAL from TLS client certificates, driven by curl (`--cert`,
//! `--login-options AUTH=EXTERNAL`), GNU SASL's `gsasl` (`-m EXTERNAL`
//! with `--x509-cert-file`) and msmtp (`--auth=external`). The CA and the certificates are made here
//! with rcgen: one the server's CA signs, one from a CA it does not know
//! (refused at the handshake, never accepted), and one whose CN names no
//! user (refused by the decision).

use std::path::{Path, PathBuf};

use portcullis_integration_tests::{
    curl, gsasl, msmtp, sample_message, TestServer, ToolOutput, ALICE, FROM, TO,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a P-256 key can be generated");
        let cert = params.self_signed(&key).expect("the CA can sign itself");
        Ca { cert, key }
    }

    /// A client certificate for `cn` (and `email` in the SAN), written as
    /// `<stem>.crt` and `<stem>.key` into `dir`.
    fn issue(&self, dir: &Path, stem: &str, cn: &str, email: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![SanType::Rfc822Name(
            email.try_into().expect("an ASCII e-mail address"),
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("a P-256 key can be generated");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("the CA can sign");
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("certificate can be written");
        std::fs::write(&key_path, key.serialize_pem()).expect("key can be written");
        (cert_path, key_path)
    }
}

/// A server whose client CA is `ca`, mapping certificates by `identity`.
fn server(ca: &Ca, identity: &str) -> TestServer {
    TestServer::builder()
        .config(&format!(
            "[tls]\nclient_ca = \"ca.pem\"\nclient_identity = \"{identity}\"\n"
        ))
        .file("ca.pem", &ca.cert.pem())
        .start()
}

fn curl_external(server: &TestServer, cert: &Path, key: &Path, user: Option<&str>) -> ToolOutput {
    let url = format!("smtp://127.0.0.1:{}/client.test", server.submission_port());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut args = vec![
        "--url",
        &url,
        "--ssl-reqd",
        "-k",
        "--cert",
        &cert,
        "--key",
        &key,
        "--login-options",
        "AUTH=EXTERNAL",
        "--mail-from",
        FROM,
        "--mail-rcpt",
        TO,
        "--upload-file",
        "-",
    ];
    // `--user NAME:` with an empty password (curl picks EXTERNAL only
    // then); NAME goes out as the authzid.
    if let Some(user) = user {
        args.extend_from_slice(&["--user", user]);
    }
    curl(&args, &sample_message("curl-external"))
}

#[test]
fn curl_external_with_a_certificate_our_ca_signed() {
    let ca = Ca::new("Portcullis Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = ca.issue(dir.path(), "alice", ALICE.0, "alice@example.test");
    let server = server(&ca, "cn");
    let out = curl_external(&server, &cert, &key, Some("alice:"));
    out.assert_success(true)
        .assert_contains("AUTH EXTERNAL")
        .assert_contains("235 2.7.0");
    let message = server.single_message();
    message.assert_submitted_by(ALICE.0, "EXTERNAL");
    let client = &message.meta["tls"]["client_certificate"];
    assert_eq!(client["subject"], "CN=alice", "{:#}", message.meta);
    assert_eq!(
        client["issuer"], "CN=Portcullis Test CA",
        "{:#}",
        message.meta
    );
    assert_eq!(
        client["sha256"].as_str().map(str::len),
        Some(95),
        "{:#}",
        message.meta
    );
}

#[test]
fn a_certificate_from_an_unknown_ca_fails_the_handshake() {
    let ca = Ca::new("Portcullis Test CA");
    let rogue = Ca::new("Rogue CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = rogue.issue(dir.path(), "alice", ALICE.0, "alice@example.test");
    let server = server(&ca, "cn");
    let out = curl_external(&server, &cert, &key, Some("alice:"));
    out.assert_success(false).assert_lacks("235 ");
    assert!(server.spool_messages().is_empty());
}

#[test]
fn without_a_certificate_external_is_not_offered_but_passwords_work() {
    let ca = Ca::new("Portcullis Test CA");
    let server = server(&ca, "cn");
    let url = format!("smtp://127.0.0.1:{}/client.test", server.submission_port());
    let user = format!("{}:{}", ALICE.0, ALICE.1);
    let out = curl(
        &[
            "--url",
            &url,
            "--ssl-reqd",
            "-k",
            "--user",
            &user,
            "--mail-from",
            FROM,
            "--mail-rcpt",
            TO,
            "--upload-file",
            "-",
        ],
        &sample_message("curl-no-cert"),
    );
    out.assert_success(true)
        .assert_contains("235 2.7.0")
        .assert_lacks("EXTERNAL");
}

#[test]
fn email_mapping_and_a_certificate_for_no_known_user() {
    let ca = Ca::new("Portcullis Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder()
        .users(&[("alice@example.test", "pw"), ("carol", "pw")])
        .config("[tls]\nclient_ca = \"ca.pem\"\nclient_identity = \"email\"\n")
        .file("ca.pem", &ca.cert.pem())
        .start();
    let (cert, key) = ca.issue(dir.path(), "alice", "Alice Example", "alice@example.test");
    curl_external(&server, &cert, &key, None).assert_contains("235 2.7.0");
    server
        .single_message()
        .assert_submitted_by("alice@example.test", "EXTERNAL");
    // Signed by our CA, but the address names nobody in the store.
    let (cert, key) = ca.issue(dir.path(), "mallory", "carol", "mallory@example.test");
    curl_external(&server, &cert, &key, None).assert_contains("535 5.7.8");
}

#[test]
fn gsasl_external_with_a_client_certificate() {
    let ca = Ca::new("Portcullis Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = ca.issue(dir.path(), "alice", ALICE.0, "alice@example.test");
    let server = server(&ca, "cn");
    let connect = format!("--connect=127.0.0.1:{}", server.submission_port());
    let server_ca = format!(
        "--x509-ca-file={}",
        server.data_dir().join("tls/cert.pem").display()
    );
    let cert = format!("--x509-cert-file={}", cert.display());
    let key = format!("--x509-key-file={}", key.display());
    // Without and with `--starttls` (STARTTLS before EHLO).
    for starttls in [&[][..], &["--starttls"]] {
        let mut args = vec!["--smtp", &connect, &server_ca, &cert, &key, "--verbose"];
        args.extend_from_slice(starttls);
        args.extend_from_slice(&["-m", "EXTERNAL", "-z", ALICE.0]);
        gsasl(&args)
            .assert_contains("AUTH EXTERNAL")
            .assert_contains("235 2.7.0");
    }
}

#[test]
fn msmtp_external_with_a_client_certificate() {
    let ca = Ca::new("Portcullis Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = ca.issue(dir.path(), "alice", ALICE.0, "alice@example.test");
    let server = server(&ca, "cn");
    let port = format!("--port={}", server.submission_port());
    let cert = format!("--tls-cert-file={}", cert.display());
    let key = format!("--tls-key-file={}", key.display());
    let from = format!("--from={FROM}");
    let out = msmtp(
        &[
            "--debug",
            "--host=127.0.0.1",
            &port,
            "--tls=on",
            "--tls-starttls=on",
            "--tls-certcheck=off",
            &cert,
            &key,
            "--auth=external",
            // Without a user, msmtp sends `AUTH EXTERNAL` with no initial
            // response and then goes on with MAIL without answering our
            // empty `334`; with one, the user goes out as the authzid.
            "--user=alice",
            &from,
            TO,
        ],
        &sample_message("msmtp-external"),
    );
    out.assert_contains("AUTH EXTERNAL")
        .assert_contains("<-- 235 2.7.0")
        .assert_success(true);
    server
        .single_message()
        .assert_submitted_by(ALICE.0, "EXTERNAL");
}

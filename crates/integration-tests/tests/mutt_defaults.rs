//! Debian's mutt, built with GNU SASL, logging in with its default
//! settings against the default mechanism list. GNU SASL picks the
//! strongest mechanism advertised; mutt gives it no channel binding, so
//! an advertised -PLUS made every login fail ("SASL authentication
//! failed"). Without -PLUS in the defaults it picks SCRAM-SHA-256.

use std::process::{Command, Stdio};

use portcullis_integration_tests::{TestServer, ALICE};

#[test]
fn mutt_with_its_defaults_logs_in_and_sends() {
    let server = TestServer::start("");
    let home = tempfile::tempdir().expect("tempdir");
    let muttrc = home.path().join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set smtp_url=\"smtp://{user}@127.0.0.1:{port}/\"\n\
             set smtp_pass=\"{password}\"\n\
             set ssl_starttls=yes\nset ssl_force_tls=yes\n\
             set ssl_verify_host=no\n\
             set ssl_ca_certificates_file=\"{ca}\"\n\
             set certificate_file=\"{home}/certificates\"\n\
             set from=\"alice@example.test\"\nset use_from=yes\nset record=\"\"\n",
            user = ALICE.0,
            password = ALICE.1,
            port = server.submission_port(),
            ca = server.data_dir().join("tls/cert.pem").display(),
            home = home.path().display(),
        ),
    )
    .expect("write muttrc");
    let mut child = Command::new("mutt")
        .args(["-n", "-F"])
        .arg(&muttrc)
        .args(["-s", "from mutt", "rcpt@example.test"])
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mutt runs (Debian package mutt)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"hello from mutt\n")
        .expect("write body");
    let out = child.wait_with_output().expect("mutt finishes");
    assert!(
        out.status.success(),
        "mutt failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let spooled = server.spool_messages();
    assert_eq!(spooled.len(), 1);
    assert_eq!(
        spooled[0].auth_field("mechanism").as_deref(),
        Some("SCRAM-SHA-256")
    );
    assert_eq!(spooled[0].auth_field("authn_id").as_deref(), Some(ALICE.0));
    assert!(spooled[0].eml.contains("hello from mutt"));
}

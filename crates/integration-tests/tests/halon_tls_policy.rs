//! Halon's AUTH script facilities through portcullis's policy: `GetTLS`
//! (fingerprints, key size, the peer certificate's fields, the
//! verification result) as `conn.tls`, a listener that requests a client
//! certificate without requiring a CA (`client_certificate = "request"`)
//! so a script can pin a self-signed one by fingerprint, and
//! `Reject`/`Defer` with a list of lines as a multi-line reply. Driven by
//! Python's `ssl` presenting a self-signed certificate made here.

use portcullis_integration_tests::{python, TestServer};
use sha2::Digest;

fn colons(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

const POLICY: &str = r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  local tls = conn.tls
  if auth.user == 'maintenance' then
    return portcullis.defer{ message = { 'Down for maintenance', 'Try again after 10:00' } }
  end
  if tls == nil or tls.peer_sha256 ~= PINNED then
    return portcullis.reject{ message = { 'Certificate not pinned', 'See https://example.test/help' } }
  end
  if auth.password ~= 'pw' then
    return false
  end
  return portcullis.accept{ data = {
    md5 = tls.peer_md5, sha1 = tls.peer_sha1, sha512 = tls.peer_sha512,
    verified = tls.peer_verified, verify_error = tls.peer_verify_error,
    key_bits = tls.peer_key_bits, key_algorithm = tls.peer_key_algorithm,
    key_size = tls.key_size, subject = tls.peer_subject, serial = tls.peer_serial,
    sans = tls.peer_subject_alt_names, not_after = tls.peer_not_after } }
end)
"#;

/// What the spool record says of the client certificate's verification.
fn meta_verified(meta: &serde_json::Value) -> Option<bool> {
    meta["tls"]["client_certificate"]["verified"].as_bool()
}

#[test]
fn a_self_signed_client_certificate_is_pinned_by_fingerprint_and_refusals_span_lines() {
    let mut params = rcgen::CertificateParams::new(vec!["device-7.example.test".to_string()])
        .expect("a SAN list");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "device-7");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = params.self_signed(&key).expect("self-signed");
    let sha256 = colons(&sha2::Sha256::digest(cert.der()));
    let sha512 = colons(&sha2::Sha512::digest(cert.der()));

    let server = TestServer::builder()
        .without_default_listeners()
        .config(
            "policy = \"policy.lua\"\n\
             [[listener]]\nname = \"pinned\"\naddress = \"127.0.0.1:{port:pinned}\"\n\
             tls = \"starttls\"\nclient_certificate = \"request\"\n",
        )
        .file("policy.lua", &format!("PINNED = '{sha256}'\n{POLICY}"))
        .file("client.crt", &cert.pem())
        .file("client.key", &key.serialize_pem())
        .start();
    let dir = server
        .config_path()
        .parent()
        .expect("config dir")
        .to_owned();
    let out = python(
        &format!(
            r#"
        import os
        def with_cert(starttls=True):
            s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=15)
            s.ehlo()
            c = ctx()
            c.load_cert_chain(os.path.join({dir:?}, "client.crt"), os.path.join({dir:?}, "client.key"))
            s.starttls(context=c)
            s.ehlo()
            return s
        s = with_cert()
        login("pinned", s, "device-7", "pw", "PLAIN")
        submit("msg", s)
        s.quit()
        s = connect()
        login("no-cert", s, "device-7", "pw", "PLAIN")
        login("deferred", s, "maintenance", "pw", "PLAIN")
        s.quit()
        "#
        ),
        &[server.port("pinned")],
    );
    out.assert_reply("pinned", "235 2.7.0")
        .assert_reply("msg.data", "250")
        .assert_reply(
            "no-cert",
            "535 5.7.8 Certificate not pinned | 5.7.8 See https://example.test/help",
        )
        .assert_reply(
            "deferred",
            "454 4.7.0 Down for maintenance | 4.7.0 Try again after 10:00",
        );
    let message = server.single_message();
    let data = &message.meta["auth"]["user_data"];
    assert_eq!(data["sha512"], sha512, "{data:#}");
    assert_eq!(
        data["md5"].as_str().map(str::len),
        Some(16 * 3 - 1),
        "{data:#}"
    );
    assert_eq!(
        data["sha1"].as_str().map(str::len),
        Some(20 * 3 - 1),
        "{data:#}"
    );
    assert_eq!(data["verified"], false);
    assert!(data["verify_error"]
        .as_str()
        .is_some_and(|e| e.contains("client_ca")));
    assert_eq!(data["key_algorithm"], "EC");
    assert_eq!(data["key_bits"], 256);
    assert!(
        data["key_size"] == 128 || data["key_size"] == 256,
        "{data:#}"
    );
    assert_eq!(data["subject"], "CN=device-7");
    assert_eq!(
        data["sans"],
        serde_json::json!(["DNS:device-7.example.test"])
    );
    assert!(data["not_after"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(
        meta_verified(&message.meta),
        Some(false),
        "{:#}",
        message.meta
    );
    // A certificate that chains to no CA never names a user for EXTERNAL.
    assert_eq!(message.auth_field("mechanism").as_deref(), Some("PLAIN"));
}

//! GNU SASL's `gsasl --starttls`, which sends STARTTLS before EHLO (as
//! Postfix allows), with every password mechanism and an authzid; and
//! GNU SASL choosing a mechanism by itself, without channel binding, as
//! mutt and neomutt call it: the default mechanism list must let it in.

use portcullis_integration_tests::{gsasl, TestServer, ToolOutput, ALICE};

/// `gsasl --starttls` against the STARTTLS listener.
fn gsasl_starttls(server: &TestServer, extra: &[&str]) -> ToolOutput {
    let connect = format!("--connect=127.0.0.1:{}", server.submission_port());
    let ca = format!(
        "--x509-ca-file={}",
        server.data_dir().join("tls/cert.pem").display()
    );
    let mut args = vec![
        "--smtp",
        "--starttls",
        &connect,
        &ca,
        "--verbose",
        "-a",
        ALICE.0,
        "-p",
        ALICE.1,
    ];
    args.extend_from_slice(extra);
    gsasl(&args)
}

#[test]
fn gsasl_starttls_before_ehlo_with_every_password_mechanism() {
    let server = TestServer::start("");
    for (mechanism, extra) in [
        ("PLAIN", &[][..]),
        ("LOGIN", &[]),
        ("CRAM-MD5", &[]),
        ("SCRAM-SHA-256", &["--no-cb"]),
        ("SCRAM-SHA-1", &["--no-cb"]),
    ] {
        let mut args = vec!["-m", mechanism];
        args.extend_from_slice(extra);
        let out = gsasl_starttls(&server, &args);
        out.assert_contains("STARTTLS")
            .assert_contains(&format!("AUTH {mechanism}"))
            .assert_contains("235 2.7.0");
    }
}

#[test]
fn gsasl_starttls_scram_plus_where_the_listener_offers_it() {
    let server = TestServer::builder()
        .mechanisms(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"])
        .start();
    gsasl_starttls(&server, &["-m", "SCRAM-SHA-256-PLUS"])
        .assert_contains("AUTH SCRAM-SHA-256-PLUS")
        .assert_contains("235 2.7.0");
}

#[test]
fn gsasl_starttls_plain_with_an_authzid() {
    let server = TestServer::start("");
    let out = server
        .cli(&["user", "allow", ALICE.0, "sales"])
        .output()
        .expect("user allow");
    assert!(out.status.success(), "{out:?}");
    gsasl_starttls(&server, &["-m", "PLAIN", "-z", "sales"]).assert_contains("235 2.7.0");
    gsasl_starttls(&server, &["-m", "PLAIN", "-z", "bob"]).assert_contains("535 5.7.8");
    let log = server.log();
    assert!(
        log.contains("user=alice authz=sales result=\"accepted\""),
        "{log}"
    );
}

/// mutt and neomutt hand GNU SASL the server's list and no channel
/// binding. With -PLUS advertised, GNU SASL picked it and cancelled; by
/// default it is not advertised, so the strongest usable one wins.
#[test]
fn gnu_sasl_choosing_without_binding_gets_in_with_the_defaults() {
    let server = TestServer::start("");
    let out = gsasl_starttls(&server, &["--no-cb"]);
    out.assert_contains("AUTH SCRAM-SHA-256")
        .assert_lacks("AUTH SCRAM-SHA-256-PLUS")
        .assert_contains("235 2.7.0");
}

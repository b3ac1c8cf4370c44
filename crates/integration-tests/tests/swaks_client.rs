//! swaks (Perl, Net::SSLeay, Authen::SASL) submitting with PLAIN, LOGIN and
//! CRAM-MD5 over STARTTLS and implicit TLS.

use portcullis_integration_tests::{swaks, TestServer, ToolOutput, ALICE, FROM, TO};

fn submit(
    server: &TestServer,
    implicit: bool,
    mechanism: &str,
    user: &str,
    password: &str,
) -> ToolOutput {
    let (port, tls_flag) = if implicit {
        (server.implicit_port(), "--tls-on-connect")
    } else {
        (server.submission_port(), "--tls")
    };
    let address = format!("127.0.0.1:{port}");
    swaks(&[
        "--server",
        &address,
        tls_flag,
        "--auth",
        mechanism,
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        FROM,
        "--to",
        TO,
        "--header",
        "Subject: swaks",
        "--body",
        "Hello from the portcullis tests.",
    ])
}

fn accepts_good_password(mechanism: &str, implicit: bool) {
    let server = TestServer::start("");
    let out = submit(&server, implicit, mechanism, ALICE.0, ALICE.1);
    out.assert_contains("235 2.7.0")
        .assert_contains("250 ")
        .assert_success(true);
    server
        .single_message()
        .assert_submitted_by(ALICE.0, mechanism);
}

fn refuses_bad_password(mechanism: &str) {
    let server = TestServer::start("");
    for (user, password) in [(ALICE.0, "wrong horse"), ("nobody", ALICE.1)] {
        let out = submit(&server, false, mechanism, user, password);
        out.assert_contains("535 5.7.8")
            .assert_lacks("235 ")
            .assert_success(false);
    }
    assert!(
        server.spool_messages().is_empty(),
        "nothing may be spooled after failed AUTH"
    );
}

#[test]
fn swaks_plain_with_good_password_is_accepted_and_spooled() {
    accepts_good_password("PLAIN", false);
}

#[test]
fn swaks_login_with_good_password_is_accepted_and_spooled() {
    accepts_good_password("LOGIN", false);
}

#[test]
fn swaks_cram_md5_with_good_password_is_accepted_and_spooled() {
    accepts_good_password("CRAM-MD5", false);
}

#[test]
fn swaks_cram_md5_over_implicit_tls_is_accepted_and_spooled() {
    accepts_good_password("CRAM-MD5", true);
}

#[test]
fn swaks_plain_over_implicit_tls_is_accepted_and_spooled() {
    accepts_good_password("PLAIN", true);
}

#[test]
fn swaks_plain_with_bad_credentials_gets_535() {
    refuses_bad_password("PLAIN");
}

#[test]
fn swaks_login_with_bad_credentials_gets_535() {
    refuses_bad_password("LOGIN");
}

#[test]
fn swaks_cram_md5_with_bad_credentials_gets_535() {
    refuses_bad_password("CRAM-MD5");
}

//! curl (libcurl, OpenSSL) submitting with PLAIN, LOGIN and CRAM-MD5 over
//! STARTTLS (`smtp://` + `--ssl-reqd`) and implicit TLS (`smtps://`).

use portcullis_integration_tests::{curl, sample_message, TestServer, ToolOutput, ALICE, FROM, TO};

fn submit(
    server: &TestServer,
    implicit: bool,
    mechanism: &str,
    user: &str,
    password: &str,
) -> ToolOutput {
    let url = if implicit {
        format!("smtps://127.0.0.1:{}/client.test", server.implicit_port())
    } else {
        format!("smtp://127.0.0.1:{}/client.test", server.submission_port())
    };
    let credentials = format!("{user}:{password}");
    let login_options = format!("AUTH={mechanism}");
    curl(
        &[
            "--url",
            &url,
            "--ssl-reqd",
            "-k",
            "--mail-from",
            FROM,
            "--mail-rcpt",
            TO,
            "--user",
            &credentials,
            "--login-options",
            &login_options,
            "--upload-file",
            "-",
        ],
        &sample_message("curl"),
    )
}

fn accepts_good_password(mechanism: &str, implicit: bool) {
    let server = TestServer::start("");
    let out = submit(&server, implicit, mechanism, ALICE.0, ALICE.1);
    out.assert_contains("< 235 2.7.0").assert_success(true);
    server
        .single_message()
        .assert_submitted_by(ALICE.0, mechanism);
}

fn refuses_bad_password(mechanism: &str) {
    let server = TestServer::start("");
    for (user, password) in [(ALICE.0, "wrong horse"), ("nobody", ALICE.1)] {
        let out = submit(&server, false, mechanism, user, password);
        // curl exits 67 (CURLE_LOGIN_DENIED) on a refused AUTH.
        out.assert_contains("< 535 5.7.8")
            .assert_lacks("< 235")
            .assert_success(false);
        assert_eq!(out.status.code(), Some(67), "{}", out.transcript());
    }
    assert!(
        server.spool_messages().is_empty(),
        "nothing may be spooled after failed AUTH"
    );
}

#[test]
fn curl_plain_with_good_password_is_accepted_and_spooled() {
    accepts_good_password("PLAIN", false);
}

#[test]
fn curl_login_with_good_password_is_accepted_and_spooled() {
    accepts_good_password("LOGIN", false);
}

#[test]
fn curl_cram_md5_with_good_password_is_accepted_and_spooled() {
    accepts_good_password("CRAM-MD5", false);
}

#[test]
fn curl_login_over_smtps_is_accepted_and_spooled() {
    accepts_good_password("LOGIN", true);
}

#[test]
fn curl_plain_with_bad_credentials_gets_535() {
    refuses_bad_password("PLAIN");
}

#[test]
fn curl_login_with_bad_credentials_gets_535() {
    refuses_bad_password("LOGIN");
}

#[test]
fn curl_cram_md5_with_bad_credentials_gets_535() {
    refuses_bad_password("CRAM-MD5");
}

//! PLAIN authorization identities (RFC 4616): empty or equal to the
//! authentication identity is fine; anything else only for users who may
//! act as it. Uses the `file` user backend, where `may_act_as` is a list.

use portcullis_integration_tests::{curl, python, sample_message, TestServer, FROM, TO};

const USERS: &str = r#"
[[user]]
name = "alice"
password = "{PLAIN}correct horse"
may_act_as = ["boss"]

[[user]]
name = "bob"
password = "{PLAIN}battery staple"
"#;

fn server() -> TestServer {
    TestServer::builder()
        .config("[users]\nbackend = \"file\"\npath = \"users.toml\"\n")
        .file("users.toml", USERS)
        .users(&[])
        .start()
}

fn plain_with_authzid(server: &TestServer, authzid: &str, user: &str, password: &str) -> String {
    let script = format!(
        r#"
        s = connect()
        show("auth", s.docmd("AUTH", "PLAIN " + b64("{authzid}\0{user}\0{password}")))
        submit("msg", s)
        "#
    );
    let out = python(&script, &[server.submission_port()]);
    out.reply("auth")
}

#[test]
fn plain_authzid_the_user_may_act_as_is_accepted_and_recorded() {
    let server = server();
    let reply = plain_with_authzid(&server, "boss", "alice", "correct horse");
    assert!(
        reply.starts_with("235 2.7.0"),
        "got {reply}\nlog:\n{}",
        server.log()
    );
    let message = server.single_message();
    assert_eq!(
        message.auth_field("authn_id").as_deref(),
        Some("alice"),
        "{:#}",
        message.meta
    );
    assert_eq!(
        message.auth_field("authz_id").as_deref(),
        Some("boss"),
        "{:#}",
        message.meta
    );
    assert!(
        message.first_header().contains("ESMTPSA"),
        "{}",
        message.first_header()
    );
}

#[test]
fn plain_authzid_equal_to_authcid_is_accepted() {
    let server = server();
    let reply = plain_with_authzid(&server, "bob", "bob", "battery staple");
    assert!(
        reply.starts_with("235 2.7.0"),
        "got {reply}\nlog:\n{}",
        server.log()
    );
    server.single_message().assert_submitted_by("bob", "PLAIN");
}

#[test]
fn plain_empty_authzid_is_accepted_with_file_backend() {
    let server = server();
    let reply = plain_with_authzid(&server, "", "alice", "correct horse");
    assert!(
        reply.starts_with("235 2.7.0"),
        "got {reply}\nlog:\n{}",
        server.log()
    );
    server
        .single_message()
        .assert_submitted_by("alice", "PLAIN");
}

#[test]
fn plain_authzid_the_user_may_not_act_as_is_refused_with_535() {
    let server = server();
    for (authzid, user, password) in [
        ("mallory", "alice", "correct horse"),
        ("alice", "bob", "battery staple"),
        ("boss", "bob", "battery staple"),
    ] {
        let reply = plain_with_authzid(&server, authzid, user, password);
        assert!(
            reply.starts_with("535"),
            "{user} acting as {authzid}: got {reply}"
        );
    }
    assert!(
        server.spool_messages().is_empty(),
        "refused authzid must not submit"
    );
}

#[test]
fn curl_sasl_authzid_is_honoured_and_refused_when_not_allowed() {
    let server = server();
    let url = format!("smtp://127.0.0.1:{}/client.test", server.submission_port());
    let run = |authzid: &str, credentials: &str| {
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
                credentials,
                "--login-options",
                "AUTH=PLAIN",
                "--sasl-authzid",
                authzid,
                "--upload-file",
                "-",
            ],
            &sample_message("curl-authzid"),
        )
    };
    run("boss", "alice:correct horse")
        .assert_contains("< 235 2.7.0")
        .assert_success(true);
    run("alice", "bob:battery staple")
        .assert_contains("< 535")
        .assert_success(false);
    let message = server.single_message();
    assert_eq!(
        message.auth_field("authz_id").as_deref(),
        Some("boss"),
        "{:#}",
        message.meta
    );
    assert_eq!(
        message.auth_field("authn_id").as_deref(),
        Some("alice"),
        "{:#}",
        message.meta
    );
}

//! App passwords end to end: `portcullis credential add|list|revoke|rotate`
//! and swaks logging in with them; their scopes (client networks, senders,
//! expiry); `require_app_password`; and the credential in the spool.

use portcullis_integration_tests::{swaks_plain, TestServer, ALICE};

/// Runs the CLI against `server`'s config and returns its stdout.
fn cli(server: &TestServer, args: &[&str]) -> String {
    let out = server.cli(args).output().expect("portcullis runs");
    assert!(
        out.status.success(),
        "portcullis {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `credential add` and the token it printed once (its last line).
fn add(server: &TestServer, extra: &[&str]) -> (String, String) {
    let mut args = vec!["credential", "add", ALICE.0, "--label", "phone"];
    args.extend_from_slice(extra);
    let out = cli(server, &args);
    let token = out.lines().last().expect("a token line").trim().to_string();
    assert!(token.starts_with("pc_"), "{out}");
    let id = token[3..15].to_string();
    (id, token)
}

#[test]
fn swaks_with_an_app_password_gets_235_until_it_is_revoked() {
    let server = TestServer::start("");
    let (id, token) = add(&server, &[]);
    swaks_plain(&server, ALICE.0, &token)
        .assert_contains("235 2.7.0")
        .assert_success(true);
    let message = server.single_message();
    assert_eq!(message.auth_field("authn_id").as_deref(), Some(ALICE.0));
    assert_eq!(message.auth_field("mechanism").as_deref(), Some("PLAIN"));
    let credential = &message.meta["auth"]["credential"];
    assert_eq!(credential["id"], id.as_str(), "{:#}", message.meta);
    assert_eq!(credential["label"], "phone");
    assert!(
        !message.meta.to_string().contains(&token[16..]),
        "the secret reached the spool"
    );
    let log = server.log();
    assert!(log.contains(&format!("credential={id}")), "{log}");
    assert!(!log.contains(&token[16..]), "the secret reached the log");

    let listed = cli(&server, &["credential", "list", ALICE.0]);
    assert!(
        listed.contains(&id) && listed.contains("label=\"phone\""),
        "{listed}"
    );
    assert!(listed.contains("from 127.0.0.1"), "last use: {listed}");
    assert!(!listed.contains(&token[16..]), "{listed}");

    cli(&server, &["credential", "revoke", ALICE.0, &id]);
    swaks_plain(&server, ALICE.0, &token)
        .assert_contains("535 5.7.8")
        .assert_lacks("235 ")
        .assert_success(false);
    assert!(server.log().contains("unknown app password"));
    // The account password still works.
    swaks_plain(&server, ALICE.0, ALICE.1).assert_contains("235 2.7.0");
}

#[test]
fn rotate_keeps_the_id_and_retires_the_old_secret() {
    let server = TestServer::start("");
    let (id, old) = add(&server, &[]);
    let out = cli(&server, &["credential", "rotate", ALICE.0, &id]);
    let new = out.lines().last().expect("token").trim().to_string();
    assert_eq!(&new[..15], &old[..15], "same id");
    swaks_plain(&server, ALICE.0, &old).assert_contains("535 5.7.8");
    swaks_plain(&server, ALICE.0, &new).assert_contains("235 2.7.0");
}

#[test]
fn a_credential_with_from_refuses_another_network() {
    let server = TestServer::start("");
    let (_, elsewhere) = add(&server, &["--from", "198.51.100.0/24"]);
    swaks_plain(&server, ALICE.0, &elsewhere)
        .assert_contains("535 5.7.8")
        .assert_lacks("235 ");
    assert!(
        server
            .log()
            .contains("app password not allowed from this network"),
        "the log says why"
    );
    let (_, here) = add(&server, &["--from", "127.0.0.0/8,2001:db8::/32"]);
    swaks_plain(&server, ALICE.0, &here).assert_contains("235 2.7.0");
}

#[test]
fn a_credential_with_senders_refuses_other_senders() {
    let server = TestServer::start("");
    // FROM is alice@example.test: not among this credential's senders.
    let (_, token) = add(&server, &["--senders", "alerts@example.org"]);
    swaks_plain(&server, ALICE.0, &token)
        .assert_contains("235 2.7.0")
        .assert_contains("553 5.7.1")
        .assert_success(false);
    let (_, token) = add(&server, &["--senders", "@example.test"]);
    swaks_plain(&server, ALICE.0, &token)
        .assert_contains("250 ")
        .assert_success(true);
}

#[test]
fn an_expired_credential_is_refused() {
    let server = TestServer::start("");
    // Expires at once ("0s" from now).
    let (_, token) = add(&server, &["--expires", "0s"]);
    swaks_plain(&server, ALICE.0, &token)
        .assert_contains("535 5.7.8")
        .assert_lacks("235 ");
    assert!(server.log().contains("app password expired"));
}

#[test]
fn require_app_password_refuses_the_account_password_with_534() {
    let server = TestServer::start("");
    cli(&server, &["user", "require-app-password", ALICE.0]);
    assert!(cli(&server, &["user", "list"]).contains("alice  (app-passwords-only)"));
    swaks_plain(&server, ALICE.0, ALICE.1)
        .assert_contains("534 5.7.9")
        .assert_lacks("235 ")
        .assert_success(false);
    // A wrong account password is just wrong.
    swaks_plain(&server, ALICE.0, "wrong horse").assert_contains("535 5.7.8");
    let (_, token) = add(&server, &[]);
    swaks_plain(&server, ALICE.0, &token)
        .assert_contains("235 2.7.0")
        .assert_success(true);
}

#[test]
fn an_app_password_is_only_its_owners() {
    let server = TestServer::start("");
    let (_, token) = add(&server, &[]);
    swaks_plain(&server, "bob", &token)
        .assert_contains("535 5.7.8")
        .assert_lacks("235 ");
    assert!(server.log().contains("app password of another user"));
}

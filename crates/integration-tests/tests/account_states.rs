//! Account states: a disabled account answers `525 5.7.13` after the right
//! password and `535 5.7.8` after a wrong one (no oracle for the state
//! without the password); an old password expires.

use portcullis_integration_tests::{swaks_plain, TestServer, ALICE};

fn cli(server: &TestServer, args: &[&str]) -> String {
    let out = server.cli(args).output().expect("portcullis runs");
    assert!(
        out.status.success(),
        "portcullis {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn a_disabled_account_gets_525_with_the_right_password_and_535_with_a_wrong_one() {
    let server = TestServer::start("");
    cli(&server, &["user", "disable", ALICE.0]);
    assert!(cli(&server, &["user", "list"]).contains("alice  (disabled)"));
    swaks_plain(&server, ALICE.0, ALICE.1)
        .assert_contains("525 5.7.13")
        .assert_lacks("235 ")
        .assert_success(false);
    swaks_plain(&server, ALICE.0, "wrong horse")
        .assert_contains("535 5.7.8")
        .assert_lacks("525 ");
    assert!(server.log().contains("account disabled"));
    assert!(server.spool_messages().is_empty());

    cli(&server, &["user", "enable", ALICE.0]);
    assert!(!cli(&server, &["user", "list"]).contains("disabled"));
    // The server reads the change at its next store-version poll.
    portcullis_integration_tests::wait_until(
        &server,
        "the enabled account logs in",
        std::time::Duration::from_secs(30),
        || {
            swaks_plain(&server, ALICE.0, ALICE.1)
                .transcript()
                .contains("235 2.7.0")
        },
    );
}

#[test]
fn an_old_password_is_refused_and_auth_test_says_expired() {
    // Every password is "too old" at a max age of one second, once a
    // second has passed since it was set.
    let server = TestServer::start("[auth]\npassword_max_age = \"1s\"\n");
    portcullis_integration_tests::wait_until(
        &server,
        "the password expires",
        std::time::Duration::from_secs(30),
        || {
            swaks_plain(&server, ALICE.0, ALICE.1)
                .transcript()
                .contains("535 5.7.8")
        },
    );
    assert!(server.log().contains("password expired"));
    let out = server
        .cli(&["auth", "test", ALICE.0, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped");
            writeln!(stdin, "{}", ALICE.1)?;
            drop(stdin);
            child.wait_with_output()
        })
        .expect("auth test runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("password expired"), "{said}");
}

/// A disabled user's phone retrying with the right password makes no
/// guesses: it never reaches the user's cool-down (which would answer
/// `454` unchecked), however often it tries.
#[test]
fn right_passwords_to_a_disabled_account_are_not_counted_as_guesses() {
    let server = TestServer::start(
        "[limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n\
         user_max_failures = 2\nuser_cooldown = \"1h\"\nban_after = 50\n",
    );
    cli(&server, &["user", "disable", ALICE.0]);
    for _ in 0..4 {
        swaks_plain(&server, ALICE.0, ALICE.1)
            .assert_contains("525 5.7.13")
            .assert_lacks("454 ");
    }
    // One wrong password: one failure, below the cool-down (had the
    // 525s counted, this would be the second and the next try a 454).
    swaks_plain(&server, ALICE.0, "guess-1").assert_contains("535 5.7.8");
    swaks_plain(&server, ALICE.0, ALICE.1).assert_contains("525 5.7.13");
    // A second (distinct) wrong password starts the cool-down.
    swaks_plain(&server, ALICE.0, "guess-2").assert_contains("535 5.7.8");
    swaks_plain(&server, ALICE.0, ALICE.1).assert_contains("454 4.7.0");
}

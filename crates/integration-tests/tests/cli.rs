//! The administrative subcommands, run against the same config a server uses.

use std::io::Write;
use std::process::{Output, Stdio};

use portcullis_integration_tests::TestServer;

fn run_with_stdin(server: &TestServer, args: &[&str], stdin: &str) -> Output {
    let mut child = server
        .cli(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("portcullis can be spawned");
    let mut pipe = child.stdin.take().expect("stdin was piped");
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    child
        .wait_with_output()
        .expect("portcullis can be waited for")
}

fn describe(out: &Output) -> String {
    format!(
        "[{}]\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_config_accepts_the_harness_config() {
    let server = TestServer::start("");
    let out = run_with_stdin(&server, &["check-config"], "");
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn check_config_rejects_an_unknown_tls_mode() {
    let server = TestServer::start("");
    let bad = server.data_dir().join("bad.toml");
    std::fs::write(
        &bad,
        "[[listener]]\nname = \"x\"\naddress = \"127.0.0.1:1\"\ntls = \"bogus\"\n",
    )
    .expect("write");
    let out = portcullis_integration_tests_cli(&[
        "check-config",
        "--config",
        bad.to_str().expect("utf-8 temp path"),
    ]);
    assert!(
        !out.status.success(),
        "an invalid tls mode must be rejected\n{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown variant `bogus`, expected one of `starttls`, `implicit`, `none`"),
        "the error lists the valid modes\n{}",
        describe(&out)
    );
}

#[test]
fn check_config_logs_each_deprecated_key_and_still_accepts_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("old.toml");
    let data_dir = dir.path().display().to_string();
    std::fs::write(
        &config,
        format!("data_dir = {data_dir:?}\n[limits]\nidle_timeout_secs = 90\n"),
    )
    .expect("write");
    let path = config.to_str().expect("utf-8 temp path");
    let out = portcullis_integration_tests_cli(&["check-config", "--config", path]);
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "limits.idle_timeout_secs is deprecated; write limits.idle_timeout = \"1m 30s\" instead"
        ),
        "{}",
        describe(&out)
    );
    std::fs::write(
        &config,
        format!(
            "data_dir = {data_dir:?}\n[limits]\nidle_timeout_secs = 90\nidle_timeout = \"90s\"\n"
        ),
    )
    .expect("write");
    let out = portcullis_integration_tests_cli(&["check-config", "--config", path]);
    assert!(!out.status.success(), "both spellings at once is an error");
}

fn portcullis_integration_tests_cli(args: &[&str]) -> Output {
    std::process::Command::new(portcullis_integration_tests::portcullis_bin())
        .args(args)
        .output()
        .expect("portcullis can be run")
}

#[test]
fn auth_test_accepts_right_password_and_refuses_wrong_one() {
    let server = TestServer::start("");
    for mechanism in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let good = run_with_stdin(
            &server,
            &[
                "auth",
                "test",
                "alice",
                "--mechanism",
                mechanism,
                "--password-stdin",
            ],
            "correct horse\n",
        );
        assert!(
            good.status.success(),
            "{mechanism} good password\n{}",
            describe(&good)
        );
        let bad = run_with_stdin(
            &server,
            &[
                "auth",
                "test",
                "alice",
                "--mechanism",
                mechanism,
                "--password-stdin",
            ],
            "wrong horse\n",
        );
        assert!(
            !bad.status.success(),
            "{mechanism} wrong password accepted\n{}",
            describe(&bad)
        );
    }
}

#[test]
fn user_added_while_server_runs_can_submit_and_deleted_user_cannot() {
    let server = TestServer::start("");
    server.add_user("carol", "hunter2 hunter2");
    let list = run_with_stdin(&server, &["user", "list"], "");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("carol"),
        "user list lacks carol\n{}",
        describe(&list)
    );
    let script = r#"
        s = connect()
        login("carol", s, "carol", "hunter2 hunter2", "PLAIN")
        s.quit()
        "#;
    portcullis_integration_tests::python(script, &[server.submission_port()])
        .assert_reply("carol", "235 2.7.0");
    let del = run_with_stdin(&server, &["user", "del", "carol"], "");
    assert!(del.status.success(), "{}", describe(&del));
    // The server reads the store's version every 100 ms: until it sees the
    // bump, carol's cached record may still let her in. A login that may
    // come before that poll proves nothing either way, so wait (bounded)
    // for the refusal, then check that it stays.
    portcullis_integration_tests::wait_until(
        &server,
        "the server to see that carol was deleted",
        std::time::Duration::from_secs(60),
        || {
            portcullis_integration_tests::python(script, &[server.submission_port()])
                .reply("carol")
                .starts_with("535 5.7.8")
        },
    );
    portcullis_integration_tests::python(script, &[server.submission_port()])
        .assert_reply("carol", "535 5.7.8");
}

#[test]
fn check_config_refuses_auth_on_cleartext_listener_without_allow_insecure_auth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("portcullis.toml");
    let listener = "[[listener]]\nname = \"cleartext\"\naddress = \"127.0.0.1:2525\"\ntls = \"none\"\nauth = \"required\"\n";
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n{listener}",
            dir.path().display().to_string()
        ),
    )
    .expect("write");
    let out = portcullis_integration_tests_cli(&[
        "check-config",
        "--config",
        config.to_str().expect("utf-8 temp path"),
    ]);
    assert!(
        !out.status.success(),
        "AUTH over cleartext accepted without allow_insecure_auth\n{}",
        describe(&out)
    );
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n{listener}allow_insecure_auth = true\n",
            dir.path().display().to_string()
        ),
    )
    .expect("write");
    let out = portcullis_integration_tests_cli(&[
        "check-config",
        "--config",
        config.to_str().expect("utf-8 temp path"),
    ]);
    assert!(
        out.status.success(),
        "allow_insecure_auth = true must make it valid\n{}",
        describe(&out)
    );
}

#[test]
fn user_passwd_replaces_the_password_for_every_mechanism() {
    let server = TestServer::start("");
    let out = run_with_stdin(
        &server,
        &["user", "passwd", "alice", "--password-stdin"],
        "new horse\n",
    );
    assert!(out.status.success(), "{}", describe(&out));
    let out = portcullis_integration_tests::python(
        r#"
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
            s = connect()
            login(mech + ".old", s, "alice", "correct horse", mech)
            login(mech + ".new", s, "alice", "new horse", mech)
            s.close()
        "#,
        &[server.submission_port()],
    );
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        out.assert_reply(&format!("{mech}.old"), "535 5.7.8")
            .assert_reply(&format!("{mech}.new"), "235 2.7.0");
    }
}

#[test]
fn a_password_change_ends_cached_logins_with_the_old_password() {
    let server = TestServer::start("");
    // The second and third logins are decided from the cached record and
    // the verified-password cache, without reading the store.
    portcullis_integration_tests::python(
        r#"
        for i in range(3):
            s = connect()
            login("old%d" % i, s, "alice", "correct horse", "PLAIN")
            s.close()
        "#,
        &[server.submission_port()],
    )
    .assert_reply("old0", "235 2.7.0")
    .assert_reply("old2", "235 2.7.0");
    let out = run_with_stdin(
        &server,
        &["user", "passwd", "alice", "--password-stdin"],
        "new horse\n",
    );
    assert!(out.status.success(), "{}", describe(&out));
    // The server polls the store's version: until it sees the bump, its
    // cached record still holds the old hash and the new password fails.
    // The new password working is the event that says the bump was seen.
    portcullis_integration_tests::wait_until(
        &server,
        "the server to see the store's new version",
        std::time::Duration::from_secs(60),
        || {
            let out = portcullis_integration_tests::python(
                r#"
                s = connect()
                login("new", s, "alice", "new horse", "PLAIN")
                s.close()
                "#,
                &[server.submission_port()],
            );
            out.reply("new").starts_with("235 2.7.0")
        },
    );
    portcullis_integration_tests::python(
        r#"
        s = connect()
        login("old", s, "alice", "correct horse", "PLAIN")
        s.close()
        "#,
        &[server.submission_port()],
    )
    .assert_reply("old", "535 5.7.8");
}

#[test]
fn a_second_server_on_the_same_spool_refuses_to_start() {
    let server = TestServer::start("");
    // Same data directory, other ports: only the spool is shared.
    let second = server.data_dir().join("second.toml");
    std::fs::write(
        &second,
        format!(
            "data_dir = {:?}\n[[listener]]\nname = \"other\"\naddress = \"127.0.0.1:0\"\n",
            server.data_dir().display().to_string()
        ),
    )
    .expect("write the second config");
    let second = second.display().to_string();
    let out = portcullis_integration_tests_cli(&["serve", "--config", &second]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another process"),
        "{}",
        describe(&out)
    );
    // The first server is untouched.
    let (mut client, greeting) =
        portcullis_integration_tests::RawClient::connect(server.submission_port());
    assert_eq!(greeting.code, 220);
    assert_eq!(client.cmd("QUIT").code, 221);
}

#[test]
fn user_import_adds_many_users_that_log_in_and_leaves_existing_ones() {
    let server = TestServer::start("");
    // alice exists (the harness's): her line is counted, not applied.
    let list = "# imported\nu1:pw-1\nu2\tpw:2\n\nu3:pw-3\r\nalice:not her password\n";
    let out = run_with_stdin(&server, &["user", "import", "-"], list);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("added 3 user(s); 1 existed"),
        "{}",
        describe(&out)
    );
    let script = r#"
        s = connect()
        login("u2", s, "u2", "pw:2", "PLAIN")
        s.quit()
        s = connect()
        login("u3", s, "u3", "pw-3", "LOGIN")
        s.quit()
        s = connect()
        login("alice", s, "alice", "not her password", "PLAIN")
        s.quit()
        "#;
    let result = portcullis_integration_tests::python(script, &[server.submission_port()]);
    result.assert_reply("u2", "235 2.7.0");
    result.assert_reply("u3", "235 2.7.0");
    result.assert_reply("alice", "535 5.7.8");
    let twice = run_with_stdin(
        &server,
        &["user", "import", "-"],
        "  # indented comment\nu8:a\nu8:b\n",
    );
    assert!(!twice.status.success(), "{}", describe(&twice));
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("line 3: u8 again (first on line 2)"),
        "{}",
        describe(&twice)
    );
    let bad = run_with_stdin(&server, &["user", "import", "-"], "u9 no separator\n");
    assert!(!bad.status.success(), "{}", describe(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("line 1: not name:password"),
        "{}",
        describe(&bad)
    );
}

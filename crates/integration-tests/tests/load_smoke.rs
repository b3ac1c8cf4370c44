//! Smoke run of `portcullis-load` against the real server: a few sessions
//! must end with zero errors, and every message the tool counted must be in
//! the spool. No timing assertions: CI machines are too noisy for them.

use std::process::Command;

use portcullis_integration_tests::{load_bin, load_report, TestServer, ALICE};
use serde_json::Value;

/// Runs portcullis-load with `--json` and returns the parsed report.
fn run_load(server: &TestServer, port: u16, args: &[&str]) -> Value {
    let target = format!("127.0.0.1:{port}");
    let out = Command::new(load_bin())
        .arg(&target)
        .args(["--user", ALICE.0, "--password", ALICE.1, "--insecure"])
        .args(["--json", "--quiet", "--timeout", "30", "-c", "2"])
        .args(args)
        .output()
        .expect("portcullis-load can be run");
    load_report(server, &out)
}

#[test]
fn starttls_plain_sessions_with_two_messages_each_all_land_in_the_spool() {
    let server = TestServer::start("");
    let report = run_load(
        &server,
        server.submission_port(),
        &[
            "--starttls",
            "--auth",
            "PLAIN",
            "--sessions",
            "4",
            "-n",
            "2",
        ],
    );
    assert_eq!(report["sessions"], 4, "{report:#}");
    assert_eq!(report["auths"], 4, "{report:#}");
    assert_eq!(report["messages"], 8, "{report:#}");

    let spooled = server.spool_messages();
    assert_eq!(spooled.len(), 8, "spool holds {} messages", spooled.len());
    for message in &spooled {
        assert_eq!(message.auth_field("authn_id").as_deref(), Some(ALICE.0));
        assert!(
            message.eml.contains("Subject: portcullis-load"),
            "not our message: {:?}",
            &message.eml[..message.eml.len().min(400)]
        );
    }
}

#[test]
fn auth_only_sessions_over_implicit_tls_with_login_spool_nothing() {
    let server = TestServer::start("");
    let report = run_load(
        &server,
        server.implicit_port(),
        &["--tls", "--auth", "LOGIN", "--sessions", "3", "-n", "0"],
    );
    assert_eq!(report["sessions"], 3, "{report:#}");
    assert_eq!(report["auths"], 3, "{report:#}");
    assert_eq!(report["messages"], 0, "{report:#}");
    assert!(server.spool_messages().is_empty());
}

/// `workers = 1` runs sessions on a single-threaded scheduler (the
/// benchmark's setting). Everything that leaves that thread must still
/// come back to it: argon2id on the blocking pool (each session's first
/// login is a distinct user, so none is cached), the journal writer's
/// answer, and SIGTERM's graceful stop.
#[test]
fn one_worker_serves_cold_logins_and_messages_and_stops_on_sigterm() {
    let mut server = TestServer::start("workers = 1\n");
    for n in 1..=3 {
        server.add_user(&format!("cold{n}"), &format!("cold-pass-{n}"));
    }
    let target = format!("127.0.0.1:{}", server.submission_port());
    let out = Command::new(load_bin())
        .arg(&target)
        .args([
            "--user-pattern",
            "cold{n}",
            "--password-pattern",
            "cold-pass-{n}",
        ])
        .args(["--user-count", "3", "--insecure", "--starttls"])
        .args(["--json", "--quiet", "--timeout", "30", "-c", "3"])
        .args(["--sessions", "3", "-n", "2"])
        .output()
        .expect("portcullis-load can be run");
    let report = load_report(&server, &out);
    assert_eq!(report["auths"], 3, "{report:#}");
    assert_eq!(report["messages"], 6, "{report:#}");
    assert_eq!(server.spool_len(), 6);

    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    server.wait_for_exit(std::time::Duration::from_secs(20));
    assert_eq!(server.spool_len(), 6, "the spool reads back after the stop");
}

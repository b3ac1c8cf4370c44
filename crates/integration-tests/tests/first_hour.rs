//! What a newcomer meets in the first hour: each message the command line
//! prints is clear, says its cause once, and nothing is created by a
//! command that only reads (or by a `serve` that cannot start).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use portcullis_integration_tests::{free_port, portcullis_bin, RawClient, TestServer, ALICE};

fn portcullis(dir: &Path, args: &[&str]) -> Output {
    Command::new(portcullis_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .expect("portcullis can be run")
}

fn text(out: &Output) -> String {
    format!(
        "[{}]\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Submits one message as alice over implicit TLS; returns its queue id.
fn submit(server: &TestServer) -> String {
    let (mut client, greeting) = RawClient::connect_tls(server.implicit_port());
    assert_eq!(greeting.code, 220);
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    assert_eq!(client.auth_plain(ALICE.0, ALICE.1).code, 235);
    assert_eq!(client.cmd("MAIL FROM:<alice@example.test>").code, 250);
    assert_eq!(client.cmd("RCPT TO:<a@example.test>").code, 250);
    assert_eq!(client.cmd("DATA").code, 354);
    let queued = client.cmd("Subject: x\r\n\r\nhello\r\n.");
    assert_eq!(queued.code, 250, "{queued:?}");
    let out = server.cli(&["queue", "list"]).output().expect("queue list");
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = list.lines().collect();
    // The newest message is on the line before the count.
    let line = lines
        .iter()
        .rev()
        .nth(1)
        .expect("queue list prints the message");
    line.split_whitespace().next().unwrap_or("").to_string()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_io_error_names_its_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = portcullis(
        dir.path(),
        &["check-config", "--config", "/nonexistent.toml"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{}",
        text(&out)
    );
}

#[test]
fn a_taken_port_is_said_once_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Taken by binding port 0: no window for a parallel test to take it
    // between a probe and the bind.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = _taken.local_addr().expect("bound").port();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\n[[listener]]\nname = \"sub\"\naddress = \"127.0.0.1:{port}\"\n"
        ),
    )
    .expect("write config");
    let out = portcullis(dir.path(), &["serve", "--config", "portcullis.toml"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port} (sub)")),
        "{}",
        text(&out)
    );
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{}",
        text(&out)
    );
    assert_eq!(
        entries(dir.path()),
        ["portcullis.toml"],
        "serve made files before failing"
    );
}

#[test]
fn check_config_opens_every_file_and_serve_creates_nothing_when_one_is_missing() {
    let cases = [
        (
            "certificate",
            "[tls]\ncertificate = \"missing.pem\"\nprivate_key = \"missing.key\"\n",
            "missing.pem",
        ),
        (
            "client CA",
            "[tls]\nclient_ca = \"missing-ca.pem\"\n",
            "missing-ca.pem",
        ),
        (
            "JWKS",
            "[oauth]\njwks_file = \"missing-jwks.json\"\nissuer = \"i\"\naudience = \"a\"\n",
            "missing-jwks.json",
        ),
        (
            "user file",
            "[users]\nbackend = \"file\"\npath = \"missing-users.toml\"\n",
            "missing-users.toml",
        ),
        ("policy", "policy = \"missing.lua\"\n", "missing.lua"),
    ];
    for (what, config_text, missing) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("portcullis.toml");
        let port = free_port();
        std::fs::write(
            &config,
            format!(
                "data_dir = \"data\"\n{config_text}[[listener]]\nname = \"sub\"\naddress = \"127.0.0.1:{port}\"\n"
            ),
        )
        .expect("write config");
        let out = portcullis(dir.path(), &["check-config", "--config", "portcullis.toml"]);
        assert!(
            !out.status.success(),
            "{what}: check-config passed\n{}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(missing),
            "{what}: the error names the file\n{}",
            text(&out)
        );
        let out = portcullis(dir.path(), &["serve", "--config", "portcullis.toml"]);
        assert!(
            !out.status.success(),
            "{what}: serve started\n{}",
            text(&out)
        );
        assert_eq!(
            entries(dir.path()),
            ["portcullis.toml"],
            "{what}: serve made files before failing\n{}",
            text(&out)
        );
    }
}

#[test]
fn check_config_speaks_the_config_files_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = portcullis(dir.path(), &["check-config"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("users in sqlite "), "{}", text(&out));
    assert!(
        stdout.contains("tls=starttls auth=required"),
        "{}",
        text(&out)
    );
    assert!(!stdout.contains("Sqlite {"), "{}", text(&out));
    assert!(!stdout.contains("StartTls"), "{}", text(&out));
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "check-config made files"
    );
}

#[test]
fn admin_commands_in_the_wrong_directory_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["queue", "list"][..],
        &["user", "list"],
        &["auth", "test", "demo", "--password-stdin"],
        &["ban", "list"],
    ] {
        let out = portcullis(dir.path(), args);
        assert!(!out.status.success(), "{args:?}\n{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no data directory at") && stderr.contains("portcullis-data"),
            "{args:?}\n{}",
            text(&out)
        );
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "{args:?} made files"
        );
    }
}

#[test]
fn a_password_prompt_without_a_terminal_says_what_to_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `setsid`: a new session with no controlling terminal, as under a
    // service manager or in CI.
    let mut child = Command::new("setsid")
        .arg(portcullis_bin())
        .args(["user", "add", "bob"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(!status.success());
    if stderr.contains("no terminal") {
        assert!(
            stderr.contains("--password-stdin") && stderr.contains("--generate"),
            "{stderr}"
        );
        assert!(!stderr.contains("os error"), "{stderr}");
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "a failed prompt made files"
        );
    } else {
        // The test itself runs on a terminal that the child can still
        // open (a developer's shell): nothing to check here.
        assert!(stderr.contains("Password") || stderr.is_empty(), "{stderr}");
    }
}

#[test]
fn queue_retry_with_delivery_off_says_so() {
    let server = TestServer::start("");
    let id = submit(&server);
    let out = server.cli(&["queue", "retry", &id]).output().expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("delivery is off"), "{}", text(&out));
    assert!(!stdout.contains("will be retried"), "{}", text(&out));
}

#[test]
fn queue_list_into_a_closed_pipe_exits_quietly() {
    let server = TestServer::start("");
    for _ in 0..3 {
        submit(&server);
    }
    let mut child = server
        .cli(&["queue", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader goes away at once, as `| head -0` would.
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(!stderr.contains("panicked"), "{status}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{status}: {stderr}");
    let _ = std::io::stdout().flush();
}

#[test]
fn every_argument_has_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["user", "add", "--help"][..],
        &["user", "del", "--help"],
        &["user", "allow", "--help"],
        &["queue", "show", "--help"],
        &["ban", "add", "--help"],
        &["auth", "test", "--help"],
    ] {
        let out = portcullis(dir.path(), args);
        let help = String::from_utf8_lossy(&out.stdout);
        for line in help.lines().skip_while(|l| !l.starts_with("Arguments:")) {
            let line = line.trim();
            if line.starts_with('<') || line.starts_with("--reason") {
                let described = line
                    .split_once("  ")
                    .is_some_and(|(_, d)| !d.trim().is_empty());
                assert!(described, "{args:?}: `{line}` has no description\n{help}");
            }
        }
    }
    let out = portcullis(dir.path(), &["auth", "test", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("XOAUTH2") && help.contains("[oauth]"),
        "{help}"
    );
    let out = portcullis(dir.path(), &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("configured user store"), "{help}");
}

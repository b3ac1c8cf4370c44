//! What the server writes to disk is readable by its own user only: the
//! journal holds every queued message and who sent it, the data directory
//! the keys, the ban list and the user database. Under the usual umask 022
//! the journal was `0644` in `0755` directories.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{sample_message, RawClient, TestServer, ALICE, FROM, TO};

/// Files the test harness itself writes into the data directory.
const HARNESS_FILES: [&str; 2] = ["portcullis.toml", "server.log"];

/// Every directory under `dir` that is not `0700` and every file that is
/// not `0600`.
fn not_private(dir: &Path, wrong: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("data directory is readable") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if HARNESS_FILES.contains(&name.as_ref()) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("entry has metadata");
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            wrong.push(format!("{} {mode:04o}", path.display()));
        }
        if meta.is_dir() {
            not_private(&path, wrong);
        }
    }
}

/// One message through AUTH, then a failed login that bans the address.
fn submit_then_get_banned(port: u16) {
    let (mut client, greeting) = RawClient::connect_tls(port);
    assert_eq!(greeting.code, 220);
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    assert_eq!(client.auth_plain(ALICE.0, ALICE.1).code, 235);
    assert_eq!(client.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    assert_eq!(client.cmd(&format!("RCPT TO:<{TO}>")).code, 250);
    assert_eq!(client.cmd("DATA").code, 354);
    let message = sample_message("private");
    let queued = client.cmd(&format!("{message}."));
    assert_eq!(queued.code, 250, "{queued:?}");
    let (mut guesser, _) = RawClient::connect_tls(port);
    assert_eq!(guesser.cmd("EHLO client.test").code, 250);
    assert_eq!(guesser.auth_plain(ALICE.0, "wrong").code, 421);
}

#[test]
#[allow(unsafe_code)] // libc, see the SAFETY note below
fn every_file_the_server_creates_is_0600_in_0700_directories_under_umask_022() {
    // SAFETY: umask only sets this process's file-creation mask, which the
    // server (a child of this process) inherits.
    unsafe { libc::umask(0o022) };
    let mut server = TestServer::builder()
        .config("[limits.auth]\nallow = []\nban_after = 1\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n")
        .start();
    // The harness made the data directory (0755 under this umask); the
    // operator closes it, and everything the server makes in it is closed.
    let private = std::fs::Permissions::from_mode(0o700);
    std::fs::set_permissions(server.data_dir(), private).expect("chmod 700");
    server.restart();
    submit_then_get_banned(server.implicit_port());
    let bans = server.data_dir().join("bans.json");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bans.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(bans.exists(), "the ban was written to {}", bans.display());
    assert_eq!(server.spool_len(), 1);
    let mut wrong = Vec::new();
    not_private(server.data_dir(), &mut wrong);
    assert!(wrong.is_empty(), "not private:\n{}", wrong.join("\n"));
    let top = std::fs::metadata(server.data_dir()).unwrap().permissions();
    assert_eq!(top.mode() & 0o777, 0o700);
}

/// A data directory `serve` creates (with its missing parents) is 0700.
#[test]
#[allow(unsafe_code)] // libc, see the SAFETY note below
fn a_data_directory_serve_creates_is_0700_and_so_is_all_in_it() {
    // SAFETY: as above; the umask the server inherits.
    unsafe { libc::umask(0o022) };
    let mut server = TestServer::start("");
    server.kill_hard();
    let fresh = tempfile::tempdir().expect("temp dir");
    let data_dir = fresh.path().join("new").join("data");
    let data_dir_arg = data_dir.display().to_string();
    let mut child = server
        .cli(&["serve", "--data-dir", &data_dir_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("portcullis serve starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", server.submission_port())).is_err() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().expect("serve output");
            panic!(
                "serve did not listen: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(data_dir.join("spool").join("journal").is_dir());
    let mut wrong = Vec::new();
    not_private(fresh.path(), &mut wrong);
    assert!(wrong.is_empty(), "not private:\n{}", wrong.join("\n"));
}

#[test]
fn serve_warns_when_the_data_directory_is_open_to_other_users() {
    let mut server = TestServer::start("");
    let private = std::fs::Permissions::from_mode(0o700);
    std::fs::set_permissions(server.data_dir(), private).expect("chmod 700");
    // The log file is appended to across restarts.
    let before = server.log().len();
    server.restart();
    let closed = server.log()[before..].to_string();
    assert!(!closed.contains("open to other users"), "{closed}");
    let closed_run = server.log().len();
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(server.data_dir(), open).expect("chmod 755");
    server.restart();
    let log = server.log()[closed_run..].to_string();
    assert!(
        log.contains("the data directory is open to other users") && log.contains("0755"),
        "{log}"
    );
}

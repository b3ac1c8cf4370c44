//! A real full disk under the spool (a small tmpfs, mounted by the test;
//! skipped where mounting is not allowed): every message gets `451`, no
//! failed write leaves an empty journal segment behind, and once space
//! returns the next message is stored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_integration_tests::{RawClient, TestServer, ALICE, FROM, TO};

/// A tmpfs of `size`, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem at `dir` up with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0x55u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

/// One message over implicit TLS; returns the reply code after the dot.
fn send(server: &TestServer) -> u16 {
    let (mut client, _) = RawClient::connect_tls(server.implicit_port());
    client.cmd("EHLO client.test");
    assert_eq!(client.auth_plain(ALICE.0, ALICE.1).code, 235);
    assert_eq!(client.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    assert_eq!(client.cmd(&format!("RCPT TO:<{TO}>")).code, 250);
    assert_eq!(client.cmd("DATA").code, 354);
    let body = format!("Subject: full\r\n\r\n{}\r\n.", "x".repeat(8 * 1024));
    client.cmd(&body).code
}

fn segment_files(journal: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(journal) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect()
}

#[test]
fn a_full_disk_answers_451_and_leaves_no_empty_segments() {
    let Some(disk) = Tmpfs::mount("4m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let spool = disk.path().join("spool");
    let mut server = TestServer::start(&format!(
        "[spool]\npath = {:?}\n",
        spool.display().to_string()
    ));
    let filler = fill(disk.path());
    for _ in 0..20 {
        assert_eq!(send(&server), 451, "a message was accepted on a full disk");
    }
    let journal = spool.join("journal");
    let segments = segment_files(&journal);
    let empty: Vec<_> = segments.iter().filter(|(_, len)| *len == 0).collect();
    assert!(empty.is_empty(), "empty segments left behind: {segments:?}");
    assert!(
        segments.len() <= 1,
        "a segment per failed write: {segments:?}"
    );

    std::fs::remove_file(filler).expect("free the space");
    assert_eq!(
        send(&server),
        250,
        "space is back, the message must be stored"
    );
    server.restart();
    let out = server.cli(&["queue", "list"]).output().expect("queue list");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("1 message(s)"), "{list}");
    assert!(
        !server.log().contains("without its header"),
        "{}",
        server.log()
    );
}

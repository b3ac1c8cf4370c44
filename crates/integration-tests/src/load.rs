//! Running `portcullis-load` against a test server and reading its report.
//!
//! The load binary is looked up beside `portcullis` (both are built by
//! `cargo build --workspace --bins`); `PORTCULLIS_LOAD_BIN` overrides it.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::server::{portcullis_bin, TestServer};

/// The `portcullis-load` binary.
pub fn load_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_LOAD_BIN") {
        return PathBuf::from(bin);
    }
    let bin = portcullis_bin().with_file_name("portcullis-load");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --workspace --bins` first or set PORTCULLIS_LOAD_BIN",
        bin.display()
    );
    bin
}

/// The report of a run with `--json`. Panics, with the server's log,
/// unless it parses, no session had an error and the tool exited 0.
pub fn load_report(server: &TestServer, out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); status {}\nstdout: {stdout}\nstderr: {}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            server.log()
        )
    });
    assert_eq!(
        report["errors_total"],
        0,
        "portcullis-load saw errors: {report:#}\nserver log:\n{}",
        server.log()
    );
    assert!(out.status.success(), "exit status {}", out.status);
    report
}

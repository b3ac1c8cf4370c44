//! The Lua policy under load, driven by `portcullis-load`: a SIGHUP reload
//! while logins run loses no session, and `kumo.memoize` makes many logins
//! cost one store look-up.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portcullis_integration_tests::{load_bin, load_report, TestServer};
use serde_json::Value;

/// `portcullis-load` running `sessions` AUTH-only STARTTLS PLAIN sessions.
fn load(server: &TestServer, user: &str, password: &str, sessions: u32) -> Command {
    let mut c = Command::new(load_bin());
    c.arg(format!("127.0.0.1:{}", server.submission_port()))
        .args([
            "--user",
            user,
            "--password",
            password,
            "--insecure",
            "--starttls",
        ])
        .args(["--auth", "PLAIN", "-n", "0", "-c", "4", "--timeout", "30"])
        .args(["--sessions", &sessions.to_string(), "--json", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The JSON report; panics (with the server log) unless every session ended
/// without an error and logged in.
fn report(server: &TestServer, out: Output, sessions: u32) -> Value {
    let report = load_report(server, &out);
    assert_eq!(report["auths"], sessions, "{report:#}");
    report
}

fn with_policy(script: &str) -> TestServer {
    with_policy_and(script, "")
}

fn with_policy_and(script: &str, extra: &str) -> TestServer {
    TestServer::builder()
        .config(&format!("policy = \"policy.lua\"\n{extra}"))
        .file("policy.lua", script)
        .start()
}

const STATIC: &str = "kumo.on('smtp_server_auth_plain', function(authz, authc, password)\n\
                      return authc == 'scott' and password == 'tiger'\n\
                      end)\n";

#[test]
fn sighup_reloads_under_a_login_load_lose_no_session() {
    let server = with_policy(STATIC);
    let script = server.data_dir().join("policy.lua");
    let sessions = 300;
    let mut running = load(&server, "scott", "tiger", sessions)
        .spawn()
        .expect("portcullis-load runs");
    let mut reloads = 0;
    while running.try_wait().expect("wait").is_none() {
        // The same rule, a different file: each reload is a new generation.
        std::fs::write(&script, format!("-- generation {reloads}\n{STATIC}")).unwrap();
        let hup = Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status();
        assert!(hup.unwrap().success());
        reloads += 1;
        std::thread::sleep(Duration::from_millis(30));
    }
    let out = running.wait_with_output().unwrap();
    report(&server, out, sessions);
    assert!(
        reloads >= 3,
        "the load ended before it overlapped reloads ({reloads})"
    );
    // Every signal reloaded (signals sent close together may coalesce).
    let log = server.log();
    let reloaded = log.matches("policy reloaded").count();
    eprintln!("{reloads} SIGHUPs, {reloaded} reloads, {sessions} sessions, 0 errors");
    assert!(reloaded >= 2, "{log}");
    assert!(!log.contains("policy reload failed"), "{log}");
}

/// The memoized look-up counts its calls in the database it reads.
const MEMOIZED: &str = r#"
local sqlite = require 'sqlite'
local lookup = kumo.memoize(function(user)
  local db = sqlite.open(DB)
  db:execute('update lookups set n = n + 1')
  return db:execute('select pass from auth where user = ?', user)[1]
end, { name = 'auth', ttl = '5 minutes', capacity = 100 })

kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  return password ~= '' and lookup(authc) == password
end)
"#;

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
                      rows = c.execute(sys.argv[2]).fetchall(); c.commit()\n\
                      print(rows[0][0] if rows else '')",
            &db.display().to_string(),
            sql,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn memoize_makes_many_logins_one_store_look_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    sqlite(&db, "create table auth(user text, pass text)");
    sqlite(&db, "insert into auth values ('daniel', 'tiger')");
    sqlite(&db, "create table lookups(n integer)");
    sqlite(&db, "insert into lookups values (0)");
    let script = MEMOIZED.replace("DB", &format!("{:?}", db.display().to_string()));
    // The database lies outside the config's directory: allow its own.
    let allowed = format!(
        "[lua]\nallowed_paths = [{:?}]\n",
        dir.path().display().to_string()
    );
    let server = with_policy_and(&script, &allowed);
    // One login first: memoize is not single-flight, so four concurrent
    // first misses could each look up.
    report(
        &server,
        load(&server, "daniel", "tiger", 1).output().unwrap(),
        1,
    );
    report(
        &server,
        load(&server, "daniel", "tiger", 100).output().unwrap(),
        100,
    );
    assert_eq!(
        sqlite(&db, "select n from lookups"),
        "1",
        "101 logins, one look-up"
    );
}

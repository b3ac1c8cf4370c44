//! What a hostile or broken policy script cannot do, seen with the real
//! binary: outlive its deadline (in a coroutine or a pattern match), keep
//! the server from stopping, turn a script error into a free user oracle,
//! reach another Vault secret than the one its path names, or read files
//! outside the directories the config allows.

use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{BaoServer, RawClient, TestServer};

fn with_policy(script: &str, extra: &str) -> TestServer {
    TestServer::builder()
        .config(&format!("policy = \"policy.lua\"\n{extra}"))
        .file("policy.lua", script)
        .start()
}

/// EHLO, STARTTLS, EHLO: ready for AUTH.
fn raw_session(server: &TestServer) -> RawClient {
    let (mut c, _) = RawClient::connect(server.submission_port());
    c.cmd("EHLO client.test");
    c.starttls();
    c.cmd("EHLO client.test");
    c
}

/// A runaway hook: the client gets `454` within the deadline (500 ms)
/// and a little, twice (the policy still answers), then SIGTERM stops the
/// process within a few seconds (no thread is left spinning).
fn runaway_is_stopped(script: &str) {
    let mut server = with_policy(script, "[lua]\nhook_timeout = \"500ms\"\n");
    for _ in 0..2 {
        let mut c = raw_session(&server);
        let started = Instant::now();
        let reply = c.auth_plain("anyone", "pw");
        assert_eq!(reply.code, 454, "{reply:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.wait_for_exit(Duration::from_secs(5));
}

#[test]
fn a_hook_looping_in_a_coroutine_answers_454_in_time_and_sigterm_still_stops_the_server() {
    runaway_is_stopped(
        "portcullis.on('smtp_server_auth', function(auth)\n\
           local co = coroutine.create(function() while true do end end)\n\
           coroutine.resume(co)\n\
           return true\n\
         end)",
    );
}

#[test]
fn a_pathological_pattern_answers_454_in_time_and_sigterm_still_stops_the_server() {
    runaway_is_stopped(
        "portcullis.on('smtp_server_auth', function(auth)\n\
           return string.find(string.rep('a', 40000), '.-.-.-.-.-.-.-.-.-b') ~= nil\n\
         end)",
    );
}

/// The documented Vault pattern, reduced: a known user's wrong password
/// is a `535`; an unknown user makes the script fail. Both must cost the
/// same delay and count the same, or the error is a free oracle telling
/// which users exist.
#[test]
fn a_script_error_waits_the_failure_delay_and_counts_against_the_address() {
    let server = with_policy(
        "portcullis.on('smtp_server_auth', function(auth)\n\
           if auth.user == 'known' then return auth.password == 'right' end\n\
           error('no such user')\n\
         end)",
        "[limits.auth]\nallow = []\ndelay_initial = \"400ms\"\ndelay_max = \"400ms\"\n\
         user_max_failures = 100\nban_after = 4\nban_duration = \"1h\"\n",
    );
    let attempt = |user: &str, password: &str| {
        let mut c = raw_session(&server);
        let started = Instant::now();
        let reply = c.auth_plain(user, password);
        (reply.code, started.elapsed())
    };
    let (code, took) = attempt("known", "wrong");
    assert_eq!(code, 535);
    assert!(took >= Duration::from_millis(350), "{took:?}");
    let (code, took) = attempt("stranger1", "guess1");
    assert_eq!(code, 454, "a script error still defers");
    assert!(
        took >= Duration::from_millis(350),
        "a script error answers as late as a wrong password: {took:?}"
    );
    let (code, _) = attempt("stranger2", "guess2");
    assert_eq!(code, 454);
    // The fourth failure from the address bans it, script errors included.
    let (code, _) = attempt("stranger3", "guess3");
    assert_eq!(code, 421, "the address is banned after four failures");
    let (_, greeting) = RawClient::connect(server.submission_port());
    assert_eq!(greeting.code, 421, "{greeting:?}");
}

/// `'smtp-auth/' .. authc` must name one secret: `bob#x` (a URL fragment),
/// `bob?v=9` (a query) and `x/../bob` (a dot segment) are not bob.
#[test]
fn a_vault_path_built_from_a_user_name_cannot_reach_another_users_secret() {
    let bao = BaoServer::start();
    assert!(bao.put("smtp-auth/bob", r#"{"data":{"key":"tiger"}}"#));
    let extra = format!(
        "[lua]\nvault_address = {:?}\nvault_token = \"test-root\"\n",
        bao.address()
    );
    let server = with_policy(
        "kumo.on('smtp_server_auth_plain', function(authz, authc, password)\n\
           return password == kumo.secrets.load {\n\
             vault_mount = 'secret',\n\
             vault_path = 'smtp-auth/' .. authc,\n\
           }\n\
         end)",
        &extra,
    );
    let mut c = raw_session(&server);
    assert_eq!(c.auth_plain("bob", "tiger").code, 235, "bob's own secret");
    for user in [
        "bob#x", "bob#0", "bob?v=9", "x/../bob", "./bob", "/bob", "bob/", "%62ob",
    ] {
        let mut c = raw_session(&server);
        let code = c.auth_plain(user, "tiger").code;
        assert_ne!(code, 235, "{user} reached bob's secret");
    }
}

/// By default a script reads files only under the config file's directory
/// and the data directory: a key elsewhere is refused (the attempt fails),
/// one beside the config is read.
#[test]
fn key_path_reads_only_under_the_configs_and_the_data_directory() {
    let mut server = with_policy("portcullis.on('smtp_server_auth', function() end)", "");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("key"), "letmein").unwrap();
    std::fs::write(server.data_dir().join("key"), "inside-pw").unwrap();
    let script = format!(
        "portcullis.on('smtp_server_auth', function(auth)\n\
           local dirs = {{ inside = {:?}, outside = {:?} }}\n\
           return auth.password == kumo.secrets.load{{ key_path = dirs[auth.user] .. '/key' }}\n\
         end)",
        server.data_dir().display().to_string(),
        outside.path().display().to_string(),
    );
    std::fs::write(server.data_dir().join("policy.lua"), script).unwrap();
    let before = server.log().matches("policy reloaded").count();
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches("policy reloaded").count() == before {
        assert!(Instant::now() < deadline, "no reload:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = raw_session(&server);
    assert_eq!(c.auth_plain("outside", "letmein").code, 454);
    assert_eq!(c.auth_plain("inside", "inside-pw").code, 235);
    assert!(server.is_running());
    assert!(server.log().contains("outside the directories"));
}

/// Vault that goes away and comes back: logins that need a secret get
/// `454` meanwhile, the log says so once each way, and
/// `portcullis_vault_up` follows.
#[test]
fn vault_that_goes_away_is_said_once_and_used_again_when_back() {
    let mut bao = BaoServer::start();
    assert!(bao.put("smtp-auth/bob", r#"{"data":{"key":"tiger"}}"#));
    let extra = format!(
        "[lua]\nvault_address = {:?}\nvault_token = \"test-root\"\n\
         [admin]\naddress = \"127.0.0.1:{{port:admin}}\"\n",
        bao.address()
    );
    let server = with_policy(
        "kumo.on('smtp_server_auth_plain', function(authz, authc, password)\n\
           return password == kumo.secrets.load {\n\
             vault_mount = 'secret',\n\
             vault_path = 'smtp-auth/' .. authc,\n\
           }\n\
         end)",
        &extra,
    );
    assert_eq!(raw_session(&server).auth_plain("bob", "tiger").code, 235);
    bao.kill();
    for _ in 0..3 {
        assert_eq!(raw_session(&server).auth_plain("bob", "tiger").code, 454);
    }
    let gauge = |value: &str| {
        let url = format!("http://127.0.0.1:{}/metrics", server.port("admin"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = Command::new("curl")
                .args(["-s", &url])
                .output()
                .expect("curl");
            let line = format!("portcullis_vault_up {value}");
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == line)
            {
                return;
            }
            assert!(Instant::now() < deadline, "no `{line}` on /metrics");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    gauge("0");
    bao.restart();
    assert!(bao.put("smtp-auth/bob", r#"{"data":{"key":"tiger"}}"#));
    assert_eq!(raw_session(&server).auth_plain("bob", "tiger").code, 235);
    gauge("1");
    let log = server.log();
    assert_eq!(log.matches("Vault unreachable").count(), 1, "{log}");
    assert_eq!(log.matches("Vault answers again").count(), 1, "{log}");
}

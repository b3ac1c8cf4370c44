//! The Lua policy through real clients: KumoMTA's seed scripts, run
//! unchanged from the fixtures (byte-for-byte copies of KumoMTA's docs), and
//! each answer of the general `smtp_server_auth` hook.

use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_integration_tests::{
    python, swaks, swaks_plain, BaoServer, RawClient, TestServer, FROM, TO,
};

const KUMO_REFERENCE: &str =
    include_str!("../../lua/tests/fixtures/kumo_smtp_server_auth_plain.md");
const KUMO_GUIDE: &str = include_str!("../../lua/tests/fixtures/kumo_checking_inbound_auth.md");

/// The ```lua blocks of a fixture, byte for byte.
fn lua_blocks(doc: &str) -> Vec<String> {
    doc.split("```lua\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or("").to_string())
        .collect()
}

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

#[test]
fn kumo_reference_static_table_runs_unchanged() {
    let server = with_policy(&lua_blocks(KUMO_REFERENCE)[0], "");
    swaks_plain(&server, "scott", "tiger")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    let message = server.single_message();
    assert_eq!(message.auth_field("authn_id").as_deref(), Some("scott"));
    assert_eq!(message.auth_field("authz_id").as_deref(), Some("scott"));
    swaks_plain(&server, "scott", "lion").assert_contains("535 5.7.8");
    // LOGIN goes through the same hook.
    let address = format!("127.0.0.1:{}", server.submission_port());
    swaks(&[
        "--server",
        &address,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "scott",
        "--auth-password",
        "tiger",
        "--from",
        FROM,
        "--to",
        TO,
        "--quit-after",
        "AUTH",
    ])
    .assert_contains("235 2.7.0");
}

#[test]
fn kumo_guide_sqlite_script_runs_unchanged() {
    // The guide's script opens '/path/to/auth.db' literally.
    let db = std::path::Path::new("/path/to/auth.db");
    std::fs::create_dir_all(db.parent().unwrap()).expect("running as root, /path/to can be made");
    let _ = std::fs::remove_file(db);
    let made = Command::new("python3")
        .args([
            "-c",
            "import sqlite3; c = sqlite3.connect('/path/to/auth.db'); \
            c.execute('create table auth(user text, pass text)'); \
            c.execute(\"insert into auth values ('daniel', 'tiger')\"); c.commit()",
        ])
        .status()
        .unwrap();
    assert!(made.success());
    // A database outside the config's and the data directory is allowed
    // by name.
    let server = with_policy(
        &lua_blocks(KUMO_GUIDE)[1],
        "[lua]\nallowed_paths = [\"/path/to\"]\n",
    );
    swaks_plain(&server, "daniel", "tiger")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    swaks_plain(&server, "daniel", "lion").assert_contains("535 5.7.8");
    let _ = std::fs::remove_file(db);
}

#[test]
fn kumo_guide_vault_script_runs_unchanged_against_openbao() {
    let bao = BaoServer::start();
    assert!(bao.put("smtp-auth/daniel", r#"{"data":{"key":"tiger"}}"#));
    let extra = format!(
        "[lua]\nvault_address = {:?}\nvault_token = \"test-root\"\n",
        bao.address()
    );
    let server = with_policy(&lua_blocks(KUMO_GUIDE)[2], &extra);
    swaks_plain(&server, "daniel", "tiger")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    swaks_plain(&server, "daniel", "lion").assert_contains("535 5.7.8");
    // No such secret: the script errors, which defers.
    swaks_plain(&server, "nobody", "x").assert_contains("454 4.7.0");
}

const GENERAL: &str = r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  if auth.user == 'carol' and auth.password == 'pw' then
    return portcullis.accept{ user = 'carol@example.test', data = { plan = 'gold', quota = 100 } }
  elseif auth.user == 'mallory' then
    return portcullis.reject{ message = 'Go away', code = 535, enhanced = '5.7.1', disconnect = true }
  elseif auth.user == 'later' then
    return portcullis.defer{ message = 'Maintenance', disconnect = false }
  elseif auth.user == 'boom' then
    error('kaput')
  elseif auth.user == 'slow' then
    while true do end
  end
end)
"#;

#[test]
fn general_hook_accept_with_data_reaches_the_spool() {
    let server = with_policy(GENERAL, "");
    swaks_plain(&server, "carol", "pw")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    let message = server.single_message();
    assert_eq!(
        message.auth_field("authn_id").as_deref(),
        Some("carol@example.test")
    );
    assert_eq!(
        message.meta["auth"]["user_data"],
        serde_json::json!({"plan": "gold", "quota": 100})
    );
}

#[test]
fn general_hook_reject_defer_error_nothing_and_timeout() {
    let server = with_policy(GENERAL, "[lua]\nhook_timeout = \"300ms\"\n");
    let mut c = raw_session(&server);
    let reply = c.auth_plain("mallory", "x");
    assert_eq!(
        (reply.code, reply.lines[0].as_str()),
        (535, "5.7.1 Go away")
    );
    assert!(c.is_closed(), "disconnect = true closes the connection");

    let mut c = raw_session(&server);
    let reply = c.auth_plain("later", "x");
    assert_eq!(
        (reply.code, reply.lines[0].as_str()),
        (454, "4.7.0 Maintenance")
    );
    assert_eq!(c.auth_plain("boom", "x").code, 454, "script error defers");
    assert_eq!(c.auth_plain("nobody", "x").code, 535, "no answer rejects");
    let started = Instant::now();
    assert_eq!(c.auth_plain("slow", "x").code, 454, "timeout defers");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(server.log().contains("kaput"), "the script error is logged");
}

#[test]
fn check_config_loads_the_script_and_refuses_a_broken_one() {
    let server = with_policy(GENERAL, "");
    let out = server.cli(&["check-config"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("smtp_server_auth"));
    std::fs::write(
        server.data_dir().join("policy.lua"),
        "kumo.on('no_such_event', function() end)",
    )
    .unwrap();
    let out = server.cli(&["check-config"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown event 'no_such_event'"));
}

#[test]
fn sighup_reloads_and_a_broken_script_keeps_the_old_one() {
    let mut server = with_policy(
        "portcullis.on('smtp_server_auth', function() return false end)",
        "",
    );
    let pid = server.pid();
    let mut c = raw_session(&server);
    assert_eq!(c.auth_plain("anyone", "x").code, 535);
    let script = server.data_dir().join("policy.lua");
    std::fs::write(
        &script,
        "portcullis.on('smtp_server_auth', function() return true end)",
    )
    .unwrap();
    hangup(pid);
    wait_for_log(&server, "policy reloaded");
    // The open session goes on, now under the new script.
    assert_eq!(c.auth_plain("anyone", "x").code, 235);
    std::fs::write(&script, "this is not lua").unwrap();
    hangup(pid);
    wait_for_log(&server, "policy reload failed");
    assert_eq!(raw_session(&server).auth_plain("anyone", "x").code, 235);
    assert!(server.is_running());
}

fn hangup(pid: u32) {
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

fn wait_for_log(server: &TestServer, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn python_smtplib_logs_in_through_the_policy() {
    let server = with_policy(GENERAL, "");
    let out = python(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1])); s.starttls(context=ctx)
print('LOGIN', s.login('carol', 'pw')[0])
s.quit()
"#,
        &[server.submission_port()],
    );
    out.assert_contains("LOGIN 235");
}

/// A script sees no secret for CRAM-MD5, SCRAM or bearer tokens, so it must
/// never be the one to accept them: a hook that says yes to everyone must not
/// let a wrong CRAM-MD5 digest in.
#[test]
fn a_permissive_hook_cannot_accept_a_proof_it_cannot_see() {
    let server = with_policy(
        "portcullis.on('smtp_server_auth', function(auth, conn) return true end)\n",
        "",
    );
    let address = format!("127.0.0.1:{}", server.submission_port());
    let attempt = |password: &str| {
        swaks(&[
            "--server",
            &address,
            "--tls",
            "--auth",
            "CRAM-MD5",
            "--auth-user",
            "alice",
            "--auth-password",
            password,
            "--from",
            FROM,
            "--to",
            TO,
            "--body",
            "policy test",
        ])
    };
    attempt("not the password").assert_contains("535 5.7.8");
    assert!(server.spool_messages().is_empty());
    // PLAIN carries the password, so there the script does decide.
    swaks_plain(&server, "anyone", "anything").assert_contains("235 2.7.0");
}

/// After our own verification accepted a CRAM-MD5 proof, `smtp_server_auth`
/// is asked with `auth.verified = true`: it may refuse the user, or accept
/// with data that reaches the spool. A wrong proof never reaches it.
const REVIEW: &str = r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  if not auth.verified then return nil end
  assert(auth.password == nil, 'no password after verification')
  if auth.user == 'bob' then
    return portcullis.reject{ message = 'bob is suspended', enhanced = '5.7.1' }
  end
  return portcullis.accept{ data = { reviewed = auth.mechanism } }
end)
"#;

fn swaks_cram(
    server: &TestServer,
    user: &str,
    password: &str,
) -> portcullis_integration_tests::ToolOutput {
    let address = format!("127.0.0.1:{}", server.submission_port());
    swaks(&[
        "--server",
        &address,
        "--tls",
        "--auth",
        "CRAM-MD5",
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        FROM,
        "--to",
        TO,
        "--body",
        "policy test",
    ])
}

#[test]
fn general_hook_reviews_verified_cram_md5_logins() {
    let server = with_policy(REVIEW, "");
    swaks_cram(&server, "bob", "battery staple").assert_contains("535 5.7.1 bob is suspended");
    swaks_cram(&server, "alice", "wrong").assert_contains("535 5.7.8");
    assert!(server.spool_messages().is_empty());
    swaks_cram(&server, "alice", "correct horse")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    let message = server.single_message();
    assert_eq!(message.auth_field("authn_id").as_deref(), Some("alice"));
    assert_eq!(message.meta["auth"]["mechanism"], "CRAM-MD5");
    assert_eq!(
        message.meta["auth"]["user_data"],
        serde_json::json!({"reviewed": "CRAM-MD5"})
    );
}

/// A one-time-code mechanism written in Lua: the user name in one round,
/// the code in the next, kept between rounds in `conn.meta`.
const OTP: &str = r#"
local codes = { dora = '424242' }
portcullis.mechanism('X-OTP', function(auth, conn)
  if auth.step == 1 then
    return portcullis.reply('Username:')
  elseif auth.step == 2 then
    conn.meta:set_meta('otp_user', auth.response)
    return portcullis.reply('Code:')
  end
  local user = conn.meta:get_meta('otp_user')
  if codes[user] ~= nil and codes[user] == auth.response then
    return portcullis.accept{ user = user, data = { second_factor = 'otp' } }
  end
  return portcullis.reject{ message = 'Wrong code' }
end)
"#;

#[test]
fn script_mechanism_one_time_code_over_two_rounds_with_smtplib() {
    let server = with_policy(OTP, "");
    let out = python(
        r#"
        import base64
        s = connect(starttls=False)
        show("ehlo.plain", (250, " ".join(s.esmtp_features.keys())))
        s.starttls(context=ctx()); s.ehlo()
        show("ehlo.tls", (250, s.esmtp_features.get("auth", "")))
        def rounds(label, code):
            c, m = s.docmd("AUTH", "X-OTP")
            show(label + ".1", (c, base64.b64decode(m).decode()))
            c, m = s.docmd(b64("dora"))
            show(label + ".2", (c, base64.b64decode(m).decode()))
            show(label + ".3", s.docmd(b64(code)))
        rounds("wrong", "000000")
        rounds("right", "424242")
        submit("msg", s)
        s.quit()
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("wrong.1", "334 Username:")
        .assert_reply("wrong.2", "334 Code:")
        .assert_reply("wrong.3", "535 5.7.8 Wrong code")
        .assert_reply("right.1", "334 Username:")
        .assert_reply("right.2", "334 Code:")
        .assert_reply("right.3", "235 2.7.0")
        .assert_reply("msg.data", "250");
    assert!(
        !out.reply("ehlo.plain").contains("auth"),
        "{}",
        out.transcript()
    );
    assert!(
        out.reply("ehlo.tls").ends_with(" X-OTP"),
        "{}",
        out.transcript()
    );
    let message = server.single_message();
    assert_eq!(message.auth_field("authn_id").as_deref(), Some("dora"));
    assert_eq!(message.auth_field("authz_id").as_deref(), Some("dora"));
    assert_eq!(message.meta["auth"]["mechanism"], "X-OTP");
    assert_eq!(
        message.meta["auth"]["user_data"],
        serde_json::json!({"second_factor": "otp"})
    );
    let check = server.cli(&["check-config"]).output().unwrap();
    assert!(String::from_utf8_lossy(&check.stdout).contains("mechanisms X-OTP"));
}

/// Per-user sender rules in Lua: the AUTH hook attaches the addresses a user
/// may send as; the message hook refuses any other before it is spooled.
const SENDERS: &str = r#"
local senders = { carol = { ['carol@example.test'] = true } }
portcullis.on('smtp_server_auth', function(auth, conn)
  if auth.password == 'pw' then
    return portcullis.accept{ data = { senders = senders[auth.user] or {} } }
  end
end)
portcullis.on('smtp_server_message_received', function(msg, conn)
  if msg.authn_id == 'carol' and msg.user_data.senders[msg.mail_from] then
    return nil
  end
  return portcullis.reject{ message = 'You may not send as ' .. msg.mail_from }
end)
"#;

#[test]
fn message_received_hook_refuses_a_sender_before_the_spool() {
    let server = with_policy(SENDERS, "");
    let address = format!("127.0.0.1:{}", server.submission_port());
    let send_as = |from: &str| {
        swaks(&[
            "--server",
            &address,
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "carol",
            "--auth-password",
            "pw",
            "--from",
            from,
            "--to",
            TO,
            "--body",
            "policy test",
        ])
    };
    send_as("boss@example.test")
        .assert_contains("550 5.7.1 You may not send as boss@example.test")
        .assert_lacks("queued as");
    assert!(server.spool_messages().is_empty());
    send_as("carol@example.test")
        .assert_contains("250 2.0.0")
        .assert_success(true);
    assert_eq!(
        server.single_message().meta["mail_from"],
        "carol@example.test"
    );
}

/// A wrong answer to a script mechanism is a failed AUTH like any other:
/// counted by the brute-force defence and answered after its delay.
#[test]
fn script_mechanism_failures_are_delayed_like_any_failed_auth() {
    let server = with_policy(
        OTP,
        "[limits.auth]\ndelay_initial = \"400ms\"\ndelay_max = \"400ms\"\n",
    );
    let out = python(
        r#"
        import time
        s = connect()
        def attempt(label, code):
            s.docmd("AUTH", "X-OTP"); s.docmd(b64("dora"))
            started = time.monotonic()
            reply = s.docmd(b64(code))
            show(label, (reply[0], "%.2f" % (time.monotonic() - started)))
        attempt("wrong", "000000")
        attempt("right", "424242")
        "#,
        &[server.submission_port()],
    );
    let seconds = |label: &str| -> f64 { out.reply(label)[4..].parse().unwrap() };
    assert!(
        out.reply("wrong").starts_with("535") && seconds("wrong") >= 0.35,
        "{}",
        out.transcript()
    );
    assert!(
        out.reply("right").starts_with("235"),
        "{}",
        out.transcript()
    );
}

fn plain_with_authzid(client: &mut RawClient, authzid: &str, user: &str, password: &str) -> u16 {
    use base64::Engine;
    let message = format!("{authzid}\0{user}\0{password}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(message);
    client.cmd(&format!("AUTH PLAIN {encoded}")).code
}

/// A hook that says yes to a password has not said the client may act as
/// someone else: the authzid is granted only when it is the user, or when
/// the script grants it by name.
#[test]
fn a_hook_that_accepts_a_password_does_not_grant_another_authzid() {
    let server = with_policy(&lua_blocks(KUMO_REFERENCE)[0], "");
    assert_eq!(
        plain_with_authzid(&mut raw_session(&server), "bob", "scott", "tiger"),
        535
    );
    assert_eq!(
        plain_with_authzid(&mut raw_session(&server), "scott", "scott", "tiger"),
        235
    );

    let general = r#"
        portcullis.on('smtp_server_auth', function(auth, conn)
          if auth.user == 'granted' then
            return portcullis.accept{ authz = 'boss' }
          end
          return true
        end)
    "#;
    let server = with_policy(general, "");
    assert_eq!(
        plain_with_authzid(&mut raw_session(&server), "boss", "plain", "pw"),
        535
    );
    let mut client = raw_session(&server);
    assert_eq!(
        plain_with_authzid(&mut client, "boss", "granted", "pw"),
        235
    );
    assert_eq!(client.cmd(&format!("MAIL FROM:<{FROM}>")).code, 250);
    assert_eq!(client.cmd(&format!("RCPT TO:<{TO}>")).code, 250);
    assert_eq!(client.cmd("DATA").code, 354);
    assert_eq!(client.cmd("Subject: x\r\n\r\nbody\r\n.").code, 250);
    assert_eq!(
        server.single_message().auth_field("authz_id").as_deref(),
        Some("boss")
    );
}

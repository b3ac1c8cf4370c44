use std::sync::Arc;
use std::time::Duration;

use portcullis_sasl::Secret;

use crate::*;

pub(crate) fn policy(script: &str) -> (tempfile::TempDir, Result<Policy, PolicyError>) {
    policy_reaching(script, &[])
}

/// A policy that may also reach files under `allowed`.
pub(crate) fn policy_reaching(
    script: &str,
    allowed: &[&std::path::Path],
) -> (tempfile::TempDir, Result<Policy, PolicyError>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policy.lua");
    std::fs::write(&path, script).expect("write script");
    let mut options = PolicyOptions::new(path);
    options.hook_timeout = Duration::from_millis(300);
    options
        .allowed_paths
        .extend(allowed.iter().map(|p| p.to_path_buf()));
    (dir, Policy::load(options))
}

pub(crate) fn request(
    mechanism: &str,
    user: &str,
    password: &str,
    authzid: Option<&str>,
) -> AuthRequest {
    AuthRequest {
        mechanism: mechanism.into(),
        user: user.into(),
        password: Some(Secret::from(password)),
        authzid: authzid.map(str::to_string),
        verified: false,
    }
}

pub(crate) fn conn() -> ConnFacts {
    ConnFacts {
        client: "192.0.2.7:40000".parse().unwrap(),
        server: Some("127.0.0.1:587".parse().unwrap()),
        helo: Some("client.example".into()),
        listener: "submission".into(),
        tls: Some(TlsFacts {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            key_size: 256,
            client_certificate: None,
        }),
        proxy: None,
        protocol: "ESMTPS".into(),
    }
}

pub(crate) fn decide(p: &Policy, r: &AuthRequest) -> Verdict {
    p.authenticate(r, &conn(), &ConnMeta::new())
}

/// The first ```lua block of a fixture, byte for byte.
pub(crate) fn lua_blocks(doc: &str) -> Vec<String> {
    doc.split("```lua\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn kumo_seed_static_table_runs_unchanged() {
    let doc = include_str!("../tests/fixtures/kumo_smtp_server_auth_plain.md");
    let (_d, p) = policy(&lua_blocks(doc)[0]);
    let p = p.expect("seed loads");
    assert!(p.decides("PLAIN") && p.decides("LOGIN") && !p.decides("CRAM-MD5"));
    let accepted = decide(&p, &request("PLAIN", "scott", "tiger", None));
    assert_eq!(
        accepted,
        Verdict::Accept {
            authn_id: "scott".into(),
            authz_id: "scott".into(),
            user_data: None
        }
    );
    assert!(matches!(
        decide(&p, &request("LOGIN", "scott", "lion", None)),
        Verdict::Reject { .. }
    ));
    assert!(matches!(
        decide(&p, &request("PLAIN", "scott", "", None)),
        Verdict::Reject { .. }
    ));
}

#[test]
fn kumo_authz_defaults_to_authc_and_another_is_never_granted_by_a_boolean() {
    let (_d, p) = policy(
        "kumo.on('smtp_server_auth_plain', function(authz, authc, password, meta)\n\
           return authc == 'alice' and meta:get_meta('ehlo_domain') == 'client.example'\n\
         end)",
    );
    let p = p.unwrap();
    let v = decide(&p, &request("PLAIN", "alice", "x", None));
    assert!(
        matches!(v, Verdict::Accept { ref authz_id, .. } if authz_id == "alice"),
        "{v:?}"
    );
    // `true` says the password is good, not that alice may act as sales:
    // granting an authzid takes the general hook's `accept{authz=…}`.
    let v = decide(&p, &request("PLAIN", "alice", "x", Some("sales")));
    assert!(matches!(v, Verdict::Reject { .. }), "{v:?}");
}

#[test]
fn kumo_auth_info_accepts_the_login_name_and_records_identities_and_groups() {
    let (_d, p) = policy(
        "kumo.on('smtp_server_auth_plain', function(authz, authc, password)\n\
           if password ~= 'pw' then return false end\n\
           local who = authc\n\
           if authc == 'eve' then who = 'alice' end\n\
           return { identities = { { identity = who, context = 'SmtpAuthPlainAuthentication' } },\n\
                    groups = { 'staff', 'eu' } }\n\
         end)",
    );
    let p = p.unwrap();
    let v = decide(&p, &request("PLAIN", "alice", "pw", None));
    let Verdict::Accept {
        authn_id,
        authz_id,
        user_data,
    } = v
    else {
        panic!("expected accept, got {v:?}");
    };
    assert_eq!((authn_id.as_str(), authz_id.as_str()), ("alice", "alice"));
    assert_eq!(
        user_data,
        Some(serde_json::json!({"auth_info": {
            "identities": [{"identity": "alice", "context": "SmtpAuthPlainAuthentication"}],
            "groups": ["staff", "eu"],
        }}))
    );
    // A wrong password still fails; an AuthInfo naming another user than
    // the one who logged in is a refusal, not a way to become them.
    let v = decide(&p, &request("PLAIN", "alice", "nope", None));
    assert!(matches!(v, Verdict::Reject { .. }), "{v:?}");
    let v = decide(&p, &request("PLAIN", "eve", "pw", None));
    assert!(matches!(v, Verdict::Reject { .. }), "{v:?}");
    // Nor does it grant an authzid the boolean could not.
    let v = decide(&p, &request("PLAIN", "alice", "pw", Some("sales")));
    assert!(matches!(v, Verdict::Reject { .. }), "{v:?}");
}

#[test]
fn kumo_auth_info_without_an_identity_is_a_script_error() {
    let (_d, p) =
        policy("kumo.on('smtp_server_auth_plain', function() return { groups = { 'g' } } end)");
    let v = decide(&p.unwrap(), &request("PLAIN", "alice", "pw", None));
    assert!(matches!(v, Verdict::ScriptError { .. }), "{v:?}");
}

#[test]
fn kumo_conn_meta_knows_the_reception_protocol() {
    let (_d, p) = policy(
        "kumo.on('smtp_server_auth_plain', function(authz, authc, password, meta)\n\
           return meta:get_meta('reception_protocol') == 'ESMTPS'\n\
         end)",
    );
    let v = decide(&p.unwrap(), &request("PLAIN", "alice", "x", None));
    assert!(matches!(v, Verdict::Accept { .. }), "{v:?}");
}

#[test]
fn sqlite_execute_returns_single_column_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "create table auth(user text, pass text); insert into auth values('daniel','tiger');",
    )
    .unwrap();
    let script = format!(
        "local sqlite = require 'sqlite'\n\
         kumo.on('smtp_server_auth_plain', function(authz, authc, password)\n\
           local db = sqlite.open '{}'\n\
           local r = db:execute('select user from auth where user=? and pass=?', authc, password)\n\
           return r[1] == authc\n\
         end)",
        db.display()
    );
    let (_d, p) = policy_reaching(&script, &[dir.path()]);
    let p = p.unwrap();
    assert!(matches!(
        decide(&p, &request("PLAIN", "daniel", "tiger", None)),
        Verdict::Accept { .. }
    ));
    assert!(matches!(
        decide(&p, &request("PLAIN", "daniel", "x", None)),
        Verdict::Reject { .. }
    ));
}

#[test]
fn general_hook_answers() {
    let (_d, p) = policy(
        r#"portcullis.on('smtp_server_auth', function(auth, conn)
          if auth.user == 'ok' then
            return portcullis.accept{ user = 'ok@example', data = { quota = 10, tags = {'a'} } }
          elseif auth.user == 'no' then
            return portcullis.reject{ message = 'go\r\naway', code = 550, enhanced = '5.7.1', disconnect = true }
          elseif auth.user == 'later' then
            return portcullis.defer{ disconnect = true }
          elseif auth.user == 'conn' then
            return conn.client_ip == '192.0.2.7' and conn.tls.version == 'TLSv1.3' and conn.helo == 'client.example'
          elseif auth.user == 'boom' then
            error('kaput')
          elseif auth.user == 'loop' then
            while true do end
          elseif auth.user == 'bad' then
            return portcullis.reject{ code = 250 }
          end
        end)"#,
    );
    let p = p.unwrap();
    assert!(p.decides("CRAM-MD5"));
    let v = decide(&p, &request("PLAIN", "ok", "pw", None));
    let Verdict::Accept {
        authn_id,
        user_data,
        ..
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(authn_id, "ok@example");
    assert_eq!(
        user_data,
        Some(serde_json::json!({"quota": 10, "tags": ["a"]}))
    );
    let v = decide(&p, &request("PLAIN", "no", "pw", None));
    let Verdict::Reject {
        reply,
        disconnect: true,
        ..
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(reply.to_string(), "550 5.7.1 go  away");
    let v = decide(&p, &request("PLAIN", "later", "pw", None));
    let Verdict::Defer {
        reply,
        disconnect: true,
        ..
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(reply.code(), 454);
    assert!(matches!(
        decide(&p, &request("PLAIN", "conn", "pw", None)),
        Verdict::Accept { .. }
    ));
    assert!(matches!(
        decide(&p, &request("PLAIN", "nobody", "pw", None)),
        Verdict::Reject { .. }
    ));
    assert!(matches!(
        decide(&p, &request("PLAIN", "boom", "pw", None)),
        Verdict::ScriptError { .. }
    ));
    assert!(matches!(
        decide(&p, &request("PLAIN", "bad", "pw", None)),
        Verdict::ScriptError { .. }
    ));
    let started = std::time::Instant::now();
    assert!(matches!(
        decide(&p, &request("PLAIN", "loop", "pw", None)),
        Verdict::Defer { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    // The state survives the timeout and answers the next call.
    assert!(matches!(
        decide(&p, &request("PLAIN", "ok", "pw", None)),
        Verdict::Accept { .. }
    ));
}

#[test]
fn sandbox_has_no_files_or_processes() {
    for probe in [
        "io.open('/etc/passwd')",
        "os.execute('true')",
        "dofile('/etc/passwd')",
        "require('os')",
        "load('return 1')",
    ] {
        let (_d, p) = policy(probe);
        assert!(
            matches!(p, Err(PolicyError::Script { .. })),
            "{probe} should fail"
        );
    }
    let (_d, p) = policy("assert(os.time() > 0 and string.format('%d', 1) == '1')");
    p.expect("clock and string remain");
}

#[test]
fn memory_limit_stops_a_greedy_script() {
    let (_d, p) = policy("local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end");
    assert!(matches!(p, Err(PolicyError::Script { .. })));
}

#[test]
fn misuse_is_reported_at_load() {
    let (_d, p) = policy("kumo.on('smtp_server_auth_plian', function() end)");
    let message = p.err().expect("unknown event").to_string();
    assert!(
        message.contains("unknown event 'smtp_server_auth_plian'"),
        "{message}"
    );
    let (_d, p) = policy("kumo.on('init', function() end) kumo.on('init', function() end)");
    assert!(p.is_err());
    // KumoMTA's other events and set-up calls load.
    let (_d, p) = policy(
        "kumo.on('init', function() kumo.start_esmtp_listener{ listen = '0:25' } end)\n\
         kumo.on('get_queue_config', function() end)\n\
         kumo.on('get_listener_domain', function() end)",
    );
    assert_eq!(
        p.unwrap().registered(),
        vec!["init", "get_listener_domain", "get_queue_config"]
    );
}

#[test]
fn memoize_caches_across_calls_and_states() {
    let (_d, p) = policy(
        "calls = 0\n\
         local lookup = kumo.memoize(function(user) calls = calls + 1 return { user = user, n = calls } end,\n\
           { name = 'users', ttl = '5 minutes', capacity = 10 })\n\
         portcullis.on('smtp_server_auth', function(auth)\n\
           return portcullis.accept{ data = lookup(auth.user) }\n\
         end)",
    );
    let p = p.unwrap();
    for _ in 0..5 {
        let v = decide(&p, &request("PLAIN", "u", "p", None));
        let Verdict::Accept { user_data, .. } = v else {
            panic!()
        };
        assert_eq!(user_data, Some(serde_json::json!({"user": "u", "n": 1})));
    }
}

#[test]
fn durations_as_kumomta_writes_them() {
    use crate::memoize::parse_duration;
    assert_eq!(parse_duration("5 minutes"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("1 hour"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn secrets_from_data_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "from-file").unwrap();
    let script = format!(
        "assert(kumo.secrets.load{{ key_data = 'inline' }} == 'inline')\n\
         assert(kumo.secrets.load{{ key_path = '{}' }} == 'from-file')",
        key.display()
    );
    let (_d, p) = policy_reaching(&script, &[dir.path()]);
    p.expect("secrets load");
}

#[test]
fn reload_keeps_the_old_script_when_the_new_one_fails() {
    let (dir, p) = policy("portcullis.on('smtp_server_auth', function() return true end)");
    let p = p.unwrap();
    std::fs::write(dir.path().join("policy.lua"), "this is not lua").unwrap();
    assert!(p.reload().is_err());
    assert!(matches!(
        decide(&p, &request("PLAIN", "a", "b", None)),
        Verdict::Accept { .. }
    ));
    std::fs::write(
        dir.path().join("policy.lua"),
        "portcullis.on('smtp_server_auth', function() return false end)",
    )
    .unwrap();
    p.reload().unwrap();
    assert!(matches!(
        decide(&p, &request("PLAIN", "a", "b", None)),
        Verdict::Reject { .. }
    ));
}

/// `cargo test -p portcullis-lua --release -- --ignored --nocapture cost`:
/// the cost of one hook call (pool take, tables, call, verdict).
#[test]
#[ignore]
fn cost_of_one_hook_call() {
    let doc = include_str!("../tests/fixtures/kumo_smtp_server_auth_plain.md");
    let (_d, p) = policy(&lua_blocks(doc)[0]);
    let p = p.unwrap();
    let r = request("PLAIN", "scott", "tiger", None);
    let n = 20_000;
    let started = std::time::Instant::now();
    for _ in 0..n {
        assert!(matches!(decide(&p, &r), Verdict::Accept { .. }));
    }
    println!("kumo static table: {:?} per AUTH", started.elapsed() / n);
}

#[test]
fn verified_logins_reach_only_the_general_hook_without_a_password() {
    let (_d, p) = policy(
        r#"portcullis.on('smtp_server_auth', function(auth, conn)
          if auth.verified and auth.password == nil and auth.user == 'alice' then
            return portcullis.accept{ data = { via = auth.mechanism, cert = conn.tls.peer_sha256 } }
          end
        end)"#,
    );
    let p = p.unwrap();
    assert!(p.reviews_verified());
    let request = AuthRequest {
        mechanism: "EXTERNAL".into(),
        user: "alice".into(),
        password: None,
        authzid: Some("alice".into()),
        verified: true,
    };
    let mut facts = conn();
    facts.tls.as_mut().unwrap().client_certificate = Some(CertFacts {
        subject: "CN=alice".into(),
        issuer: "CN=CA".into(),
        sha256: "AB:CD".into(),
        ..Default::default()
    });
    let v = p.authenticate(&request, &facts, &ConnMeta::new());
    let Verdict::Accept {
        authn_id,
        user_data,
        ..
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(authn_id, "alice");
    assert_eq!(
        user_data,
        Some(serde_json::json!({"via": "EXTERNAL", "cert": "AB:CD"}))
    );
    let (_d, kumo) = policy("kumo.on('smtp_server_auth_plain', function() return true end)");
    assert!(
        !kumo.unwrap().reviews_verified(),
        "KumoMTA's hook sees PLAIN/LOGIN only"
    );
}

const OTP: &str = r#"
portcullis.mechanism('x-otp', function(auth, conn)
  if auth.step == 1 then
    return portcullis.reply('user?')
  elseif auth.step == 2 then
    conn.meta:set_meta('otp_user', auth.response)
    return portcullis.reply('code?')
  elseif auth.response == '123456' then
    return portcullis.accept{ user = conn.meta:get_meta('otp_user'), data = { otp = true } }
  end
  return portcullis.reject{ message = 'Wrong code' }
end)
"#;

fn step(n: u32, response: Option<&str>) -> MechanismStep {
    MechanismStep {
        mechanism: "X-OTP".into(),
        step: n,
        response: response.map(Secret::from),
    }
}

#[test]
fn script_mechanism_runs_rounds_and_decides() {
    let (_d, p) = policy(OTP);
    let p = p.unwrap();
    assert_eq!(p.mechanisms(), vec!["X-OTP".to_string()]);
    let meta = ConnMeta::new();
    let run = |n, r| p.mechanism_step(&step(n, r), &conn(), &meta);
    assert_eq!(run(1, None), Verdict::Challenge(b"user?".to_vec()));
    assert_eq!(run(2, Some("dora")), Verdict::Challenge(b"code?".to_vec()));
    let v = run(3, Some("123456"));
    let Verdict::Accept {
        authn_id,
        authz_id,
        user_data,
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!((authn_id.as_str(), authz_id.as_str()), ("dora", "dora"));
    assert_eq!(user_data, Some(serde_json::json!({"otp": true})));
    assert!(matches!(run(3, Some("000000")), Verdict::Reject { .. }));
    let unknown = MechanismStep {
        mechanism: "X-NONE".into(),
        ..step(1, None)
    };
    assert!(matches!(
        p.mechanism_step(&unknown, &conn(), &meta),
        Verdict::ScriptError { .. }
    ));
}

#[test]
fn script_mechanism_mistakes() {
    let (_d, p) = policy("portcullis.mechanism('PLAIN', function() end)");
    assert!(p.err().unwrap().to_string().contains("built in"));
    let (_d, p) = policy("portcullis.mechanism('bad name!', function() end)");
    assert!(p
        .err()
        .unwrap()
        .to_string()
        .contains("not a SASL mechanism name"));
    let (_d, p) = policy("portcullis.on('mechanism', function() end)");
    assert!(p.err().unwrap().to_string().contains("unknown event"));
    // accept without a user, and reply from smtp_server_auth: script mistakes.
    let (_d, p) = policy(
        "portcullis.mechanism('X-T', function() return true end)\n\
         portcullis.on('smtp_server_auth', function() return portcullis.reply('hi') end)",
    );
    let p = p.unwrap();
    let s = MechanismStep {
        mechanism: "X-T".into(),
        ..step(1, None)
    };
    assert!(matches!(
        p.mechanism_step(&s, &conn(), &ConnMeta::new()),
        Verdict::ScriptError { .. }
    ));
    assert!(matches!(
        decide(&p, &request("PLAIN", "a", "b", None)),
        Verdict::ScriptError { .. }
    ));
}

#[test]
fn message_received_sees_identities_and_may_refuse() {
    let (_d, p) = policy(
        r#"portcullis.on('smtp_server_message_received', function(msg, conn)
          if msg.user_data and msg.user_data.senders[msg.mail_from] then return nil end
          if msg.authn_id == 'slow' then while true do end end
          return portcullis.reject{ message = 'Not your address: ' .. msg.mail_from .. ' ' .. #msg.rcpt_to }
        end)"#,
    );
    let p = p.unwrap();
    assert!(p.checks_messages());
    let msg = |from: &str, user: &str| MessageFacts {
        mail_from: from.into(),
        rcpt_to: vec!["r@example.test".into()],
        size: 10,
        helo: "c".into(),
        authn_id: Some(user.into()),
        authz_id: Some(user.into()),
        mechanism: Some("PLAIN".into()),
        user_data: Some(serde_json::json!({"senders": {"a@example.test": true}})),
    };
    let meta = ConnMeta::new();
    assert_eq!(
        p.message_received(&msg("a@example.test", "a"), &conn(), &meta),
        MessageVerdict::Accept
    );
    let v = p.message_received(&msg("b@example.test", "a"), &conn(), &meta);
    let MessageVerdict::Refuse { reply, .. } = v else {
        panic!("{v:?}")
    };
    assert_eq!(
        reply.to_string(),
        "550 5.7.1 Not your address: b@example.test 1"
    );
    let v = p.message_received(&msg("b@example.test", "slow"), &conn(), &meta);
    let MessageVerdict::Refuse { reply, .. } = v else {
        panic!("{v:?}")
    };
    assert_eq!(reply.code(), 451, "a timeout defers");
    let (_d, none) = policy("portcullis.on('smtp_server_auth', function() end)");
    assert!(!none.unwrap().checks_messages());
}

/// Runs `decide` on another thread; `None` when it has not answered in
/// `limit` (the thread is then left spinning: the test fails anyway).
fn decide_within(p: Arc<Policy>, user: &str, limit: Duration) -> Option<Verdict> {
    let (tx, rx) = std::sync::mpsc::channel();
    let r = request("PLAIN", user, "pw", None);
    std::thread::spawn(move || {
        let _ = tx.send(decide(&p, &r));
    });
    rx.recv_timeout(limit).ok()
}

const RUNAWAYS: &str = r#"
portcullis.on('smtp_server_auth', function(auth)
  if auth.user == 'coroutine' then
    local co = coroutine.create(function() while true do end end)
    coroutine.resume(co)
  elseif auth.user == 'wrap' then
    coroutine.wrap(function() while true do end end)()
  elseif auth.user == 'nested' then
    coroutine.wrap(function()
      coroutine.wrap(function() local x = 0 while true do x = x + 1 end end)()
    end)()
  elseif auth.user == 'pcall' then
    while true do pcall(function() while true do end end) end
  elseif auth.user == 'resume' then
    while true do coroutine.resume(coroutine.create(function() while true do end end)) end
  elseif auth.user == 'pattern' then
    string.find(string.rep('a', 40000), '.-.-.-.-.-.-.-.-.-b')
  elseif auth.user == 'method' then
    (string.rep('a', 40000)):match('.-.-.-.-.-.-.-.-.-b')
  elseif auth.user == 'gsub' then
    string.gsub(string.rep('a', 40000), '.-.-.-.-.-.-.-.-.-b', '')
  elseif auth.user == 'costly' then
    while true do local s = string.rep('x', 8e6) end
  elseif auth.user == 'yield' then
    local co = coroutine.wrap(function() pcall(coroutine.yield, 'yielded') return 'done' end)
    return portcullis.reject(co() .. ' ' .. co())
  end
  return portcullis.reject('answered')
end)
"#;

#[test]
fn a_loop_in_any_coroutine_or_pattern_is_stopped_at_the_deadline() {
    let (_d, p) = policy(RUNAWAYS);
    let p = Arc::new(p.unwrap());
    for user in [
        "coroutine",
        "wrap",
        "nested",
        "pcall",
        "resume",
        "pattern",
        "method",
        "gsub",
        "costly",
    ] {
        let started = std::time::Instant::now();
        let verdict = decide_within(p.clone(), user, Duration::from_secs(5));
        let Some(Verdict::Defer { reason, .. }) = verdict else {
            panic!("{user}: not stopped within 5 s: {verdict:?}");
        };
        assert_eq!(reason, "the hook timed out", "{user}");
        assert!(started.elapsed() < Duration::from_secs(1), "{user}");
    }
    // Yielding across pcall still works, and the policy still answers.
    let Some(Verdict::Reject { reason, .. }) = decide_within(p, "yield", Duration::from_secs(5))
    else {
        panic!("yield")
    };
    assert_eq!(reason, "yielded done");
}

#[test]
fn a_state_that_overran_is_not_reused() {
    let (_d, p) = policy(
        "portcullis.on('smtp_server_auth', function(auth)\n\
           if auth.user == 'loop' then\n\
             stopped_here = true\n\
             coroutine.wrap(function() while true do end end)()\n\
           end\n\
           return portcullis.reject(tostring(stopped_here))\n\
         end)",
    );
    let p = Arc::new(p.unwrap());
    let verdict = decide_within(p.clone(), "loop", Duration::from_secs(5));
    assert!(
        matches!(verdict, Some(Verdict::Defer { .. })),
        "{verdict:?}"
    );
    for _ in 0..3 {
        let Some(Verdict::Reject { reason, .. }) =
            decide_within(p.clone(), "next", Duration::from_secs(5))
        else {
            panic!("no answer")
        };
        assert_eq!(reason, "nil", "a state that overran was reused");
    }
}

#[test]
fn vault_paths_are_encoded_segment_by_segment_and_tricks_refused() {
    use crate::secrets::vault_url;
    let url = |path: &str| vault_url("http://vault:8200/", "/secret/", path);
    assert_eq!(
        url("smtp-auth/bob").unwrap(),
        "http://vault:8200/v1/secret/data/smtp-auth/bob"
    );
    assert_eq!(
        url("smtp-auth/b%62 ob@x.test").unwrap(),
        "http://vault:8200/v1/secret/data/smtp-auth/b%2562%20ob%40x.test"
    );
    for trick in [
        "smtp-auth/bob#x",
        "smtp-auth/bob?v=9",
        "smtp-auth/../bob",
        "smtp-auth/./bob",
        "smtp-auth//bob",
        "smtp-auth/bob/",
        "/smtp-auth/bob",
    ] {
        assert!(url(trick).is_err(), "{trick}");
    }
    assert!(vault_url("http://vault", "sec#ret", "bob").is_err());
}

/// A script error must not look like a plain defer: the server delays and
/// counts it like a failure. A timeout stays a defer.
#[test]
fn a_script_error_is_told_apart_from_a_defer() {
    let (_d, p) = policy(
        "portcullis.on('smtp_server_auth', function(auth)\n\
           if auth.user == 'known' then return false end\n\
           if auth.user == 'slow' then while true do end end\n\
           error('no such user')\n\
         end)",
    );
    let p = p.unwrap();
    let v = decide(&p, &request("PLAIN", "stranger", "pw", None));
    let Verdict::ScriptError { reply, .. } = v else {
        panic!("{v:?}")
    };
    assert_eq!(reply.code(), 454);
    assert!(matches!(
        decide(&p, &request("PLAIN", "known", "pw", None)),
        Verdict::Reject { .. }
    ));
    assert!(matches!(
        decide(&p, &request("PLAIN", "slow", "pw", None)),
        Verdict::Defer { .. }
    ));
}

#[test]
fn scripts_reach_files_only_under_the_allowed_paths() {
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (a, o) = (allowed.path(), outside.path());
    std::fs::write(a.join("key"), "inside").unwrap();
    std::fs::write(o.join("key"), "outside").unwrap();
    std::os::unix::fs::symlink(o.join("key"), a.join("link")).unwrap();
    std::fs::write(a.join("big"), vec![b'k'; 2 * 1024 * 1024]).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(a.join("fifo"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let escape = a.join("..").join(o.file_name().unwrap()).join("key");
    let script = format!(
        r#"
        local A, O, ESCAPE = {a:?}, {o:?}, {escape:?}
        local function refused(f, ...)
          local ok, err = pcall(f, ...)
          assert(not ok, 'not refused')
          assert(tostring(err):find('outside the directories', 1, true), tostring(err))
        end
        assert(kumo.secrets.load{{ key_path = A .. '/key' }} == 'inside')
        refused(kumo.secrets.load, {{ key_path = O .. '/key' }})
        refused(kumo.secrets.load, {{ key_path = ESCAPE }})
        refused(kumo.secrets.load, {{ key_path = A .. '/link' }})
        refused(kumo.secrets.load, {{ key_path = '/etc/passwd' }})
        local ok, err = pcall(kumo.secrets.load, {{ key_path = A .. '/big' }})
        assert(not ok and tostring(err):find('larger than', 1, true), tostring(err))
        ok, err = pcall(kumo.secrets.load, {{ key_path = A .. '/fifo' }})
        assert(not ok and tostring(err):find('not a regular file', 1, true), tostring(err))
        local sqlite = require 'sqlite'
        local db = sqlite.open(A .. '/new.db')
        db:execute('create table t(x)')
        assert(sqlite.open(':memory:'))
        refused(sqlite.open, O .. '/new.db')
        assert(not pcall(sqlite.open, 'file:' .. O .. '/uri.db?mode=rwc'))
        assert(not pcall(db.execute, db, "attach '" .. O .. "/a.db' as o"))
        assert(not pcall(db.execute, db, 'attach ? as o', O .. '/b.db'))
        assert(not pcall(db.execute, db, "vacuum into '" .. O .. "/c.db'"))
        assert(not pcall(db.execute, db, "attach 'file:" .. A .. "/u.db?mode=rwc' as u"))
        db:execute("attach '" .. A .. "/d.db' as d")
        db:execute("vacuum into '" .. A .. "/e.db'")
        db:execute('vacuum')
        "#
    );
    let (_d, p) = policy_reaching(&script, &[a]);
    p.expect("the script's checks hold");
    for name in ["new.db", "uri.db", "a.db", "b.db", "c.db"] {
        assert!(!o.join(name).exists(), "{name} was created outside");
    }
    assert!(a.join("d.db").exists() && a.join("e.db").exists());
}

#[test]
fn a_runaway_sqlite_query_stops_at_the_deadline() {
    let (_d, p) = policy(
        "local sqlite = require 'sqlite'\n\
         portcullis.on('smtp_server_auth', function(auth)\n\
           local db = sqlite.open(':memory:')\n\
           db:execute('with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c')\n\
           return true\n\
         end)",
    );
    let p = Arc::new(p.unwrap());
    let verdict = decide_within(p, "anyone", Duration::from_secs(5));
    assert!(
        matches!(verdict, Some(Verdict::Defer { .. })),
        "{verdict:?}"
    );
}

/// Lua runs `__gc` metamethods with hooks off, whenever the collector
/// pleases or when a state is closed: a looping one could never be
/// stopped. Scripts may not declare them, and a `__gc` added to a
/// metatable after `setmetatable` is never called.
#[test]
fn finalizers_cannot_run_away() {
    let (_d, p) = policy("setmetatable({}, { __gc = function() while true do end end })");
    let message = p.err().expect("refused").to_string();
    assert!(
        message.contains("__gc metamethods are not allowed"),
        "{message}"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (_d, p) = policy(
            "portcullis.on('smtp_server_auth', function(auth)\n\
               for i = 1, 10 do\n\
                 local mt = {}\n\
                 setmetatable({}, mt)\n\
                 mt.__gc = function() while true do end end\n\
               end\n\
               collectgarbage()\n\
               if auth.user == 'loop' then while true do end end\n\
               return false\n\
             end)",
        );
        let p = p.unwrap();
        let first = decide(&p, &request("PLAIN", "a", "pw", None));
        let overran = decide(&p, &request("PLAIN", "loop", "pw", None));
        p.reload().unwrap();
        drop(p);
        let _ = tx.send((first, overran));
    });
    let (first, overran) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a finalizer hung the pool");
    assert!(matches!(first, Verdict::Reject { .. }), "{first:?}");
    assert!(matches!(overran, Verdict::Defer { .. }), "{overran:?}");
}

/// Runs `f` with portcullis's log captured; returns what it logged.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

const KUMOMTA_FILE: &str = r#"
local kumo = require 'kumo'
local users = {}
kumo.on('init', function()
  kumo.configure_accounting_db_path '/var/spool/kumomta/accounting.db'
  kumo.start_esmtp_listener { listen = '0.0.0.0:25', hostname = 'mx.example' }
  kumo.start_esmtp_listener { listen = '0.0.0.0:587' }
  kumo.start_http_listener { listen = '127.0.0.1:8000' }
  kumo.define_spool { name = 'data', path = '/var/spool/kumomta/data' }
  kumo.configure_local_logs { log_dir = '/var/log/kumomta' }
  kumo.set_diagnostic_log_filter 'kumod=info'
  users.alice = 'secret'
end)
kumo.on('http_server_validate_auth_basic', function(user, password) return false end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {}
end)
kumo.on('get_egress_path_config', function(domain, source, site) return kumo.make_egress_path {} end)
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  if authc == 'mallory' then kumo.reject(535, 'nope') end
  return users[authc] == password
end)
"#;

#[test]
fn a_whole_kumomta_file_loads_and_what_it_ignores_is_reported_once() {
    let mut loaded = None;
    let log = logged(|| loaded = Some(policy(KUMOMTA_FILE)));
    let (_d, p) = loaded.unwrap();
    let p = p.expect("a whole KumoMTA file loads");
    assert_eq!(
        p.ignored(),
        vec![
            "event http_server_validate_auth_basic: KumoMTA-only, ignored",
            "event get_queue_config: KumoMTA-only, ignored",
            "event get_egress_path_config: KumoMTA-only, ignored",
            "kumo.configure_accounting_db_path: KumoMTA-only, ignored",
            "kumo.start_esmtp_listener: KumoMTA-only, ignored",
            "kumo.start_http_listener: KumoMTA-only, ignored",
            "kumo.define_spool: KumoMTA-only, ignored",
            "kumo.configure_local_logs: KumoMTA-only, ignored",
            "kumo.set_diagnostic_log_filter: KumoMTA-only, ignored",
        ]
    );
    assert_eq!(
        log.matches("kumo.start_esmtp_listener: KumoMTA-only")
            .count(),
        1,
        "{log}"
    );
    // `init` ran (in every state): the table it filled decides.
    assert!(matches!(
        decide(&p, &request("PLAIN", "alice", "secret", None)),
        Verdict::Accept { .. }
    ));
    assert!(matches!(
        decide(&p, &request("PLAIN", "alice", "wrong", None)),
        Verdict::Reject { .. }
    ));
    // Reported at load, not at each call.
    let log = logged(|| {
        decide(&p, &request("PLAIN", "alice", "secret", None));
    });
    assert!(!log.contains("KumoMTA-only"), "{log}");
}

#[test]
fn names_neither_kumomta_nor_portcullis_knows_still_fail_at_load() {
    for script in [
        "kumo.on('http_server_validate_auth_basci', function() end)",
        "kumo.on('init', function() kumo.start_esmtp_listner { listen = '0:25' } end)",
        "kumo.configure_local_log { log_dir = '/tmp' }",
    ] {
        let (_d, p) = policy(script);
        assert!(p.is_err(), "{script} loaded");
    }
}

fn refusal(v: Verdict) -> (u16, String, bool, bool) {
    match v {
        Verdict::Reject {
            reply, disconnect, ..
        } => (reply.code(), reply.text(), disconnect, false),
        Verdict::Defer {
            reply, disconnect, ..
        } => (reply.code(), reply.text(), disconnect, true),
        other => panic!("not a refusal: {other:?}"),
    }
}

#[test]
fn kumo_reject_and_disconnect_answer_with_their_reply() {
    let (_d, p) = policy(
        r#"
local function deep(f, ...) return f(...) end
kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  if authc == 'mallory' then deep(kumo.reject, 535, 'nope') end
  if authc == 'eve' then kumo.disconnect(550, '5.7.1 go away') end
  if authc == 'busy' then kumo.reject(451, 'later') end
  if authc == 'bye' then kumo.disconnect(421, 'closing') end
  if authc == 'crlf' then kumo.reject(535, 'nope\r\n250 ok') end
  if authc == 'ok' then kumo.reject(250, 'fine') end
  if authc == 'huge' then kumo.reject(599, 'x') end
  if authc == 'text' then kumo.reject('535', 'x') end
  return password == 'secret'
end)
"#,
    );
    let p = p.unwrap();
    let ask = |user: &str| decide(&p, &request("PLAIN", user, "secret", None));
    assert_eq!(refusal(ask("mallory")), (535, "nope".into(), false, false));
    assert_eq!(
        refusal(ask("eve")),
        (550, "5.7.1 go away".into(), true, false)
    );
    assert_eq!(refusal(ask("busy")), (451, "later".into(), false, true));
    assert_eq!(refusal(ask("bye")), (421, "closing".into(), true, true));
    // A reply that would break the protocol is a script error, never sent.
    for user in ["crlf", "ok", "huge", "text"] {
        assert!(
            matches!(ask(user), Verdict::ScriptError { .. }),
            "{user}: {:?}",
            ask(user)
        );
    }
    assert!(matches!(ask("alice"), Verdict::Accept { .. }));
}

#[test]
fn kumo_reject_also_answers_the_general_hook_and_messages() {
    let (_d, p) = policy(
        r#"
portcullis.on('smtp_server_auth', function(auth) kumo.reject(535, 'not you') end)
portcullis.on('smtp_server_message_received', function(msg) kumo.reject(550, 'no mail') end)
"#,
    );
    let p = p.unwrap();
    assert_eq!(
        refusal(decide(&p, &request("PLAIN", "a", "b", None))),
        (535, "not you".into(), false, false)
    );
    let msg = MessageFacts {
        mail_from: "a@example.com".into(),
        rcpt_to: vec!["b@example.com".into()],
        size: 10,
        helo: "client.example".into(),
        authn_id: Some("a".into()),
        authz_id: Some("a".into()),
        mechanism: Some("PLAIN".into()),
        user_data: None,
    };
    match p.message_received(&msg, &conn(), &ConnMeta::new()) {
        MessageVerdict::Refuse { reply, .. } => {
            assert_eq!((reply.code(), reply.text()), (550, "no mail".into()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn script_errors_are_logged_with_a_traceback() {
    let (_d, p) = policy(
        r#"
local function lookup(user) error('no table for ' .. user) end
local function check(user) local found = lookup(user) return found end
kumo.on('smtp_server_auth_plain', function(authz, authc) local ok = check(authc) return ok end)
"#,
    );
    let p = p.unwrap();
    let log = logged(|| {
        assert!(matches!(
            decide(&p, &request("PLAIN", "alice", "pw", None)),
            Verdict::ScriptError { .. }
        ));
    });
    assert!(log.contains("no table for alice"), "{log}");
    assert!(log.contains("stack traceback"), "{log}");
    assert!(log.contains("in upvalue 'lookup'"), "{log}");
    assert!(log.contains("in upvalue 'check'"), "{log}");
    // So does an error raised by a Rust function the script called.
    let (_d, p) = policy(
        "kumo.on('smtp_server_auth_plain', function(authz, authc) local db = require('sqlite').open('/nonexistent/x.db') return false end)",
    );
    let p = p.unwrap();
    let log = logged(|| {
        decide(&p, &request("PLAIN", "alice", "pw", None));
    });
    assert!(log.contains("stack traceback"), "{log}");
    // An error while loading carries one too.
    let (_d, p) = policy(
        "local function f() error('broken at load') end\nkumo.on('init', function() f() end)",
    );
    let message = p.err().expect("load fails").to_string();
    assert!(message.contains("broken at load"), "{message}");
    assert!(message.contains("stack traceback"), "{message}");
}

#[test]
fn kumo_log_functions_write_to_the_log() {
    let (_d, p) = policy(
        r#"
kumo.on('smtp_server_auth_plain', function(authz, authc)
  kumo.log_error('err', authc, 1)
  kumo.log_warn('warn', authc)
  kumo.log_info('info', authc)
  kumo.log_debug('debug', authc)
  return false
end)
"#,
    );
    let p = p.unwrap();
    let log = logged(|| {
        decide(&p, &request("PLAIN", "alice", "pw", None));
    });
    for line in [
        "ERROR",
        "err\talice\t1",
        "WARN",
        "warn\talice",
        "INFO",
        "info\talice",
        "DEBUG",
        "debug\talice",
    ] {
        assert!(log.contains(line), "{line} missing: {log}");
    }
}

#[test]
fn os_getenv_reads_the_environment_and_nothing_changes_it() {
    // PATH is set for every test process; nothing here sets variables.
    let path = std::env::var("PATH").expect("PATH");
    let (_d, p) = policy(
        "local path = os.getenv('PATH')\n\
         assert(os.getenv('PORTCULLIS_SURELY_UNSET_VARIABLE') == nil)\n\
         assert(os.setenv == nil and os.remove == nil and os.exit == nil)\n\
         kumo.on('smtp_server_auth_plain', function(authz, authc, password) return password == path end)",
    );
    let p = p.expect("os.getenv works");
    assert!(matches!(
        decide(&p, &request("PLAIN", "a", &path, None)),
        Verdict::Accept { .. }
    ));
}

#[test]
fn require_loads_modules_beside_the_script_and_only_under_allowed_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(
        dir.path().join("users.lua"),
        "loads = (loads or 0) + 1\nreturn { alice = 'secret' }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lib/init.lua"),
        "return { check = function(t, u, p) return t[u] == p end }",
    )
    .unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("evil.lua"), "return {}").unwrap();
    let script = dir.path().join("policy.lua");
    std::fs::write(
        &script,
        "local users = require 'users'\n\
         local lib = require 'lib'\n\
         assert(require 'users' == users and loads == 1, 'a module runs once')\n\
         kumo.on('smtp_server_auth_plain', function(authz, authc, password)\n\
           return lib.check(users, authc, password)\n\
         end)",
    )
    .unwrap();
    let p = Policy::load(PolicyOptions::new(&script)).expect("modules load");
    assert!(matches!(
        decide(&p, &request("PLAIN", "alice", "secret", None)),
        Verdict::Accept { .. }
    ));

    // A search path outside the allowed directories, a name that climbs
    // out, a module that is not there: each fails at load.
    let evil = format!(
        "package.path = '{}/?.lua;' .. package.path\nrequire 'evil'",
        outside.path().display()
    );
    for (source, expected) in [
        (evil.as_str(), "allowed_paths"),
        ("require '../secret'", "dotted words"),
        ("require 'lib..x'", "dotted words"),
        ("require 'missing'", "not found"),
        ("require 'policy-extras.listener_domains'", "not found"),
    ] {
        std::fs::write(&script, source).unwrap();
        let message = Policy::load(PolicyOptions::new(&script))
            .err()
            .unwrap_or_else(|| panic!("{source} loaded"))
            .to_string();
        assert!(message.contains(expected), "{source}: {message}");
    }
}

#[test]
fn docs_name_every_kumomta_event_and_configuration_call_portcullis_accepts() {
    let docs = include_str!("../../../docs/policy.md");
    let names = crate::events::all()
        .filter(|e| e.namespace == crate::events::Namespace::Kumo)
        .map(|e| e.name)
        .chain(crate::events::KUMO_CONFIGURATION.iter().copied());
    for name in names {
        let named = docs.contains(&format!("`{name}`")) || docs.contains(&format!("`kumo.{name}`"));
        assert!(named, "docs/policy.md does not name `{name}`");
    }
}

/// The spool stores user data as JSON with each message and reads it back
/// to deliver it; JSON readers (serde_json among them) stop at 128 levels.
/// Data nested deeper must be refused when the script gives it, not
/// accepted and then found unreadable in the spool.
#[test]
fn user_data_nested_too_deep_to_store_is_refused() {
    let (_d, p) = policy(
        "portcullis.on('smtp_server_auth', function(auth, conn)\n\
           local t = 'leaf'\n\
           for i = 1, tonumber(auth.user) do t = { t } end\n\
           return portcullis.accept{ user = 'u', data = { t } }\n\
         end)",
    );
    let p = p.unwrap();
    let Verdict::Accept { user_data, .. } = decide(&p, &request("PLAIN", "20", "pw", None)) else {
        panic!("shallow data is accepted");
    };
    let json = serde_json::to_vec(&user_data).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
    for depth in ["200", "100000"] {
        let v = decide(&p, &request("PLAIN", depth, "pw", None));
        // An answer the server cannot use is the script's mistake.
        assert!(
            matches!(v, Verdict::ScriptError { .. }),
            "{depth} levels: not refused: {v:?}"
        );
    }
}

/// A table that holds the same table twice, forty times over, is small in
/// Lua and 2^40 values as JSON: user data is bounded in values too.
#[test]
fn user_data_with_too_many_values_is_refused() {
    let (_d, p) = policy(
        "portcullis.on('smtp_server_auth', function(auth, conn)\n\
           local t = {}\n\
           for i = 1, 20 do t = { t, t } end\n\
           return portcullis.accept{ user = 'u', data = t }\n\
         end)",
    );
    let p = p.unwrap();
    let started = std::time::Instant::now();
    let v = decide(&p, &request("PLAIN", "u", "pw", None));
    assert!(
        matches!(v, Verdict::ScriptError { .. }),
        "not refused: {v:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// An accept must name somebody: an empty user or authzid (from the
/// script, or a mechanism that carried no name) is refused, not recorded
/// as an authenticated nobody.
#[test]
fn an_accept_with_an_empty_identity_is_refused() {
    let (_d, p) = policy(
        "portcullis.on('smtp_server_auth', function(auth)\n\
           if auth.user == 'empty-user' then return portcullis.accept{ user = '' } end\n\
           if auth.user == 'empty-authz' then return portcullis.accept{ authz = '' } end\n\
           return true\n\
         end)",
    );
    let p = p.unwrap();
    for user in ["empty-user", "empty-authz", ""] {
        let v = decide(&p, &request("PLAIN", user, "pw", None));
        assert!(matches!(v, Verdict::ScriptError { .. }), "{user:?}: {v:?}");
    }
    let v = decide(&p, &request("PLAIN", "alice", "pw", None));
    assert!(matches!(v, Verdict::Accept { .. }), "{v:?}");
}

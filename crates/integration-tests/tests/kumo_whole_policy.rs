//! A whole KumoMTA-style policy file as a deployment writes it: `init`
//! with listener, spool and log set-up, several events portcullis has no
//! use for, settings from a TOML file, and one `smtp_server_auth_plain`
//! that checks three stores by user realm (SQLite with salted SHA-256
//! digests, memoized; Vault, here a real OpenBao; the operator's HTTP user
//! API), refuses suspended accounts with `kumo.reject`, records the
//! backend in the connection metadata, and answers with an AuthInfo.
//! Driven by swaks and Python's smtplib through the real binary.

use std::process::Command;

use portcullis_integration_tests::{python, swaks_plain, BaoServer, HttpUserApi, TestServer};

const POLICY: &str = r#"
local kumo = require 'kumo'
local sqlite = require 'sqlite'

-- Deployment settings beside the policy (paths filled in by the test).
local settings = kumo.serde.toml_load(SETTINGS)

kumo.on('init', function()
  kumo.set_diagnostic_log_filter 'kumod=info'
  kumo.configure_accounting_db_path '/var/spool/kumomta/accounting.db'
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:587',
    hostname = 'mail.example.com',
    tls_certificate = '/opt/kumomta/etc/tls/cert.pem',
    tls_private_key = '/opt/kumomta/etc/tls/key.pem',
  }
  kumo.start_http_listener { listen = '127.0.0.1:8000' }
  kumo.define_spool { name = 'data', path = '/var/spool/kumomta/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '/var/spool/kumomta/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = '/var/log/kumomta', max_segment_duration = '1 minute' }
  kumo.log_info('auth policy loaded for ' .. settings.site.name)
end)

kumo.on('http_server_validate_auth_basic', function(user, password)
  return password == settings.site.api_key
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { egress_pool = 'pool-1' }
end)

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path { enable_tls = 'Opportunistic' }
end)

kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', 'submission')
end)

local sql_user = kumo.memoize(function(name)
  local db = sqlite.open(settings.sqlite.path)
  return db:execute('select hash, groups from users where name = ?', name)[1]
end, { name = 'sql-users', ttl = '5 minutes', capacity = 1000,
       allow_stale_reads = true, invalidate_with_epoch = true })

local http = kumo.http.build_client { timeout = '3 seconds' }

local function check_sqlite(user, password)
  local row = sql_user(user)
  if row == nil then
    return nil
  end
  local digest = kumo.digest.sha256(settings.sqlite.salt, password)
  if row.hash ~= digest.hex then
    return nil
  end
  return kumo.json_parse(row.groups)
end

local function check_vault(user, password)
  local ok, secret = pcall(kumo.secrets.load, {
    vault_mount = 'secret',
    vault_path = 'smtp-auth/' .. user,
  })
  if ok and secret == password then
    return { 'vault-users' }
  end
  return nil
end

local function check_api(user, password)
  local response = http:post(settings.api.url .. '/check')
    :header('Content-Type', 'application/json')
    :body(kumo.json_encode { user = user, password = password })
    :send()
  if response:status_code() ~= 200 then
    return nil
  end
  return response:json().groups
end

kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  if password == '' then
    return false
  end
  if settings.suspended[authc] then
    kumo.reject(535, '5.7.1 account suspended, call the help desk')
  end
  local backend, groups
  if authc:match('^vault%-') then
    backend, groups = 'vault', check_vault(authc, password)
  elseif authc:match('^api%-') then
    backend, groups = 'api', check_api(authc:sub(5), password)
  else
    backend, groups = 'sqlite', check_sqlite(authc, password)
  end
  if groups == nil then
    kumo.log_warn('auth failed for ' .. authc .. ' via ' .. backend)
    return false
  end
  conn_meta:set_meta('auth_backend', backend)
  return {
    identities = { { identity = authc, context = 'SmtpAuthPlainAuthentication' } },
    groups = groups,
  }
end)
"#;

const API_USERS: &str = r#"{"carol": {"password": "api-pass", "groups": ["partners"]}}"#;

fn sha256_hex(text: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())",
            text,
        ])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_whole_kumomta_policy_checks_sqlite_vault_and_an_http_api() {
    let bao = BaoServer::start();
    assert!(bao.put("smtp-auth/vault-dora", r#"{"data":{"key":"dora-pass"}}"#));
    let api = HttpUserApi::start(API_USERS);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("users.db");
    let hash = sha256_hex("pepper-1alice-pass");
    let made = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute('create table users (name text primary key, hash text, groups text)'); \
             c.execute('insert into users values (?, ?, ?)', ('alice', sys.argv[2], '[\"staff\", \"billing\"]')); \
             c.execute('insert into users values (?, ?, ?)', ('mallory', sys.argv[2], '[]')); \
             c.commit()",
            &db.display().to_string(),
            &hash,
        ])
        .status()
        .expect("python3 runs");
    assert!(made.success());
    let settings = format!(
        "[site]\nname = \"example\"\napi_key = \"k\"\n\
         [sqlite]\npath = {db:?}\nsalt = \"pepper-1\"\n\
         [api]\nurl = {api:?}\n\
         [suspended]\nmallory = true\n",
        db = db.display().to_string(),
        api = api.url(),
    );
    std::fs::write(dir.path().join("auth.toml"), settings).expect("settings written");
    let server = TestServer::builder()
        .config(&format!(
            "policy = \"policy.lua\"\n\
             [lua]\nvault_address = {:?}\nvault_token = \"{}\"\nallowed_paths = [{:?}]\n",
            bao.address(),
            BaoServer::TOKEN,
            dir.path().display().to_string(),
        ))
        .file(
            "policy.lua",
            &format!(
                "SETTINGS = {:?}\n{POLICY}",
                dir.path().join("auth.toml").display().to_string()
            ),
        )
        .start();

    swaks_plain(&server, "alice", "alice-pass")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    let message = server.single_message();
    let meta = &message.meta;
    assert_eq!(meta["meta"]["auth_backend"], "sqlite", "{meta:#}");
    assert_eq!(
        meta["auth"]["user_data"]["auth_info"]["groups"],
        serde_json::json!(["staff", "billing"]),
        "{meta:#}"
    );

    let out = python(
        r#"
        for label, user, password in [
            ("sqlite-wrong", "alice", "alice-wrong"),
            ("suspended", "mallory", "alice-pass"),
            ("vault", "vault-dora", "dora-pass"),
            ("vault-wrong", "vault-dora", "nope"),
            ("api", "api-carol", "api-pass"),
            ("api-wrong", "api-carol", "nope"),
            ("unknown", "nobody", "x"),
        ]:
            s = connect()
            login(label, s, user, password, "PLAIN")
            s.quit()
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("sqlite-wrong", "535 5.7.8")
        .assert_reply(
            "suspended",
            "535 5.7.1 account suspended, call the help desk",
        )
        .assert_reply("vault", "235 2.7.0")
        .assert_reply("vault-wrong", "535 5.7.8")
        .assert_reply("api", "235 2.7.0")
        .assert_reply("api-wrong", "535 5.7.8")
        .assert_reply("unknown", "535 5.7.8");

    let log = server.log();
    assert!(log.contains("auth policy loaded for example"), "{log}");
    assert!(log.contains("auth failed for alice via sqlite"), "{log}");
    for ignored in [
        "event http_server_validate_auth_basic: KumoMTA-only, ignored",
        "event get_egress_path_config: KumoMTA-only, ignored",
        "kumo.define_spool: KumoMTA-only, ignored",
    ] {
        assert_eq!(log.matches(ignored).count(), 1, "{ignored}\n{log}");
    }
}

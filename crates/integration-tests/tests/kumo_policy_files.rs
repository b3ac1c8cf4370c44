//! A whole KumoMTA policy file, as an operator would bring it: an `init`
//! handler that starts listeners and configures the spool, logs and
//! accounting, events portcullis has no use for, a module beside the
//! script, and an `smtp_server_auth_plain` check that answers with a
//! boolean or with `kumo.reject` / `kumo.disconnect`. It loads, decides
//! logins through real clients, and `check-config` names what it ignores.

use portcullis_integration_tests::{python, swaks_plain, TestServer};

const POLICY: &str = r#"
local kumo = require 'kumo'
local users = require 'users'   -- users.lua, beside this file

kumo.on('init', function()
  kumo.configure_accounting_db_path '/var/spool/kumomta/accounting.db'
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:25',
    hostname = 'mail.example.com',
    relay_hosts = { '127.0.0.1' },
  }
  kumo.start_http_listener { listen = '127.0.0.1:8000' }
  kumo.define_spool { name = 'data', path = '/var/spool/kumomta/data' }
  kumo.define_spool { name = 'meta', path = '/var/spool/kumomta/meta' }
  kumo.configure_local_logs { log_dir = '/var/log/kumomta', max_segment_duration = '1 minute' }
  kumo.log_info('policy initialised')
end)

kumo.on('http_server_validate_auth_basic', function(user, password)
  return password == 'api-secret'
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { max_retry_interval = '20 minutes' }
end)

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path { enable_tls = 'OpportunisticInsecure' }
end)

kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  if authc == 'mallory' then
    kumo.reject(535, 'nope')
  end
  if authc == 'eve' then
    kumo.disconnect(421, 'closing: too many tries')
  end
  if password == '' then
    return false
  end
  return users[authc] == password
end)
"#;

const USERS: &str = "return { ['daniel'] = 'tiger' }\n";

fn server() -> TestServer {
    TestServer::builder()
        .config("policy = \"policy.lua\"\n")
        .file("policy.lua", POLICY)
        .file("users.lua", USERS)
        .start()
}

#[test]
fn a_whole_kumomta_policy_file_decides_logins_with_its_own_replies() {
    let server = server();
    swaks_plain(&server, "daniel", "tiger")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    assert_eq!(
        server.single_message().auth_field("authn_id").as_deref(),
        Some("daniel")
    );

    let out = python(
        r#"
        s = connect()
        login("wrong", s, "daniel", "lion", "PLAIN")
        login("rejected", s, "mallory", "tiger", "PLAIN")
        login("right", s, "daniel", "tiger", "PLAIN")
        s.quit()
        s = connect()
        show("disconnect", s.docmd("AUTH", "PLAIN " + b64("\0eve\0tiger")))
        print("closed:", closed(s), flush=True)
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("wrong", "535 5.7.8")
        .assert_reply("rejected", "535 nope")
        .assert_reply("right", "235 2.7.0")
        .assert_reply("disconnect", "421 closing: too many tries")
        .assert_contains("closed: True");

    // Reported once, at load; KumoMTA's logging reaches the log.
    let log = server.log();
    assert_eq!(
        log.matches("event http_server_validate_auth_basic: KumoMTA-only, ignored")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("policy initialised"), "{log}");
}

#[test]
fn check_config_names_what_a_kumomta_file_uses_that_portcullis_ignores() {
    let server = server();
    let out = server
        .cli(&["check-config"])
        .output()
        .expect("check-config runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "event http_server_validate_auth_basic: KumoMTA-only, ignored",
        "event get_queue_config: KumoMTA-only, ignored",
        "event get_egress_path_config: KumoMTA-only, ignored",
        "kumo.configure_accounting_db_path: KumoMTA-only, ignored",
        "kumo.start_esmtp_listener: KumoMTA-only, ignored",
        "kumo.start_http_listener: KumoMTA-only, ignored",
        "kumo.define_spool: KumoMTA-only, ignored",
        "kumo.configure_local_logs: KumoMTA-only, ignored",
    ] {
        assert_eq!(stdout.matches(line).count(), 1, "{line}:\n{stdout}");
    }
    assert!(stdout.contains("smtp_server_auth_plain"), "{stdout}");

    // A name neither KumoMTA nor portcullis knows is still refused.
    std::fs::write(
        server.data_dir().join("policy.lua"),
        POLICY.replace(
            "http_server_validate_auth_basic",
            "http_server_validate_auth_basci",
        ),
    )
    .expect("rewrite the policy");
    let out = server
        .cli(&["check-config"])
        .output()
        .expect("check-config runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown event 'http_server_validate_auth_basci'"),
        "{stderr}"
    );
}

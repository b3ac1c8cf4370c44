//! `kumo.http` in a KumoMTA-style auth policy, against a real HTTP user
//! API started by the test: the API's answer decides the login, and an
//! API that cannot be reached is `454` (try later), never `535`.

use portcullis_integration_tests::{python, swaks_plain, HttpUserApi, TestServer};

const USERS: &str = r#"{"alice": {"password": "wonderland", "groups": ["staff"]},
                        "bob": {"password": "builder", "groups": []}}"#;

fn policy(api: &str) -> String {
    format!(
        r#"
local API = '{api}'
local client = kumo.http.build_client {{ timeout = '5 seconds' }}

kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  if authc:match('^svc-') then
    -- The look-up form: fetch the user with the service's own key.
    local response = client:get(API .. '/users/' .. authc:sub(5))
      :basic_auth('svc', 'api-key')
      :send()
    if response:status_code() == 404 then
      return false
    end
    local user = kumo.json_parse(response:text())
    return user.password == password
  end
  local response = client:post(API .. '/check')
    :header('Content-Type', 'application/json')
    :body(kumo.json_encode {{ user = authc, password = password }})
    :send()
  if not response:status_is_success() then
    return false
  end
  local answer = response:json()
  return {{ identities = {{ {{ identity = authc, context = 'HttpApi' }} }}, groups = answer.groups }}
end)
"#
    )
}

#[test]
fn an_http_user_api_decides_and_its_outage_is_a_temporary_failure() {
    let mut api = HttpUserApi::start(USERS);
    let server = TestServer::builder()
        .config("policy = \"policy.lua\"\n")
        .file("policy.lua", &policy(&api.url()))
        .start();

    swaks_plain(&server, "alice", "wonderland")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    let message = server.single_message();
    assert_eq!(message.auth_field("authn_id").as_deref(), Some("alice"));

    let port = server.submission_port();
    let out = python(
        r#"
        s = connect()
        login("wrong", s, "alice", "looking-glass", "PLAIN")
        login("lookup", s, "svc-bob", "builder", "LOGIN")
        s.quit()
        s = connect()
        login("unknown", s, "svc-nobody", "x", "PLAIN")
        s.quit()
        "#,
        &[port],
    );
    out.assert_reply("wrong", "535 5.7.8")
        .assert_reply("lookup", "235 2.7.0")
        .assert_reply("unknown", "535 5.7.8");
    assert!(api.hits() >= 4);

    api.kill();
    let out = python(
        r#"
        s = connect()
        login("down", s, "alice", "wonderland", "PLAIN")
        login("down-again", s, "alice", "wonderland", "PLAIN")
        s.quit()
        "#,
        &[port],
    );
    out.assert_reply("down", "454 4.7.0")
        .assert_reply("down-again", "454 4.7.0");
    let log = server.log();
    assert!(log.contains("unreachable"), "{log}");
}

#[test]
fn plain_http_to_another_host_is_refused() {
    let server = TestServer::builder()
        .config("policy = \"policy.lua\"\n")
        .file("policy.lua", &policy("http://auth.example.test"))
        .start();
    let out = python(
        r#"
        s = connect()
        login("clear", s, "alice", "wonderland", "PLAIN")
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("clear", "454 4.7.0");
    let log = server.log();
    assert!(log.contains("use https"), "{log}");
}

/// The memoized look-up an AUTH policy wants: every login asks the API
/// (`ttl = 0`), and while the API is down the last answer serves for the
/// stale window, so users who logged in before still can; a user the
/// cache never saw gets `454`.
#[test]
fn memoized_lookups_keep_known_users_logging_in_while_the_api_is_down() {
    let mut api = HttpUserApi::start(USERS);
    let script = format!(
        r#"
local client = kumo.http.build_client {{ timeout = '5 seconds' }}
local fetch_user = kumo.memoize(function(name)
  local response = client:get('{api}/users/' .. name):basic_auth('svc', 'api-key'):send()
  if response:status_code() == 404 then
    return nil
  end
  return response:json()
end, {{ name = 'users', ttl = 0, max_stale = '1 hour', allow_stale_reads = true,
       populate_timeout = '3 seconds', invalidate_with_epoch = true }})

kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  local user = fetch_user(authc)
  return user ~= nil and user.password == password
end)
"#,
        api = api.url()
    );
    let server = TestServer::builder()
        .config("policy = \"policy.lua\"\n")
        .file("policy.lua", &script)
        .start();
    let port = server.submission_port();
    python(
        r#"
        s = connect()
        login("alice", s, "alice", "wonderland", "PLAIN")
        s.quit()
        "#,
        &[port],
    )
    .assert_reply("alice", "235 2.7.0");

    api.kill();
    let out = python(
        r#"
        s = connect()
        login("cached", s, "alice", "wonderland", "PLAIN")
        s.quit()
        s = connect()
        login("cached-wrong", s, "alice", "looking-glass", "PLAIN")
        login("new", s, "bob", "builder", "PLAIN")
        s.quit()
        "#,
        &[port],
    );
    out.assert_reply("cached", "235 2.7.0")
        .assert_reply("cached-wrong", "535 5.7.8")
        .assert_reply("new", "454 4.7.0");
    assert!(server.log().contains("serving the last answer"));
}

//! KumoMTA's AuthInfo answer of `smtp_server_auth_plain` (its newer form
//! instead of a boolean) through a real client: the login name it confirms
//! gets `235` and its identities and groups reach the spool JSON; an
//! AuthInfo naming someone other than the user who logged in is a `535`.

use portcullis_integration_tests::{swaks_plain, TestServer};

const POLICY: &str = r#"
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  if password ~= 'pw' then
    return false
  end
  local who = authc
  if authc == 'eve' then
    who = 'alice'
  end
  return {
    identities = { { identity = who, context = 'SmtpAuthPlainAuthentication' } },
    groups = { 'staff' },
  }
end)
"#;

fn send_as(server: &TestServer, user: &str) -> portcullis_integration_tests::ToolOutput {
    swaks_plain(server, user, "pw")
}

#[test]
fn kumo_auth_info_answer_authenticates_the_login_name_only() {
    let server = TestServer::builder()
        .config("policy = \"policy.lua\"\n")
        .file("policy.lua", POLICY)
        .start();
    send_as(&server, "eve")
        .assert_contains("535 5.7.8")
        .assert_lacks("queued as");
    assert!(server.spool_messages().is_empty());
    send_as(&server, "alice")
        .assert_contains("235 2.7.0")
        .assert_contains("250 2.0.0")
        .assert_success(true);
    let message = server.single_message();
    let meta = &message.meta;
    assert_eq!(
        message.auth_field("authn_id").as_deref(),
        Some("alice"),
        "{meta:#}"
    );
    assert_eq!(
        meta["auth"]["user_data"],
        serde_json::json!({"auth_info": {
            "identities": [{"identity": "alice", "context": "SmtpAuthPlainAuthentication"}],
            "groups": ["staff"],
        }}),
        "{meta:#}"
    );
}

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

/// The groups of an AuthInfo answer count for tenants:
/// `[tenant.'x'] require_group = ['staff']` lets the group's members name
/// the tenant, and no one else (a user the AuthInfo puts in no group, a
/// tenant whose groups they are not in).
#[test]
fn auth_info_groups_are_visible_to_tenant_checks() {
    let server = TestServer::builder()
        .config(
            "policy = \"policy.lua\"\n\
             [tenant.'acme']\nrequire_group = [\"staff\"]\n\
             [tenant.'globex']\nrequire_authz = [\"bob\"]\nrequire_group = [\"board\"]\n",
        )
        .file(
            "policy.lua",
            r#"
kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  if password ~= 'pw' then return false end
  local groups = {}
  if authc == 'alice' then groups = { 'staff' } end
  return { identities = { { identity = authc, context = 'SmtpAuthPlainAuthentication' } },
           groups = groups }
end)
"#,
        )
        .start();
    let out = portcullis_integration_tests::python(
        r#"
        def message(tenant):
            return (f"From: <alice@example.test>\r\nTo: <rcpt@example.test>\r\n"
                    f"X-Tenant: {tenant}\r\nSubject: tenant\r\n\r\nHello.\r\n")
        for user in ["alice", "carol"]:
            s = connect()
            login(user, s, user, "pw", "PLAIN")
            for tenant in ["acme", "globex"]:
                s.mail("alice@example.test"); s.rcpt("rcpt@example.test")
                try:
                    show(f"{user}-{tenant}", s.data(message(tenant)))
                except smtplib.SMTPDataError as e:
                    show(f"{user}-{tenant}", (e.smtp_code, e.smtp_error))
                s.rset()
            s.quit()
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("alice", "235")
        .assert_reply("carol", "235")
        .assert_reply("alice-acme", "250")
        .assert_reply("alice-globex", "550 5.7.1")
        .assert_reply("carol-acme", "550 5.7.1")
        .assert_reply("carol-globex", "550 5.7.1");
}

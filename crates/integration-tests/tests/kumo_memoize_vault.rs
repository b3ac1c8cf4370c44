//! `kumo.memoize` with `allow_stale_reads` over Vault (a real OpenBao):
//! OpenBao is killed, users whose secret was read before still log in for
//! the stale window, and a user never looked up gets `454` (Vault
//! unreachable: a temporary failure, not counted).

use portcullis_integration_tests::{python, BaoServer, TestServer};

#[test]
fn memoized_vault_secrets_serve_while_openbao_is_down() {
    let mut bao = BaoServer::start();
    assert!(bao.put("smtp-auth/alice", r#"{"data":{"key":"alice-pass"}}"#));
    assert!(bao.put("smtp-auth/bob", r#"{"data":{"key":"bob-pass"}}"#));
    let server = TestServer::builder()
        .config(&format!(
            "policy = \"policy.lua\"\n[lua]\nvault_address = {:?}\nvault_token = \"{}\"\n",
            bao.address(),
            BaoServer::TOKEN
        ))
        .file(
            "policy.lua",
            r#"
local secret_of = kumo.memoize(function(user)
  return kumo.secrets.load { vault_mount = 'secret', vault_path = 'smtp-auth/' .. user }
end, { name = 'vault-secrets', ttl = 0, max_stale = '1 hour', allow_stale_reads = true,
       populate_timeout = '3 seconds' })

kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  return password == secret_of(authc)
end)
"#,
        )
        .start();
    let port = server.submission_port();
    python(
        r#"
        s = connect()
        login("alice", s, "alice", "alice-pass", "PLAIN")
        s.quit()
        "#,
        &[port],
    )
    .assert_reply("alice", "235 2.7.0");
    bao.kill();
    python(
        r#"
        s = connect()
        login("alice-stale", s, "alice", "alice-pass", "PLAIN")
        s.quit()
        s = connect()
        login("bob-new", s, "bob", "bob-pass", "PLAIN")
        s.quit()
        "#,
        &[port],
    )
    .assert_reply("alice-stale", "235 2.7.0")
    .assert_reply("bob-new", "454 4.7.0");
}

//! KumoMTA copies the connection metadata into each message: what the
//! AUTH hook set with `conn_meta:set_meta` reaches the spool JSON (under
//! `meta`), beside the facts portcullis presets there (`hostname`,
//! `reception_protocol`, the message's own `ESMTPSA`).

use portcullis_integration_tests::{swaks_plain, TestServer};

const POLICY: &str = r#"
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  conn_meta:set_meta('x_plan', 'gold')
  conn_meta:set_meta('seen_protocol', conn_meta:get_meta('reception_protocol'))
  conn_meta:set_meta('seen_hostname', conn_meta:get_meta('hostname'))
  return password == 'pw'
end)
"#;

#[test]
fn connection_metadata_set_at_auth_reaches_the_spooled_message() {
    let server = TestServer::builder()
        .config("policy = \"policy.lua\"\n")
        .file("policy.lua", POLICY)
        .start();
    swaks_plain(&server, "alice", "pw")
        .assert_contains("250 2.0.0")
        .assert_success(true);
    let message = server.single_message();
    let meta = &message.meta["meta"];
    assert_eq!(meta["x_plan"], "gold", "{:#}", message.meta);
    assert_eq!(meta["seen_protocol"], "ESMTPS", "{:#}", message.meta);
    assert_eq!(meta["seen_hostname"], "mx.test", "{:#}", message.meta);
    assert_eq!(meta["hostname"], "mx.test", "{:#}", message.meta);
    assert_eq!(meta["reception_protocol"], "ESMTPSA", "{:#}", message.meta);
    assert_eq!(meta["authn_id"], "alice", "{:#}", message.meta);
}

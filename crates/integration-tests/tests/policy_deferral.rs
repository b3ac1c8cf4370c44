//! A policy that defers and hangs up (`kumo.disconnect(421, …)`, what a
//! script does while its own backend is down) made no judgement on the
//! password: it is not counted as a failed guess, so an outage of the
//! script's backend does not get its users' addresses banned.

use portcullis_integration_tests::{python, TestServer};

const POLICY: &str = r#"
kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  if authc == 'outage' then
    kumo.disconnect(421, 'backend down, try later')
  end
  return password == 'right'
end)
"#;

#[test]
fn a_deferring_disconnect_is_not_counted_as_a_failed_guess() {
    let server = TestServer::builder()
        .config(
            "policy = \"policy.lua\"\n\
             [limits.auth]\nallow = []\nban_after = 2\nuser_max_failures = 100\n\
             delay_initial = \"0ms\"\ndelay_max = \"0ms\"\n",
        )
        .file("policy.lua", POLICY)
        .start();
    let out = python(
        r#"
        for i in range(4):
            s = connect()
            login(f"outage{i}", s, "outage", f"x{i}", "PLAIN")
        s = connect()
        login("after", s, "alice", "right", "PLAIN")
        "#,
        &[server.submission_port()],
    );
    for i in 0..4 {
        out.assert_reply(&format!("outage{i}"), "421");
    }
    out.assert_reply("after", "235");
}

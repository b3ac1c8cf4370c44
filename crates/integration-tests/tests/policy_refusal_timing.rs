//! A policy that refuses a login whose password was right (a blocked
//! account, a client address it does not like) must not answer faster
//! than a wrong password, or the speed of the refusal confirms the
//! password. The refusal is not counted as a guess.

use std::time::Duration;

use portcullis_integration_tests::{python, TestServer};

const POLICY: &str = r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  -- Called after our own check of a CRAM-MD5 proof (auth.verified).
  if auth.verified and auth.user == 'alice' then
    return portcullis.reject{ message = 'Account blocked' }
  end
  return true
end)
"#;

#[test]
fn a_policy_refusal_of_a_right_password_waits_like_a_wrong_one() {
    let server = TestServer::builder()
        .config(
            "policy = \"policy.lua\"\n\
             [limits.auth]\ndelay_initial = \"700ms\"\ndelay_max = \"700ms\"\n",
        )
        .file("policy.lua", POLICY)
        .start();
    let out = python(
        r#"
        import time
        s = connect()
        started = time.monotonic()
        login("right", s, "alice", "correct horse", "CRAM-MD5")
        print(f"took: {int((time.monotonic() - started) * 1000)}", flush=True)
        "#,
        &[server.submission_port()],
    );
    out.assert_reply("right", "535");
    let took: u64 = out.reply("took").trim().parse().expect("milliseconds");
    assert!(
        Duration::from_millis(took) >= Duration::from_millis(650),
        "refused in {took} ms"
    );
}

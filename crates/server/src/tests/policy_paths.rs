//! The auth service with a real Lua policy: the script deciding a
//! password AUTH (accept, reject and close, defer, error), a script
//! mechanism over several rounds, and its admission and record.

use std::net::IpAddr;

use super::harness::*;

const GENERAL: &str = r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  if auth.user == 'carol' and auth.password == 'pw' then
    return portcullis.accept{ user = 'carol@example.test', data = { addresses = { 'team@example.test' } } }
  elseif auth.user == 'mallory' then
    return portcullis.reject{ message = 'Go away', code = 535, enhanced = '5.7.1', disconnect = true }
  elseif auth.user == 'later' then
    return portcullis.defer{ message = 'Maintenance', disconnect = false }
  elseif auth.user == 'boom' then
    error('kaput')
  elseif auth.user == 'slow' then
    while true do end
  end
  return portcullis.reject{ message = 'no' }
end)
"#;

const OTP: &str = r#"
local codes = { dora = '424242' }
portcullis.mechanism('X-OTP', function(auth, conn)
  if auth.step == 1 then
    return portcullis.reply('Username:')
  elseif auth.step == 2 then
    conn.meta:set_meta('otp_user', auth.response)
    return portcullis.reply('Code:')
  end
  local user = conn.meta:get_meta('otp_user')
  if codes[user] ~= nil and codes[user] == auth.response then
    return portcullis.accept{ user = user }
  end
  return portcullis.reject{ message = 'Wrong code' }
end)
portcullis.mechanism('X-DOWN', function(auth, conn)
  return portcullis.defer{ message = 'Backend down', code = 421, enhanced = '4.3.0', disconnect = true }
end)
"#;

#[tokio::test(start_paused = true)]
async fn the_policy_accepts_and_its_user_data_extends_the_senders() {
    let server = TestServer::builder()
        .policy(GENERAL)
        .senders(&["example.test"])
        .build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("carol", "pw").await), "235 2.7.0");
    // `data.addresses` of the accept is part of the sender rule.
    assert_eq!(
        code(&c.cmd("MAIL FROM:<team@example.test>").await),
        "250 2.1.0"
    );
    c.cmd("RSET").await;
    assert_eq!(
        code(&c.cmd("MAIL FROM:<bob@example.test>").await),
        "553 5.7.1"
    );
}

#[tokio::test(start_paused = true)]
async fn the_policy_rejects_and_closes() {
    let server = TestServer::builder().policy(GENERAL).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    let reply = c.auth_plain("mallory", "x").await;
    assert!(reply.starts_with("535 5.7.1 Go away"), "{reply}");
    assert!(c.closed().await);
}

#[tokio::test(start_paused = true)]
async fn the_policy_defers_with_its_reply() {
    let server = TestServer::builder().policy(GENERAL).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    let reply = c.auth_plain("later", "x").await;
    assert!(reply.starts_with("454 4.7.0 Maintenance"), "{reply}");
    // The session goes on.
    assert_eq!(code(&c.cmd("NOOP").await), "250 2.0.0");
}

#[tokio::test(start_paused = true)]
async fn a_policy_error_answers_454_but_counts_as_a_failure() {
    let server = TestServer::builder()
        .policy(GENERAL)
        .limits(|l| l.ban_after = 2)
        .build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("boom", "x1").await), "454 4.7.0");
    // Counted: the second error reaches the ban.
    assert_eq!(code(&c.auth_plain("boom", "x2").await), "421 4.7.0");
}

#[tokio::test(start_paused = true)]
async fn a_policy_hook_that_runs_past_its_deadline_defers() {
    let server = TestServer::builder()
        .policy(GENERAL)
        .hook_timeout(std::time::Duration::from_millis(100))
        .build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("slow", "x").await), "454 4.7.0");
    assert_eq!(code(&c.cmd("NOOP").await), "250 2.0.0");
}

#[tokio::test(start_paused = true)]
async fn the_policy_decides_instead_of_the_store() {
    let server = TestServer::builder().policy(GENERAL).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    // alice is in the store, but the script owns PLAIN and says no.
    assert_eq!(code(&c.auth_plain("alice", "secret").await), "535 5.7.8");
    assert_eq!(server.store.lookups(), 0, "the store was not asked");
}

#[tokio::test(start_paused = true)]
async fn a_policy_without_auth_hooks_leaves_auth_to_the_store() {
    let script = "portcullis.on('smtp_server_message_received', function(msg, conn) end)";
    let server = TestServer::builder().policy(script).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("alice", "secret").await), "235 2.7.0");
}

#[tokio::test(start_paused = true)]
async fn a_script_mechanism_over_three_rounds() {
    let server = TestServer::builder().policy(OTP).build();
    let mut c = server.connect().await;
    assert!(c.ehlo().await.contains("X-OTP"));
    assert_eq!(
        c.cmd("AUTH X-OTP").await,
        format!("334 {}\r\n", b64("Username:"))
    );
    assert_eq!(
        c.cmd(&b64("dora")).await,
        format!("334 {}\r\n", b64("Code:"))
    );
    assert_eq!(code(&c.cmd(&b64("424242")).await), "235 2.7.0");
}

#[tokio::test(start_paused = true)]
async fn a_script_mechanism_rejects_with_its_reply() {
    let server = TestServer::builder().policy(OTP).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    c.cmd("AUTH X-OTP").await;
    c.cmd(&b64("dora")).await;
    let reply = c.cmd(&b64("000000")).await;
    assert!(reply.starts_with("535 5.7.8 Wrong code"), "{reply}");
}

#[tokio::test(start_paused = true)]
async fn a_banned_address_gets_421_before_a_script_mechanism_runs() {
    let server = TestServer::builder().policy(OTP).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    // Enforced on the AUTH line's read, before the script sees a round.
    server.ban(IpAddr::from(CLIENT)).await;
    let reply = c.cmd("AUTH X-OTP").await;
    assert_eq!(code(&reply), "421 4.7.0");
}

#[tokio::test(start_paused = true)]
async fn a_script_mechanism_that_defers_and_closes_is_not_counted() {
    // Before: a script mechanism's `defer{ disconnect = true }` (its
    // backend down) was counted as a failed guess, so an outage banned
    // the addresses it turned away. A password AUTH's was never counted.
    let server = TestServer::builder()
        .policy(OTP)
        .limits(|l| l.ban_after = 2)
        .build();
    for _ in 0..3 {
        let mut c = server.connect().await;
        c.ehlo().await;
        let reply = c.cmd("AUTH X-DOWN").await;
        assert!(reply.starts_with("421 4.3.0 Backend down"), "{reply}");
        assert!(c.closed().await);
    }
    // Not banned: a fourth connection is greeted.
    let mut c = server.connect().await;
    assert_eq!(code(&c.cmd("NOOP").await), "250 2.0.0");
}

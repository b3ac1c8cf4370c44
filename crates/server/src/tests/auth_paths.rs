//! The auth service's paths for a SASL exchange in an SMTP session:
//! accept, reject, defer (store down or stalled), the failure delay,
//! cool-down, bans during a session, authzid rules and the sender rule.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::harness::*;

#[tokio::test(start_paused = true)]
async fn the_right_password_is_accepted_without_a_delay() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.ehlo().await;
    let started = Instant::now();
    assert_eq!(code(&c.auth_plain("alice", "secret").await), "235 2.7.0");
    assert!(started.elapsed() < Duration::from_millis(100), "no delay");
    assert_eq!(
        code(&c.cmd("MAIL FROM:<a@example.test>").await),
        "250 2.1.0"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_is_rejected_after_the_failure_delay() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.ehlo().await;
    let started = Instant::now();
    assert_eq!(code(&c.auth_plain("alice", "wrong").await), "535 5.7.8");
    assert!(started.elapsed() >= Duration::from_secs(2), "delayed");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_user_is_rejected_like_a_wrong_password() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("nobody", "x").await), "535 5.7.8");
}

#[tokio::test(start_paused = true)]
async fn auth_login_over_two_rounds() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert!(c.cmd("AUTH LOGIN").await.starts_with("334 "));
    assert!(c.cmd(&b64("bob")).await.starts_with("334 "));
    assert_eq!(code(&c.cmd(&b64("hunter2")).await), "235 2.7.0");
}

#[tokio::test(start_paused = true)]
async fn a_store_that_errors_defers_and_the_attempts_are_not_counted() {
    let server = TestServer::builder()
        .limits(|l| {
            l.ban_after = 2;
            l.allow.clear();
        })
        .build();
    server.store.set_mode(STORE_FAILING);
    let mut c = server.connect().await;
    c.ehlo().await;
    for _ in 0..3 {
        assert_eq!(code(&c.auth_plain("alice", "secret").await), "454 4.7.0");
    }
    server.store.set_mode(STORE_UP);
    assert_eq!(code(&c.auth_plain("alice", "secret").await), "235 2.7.0");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_store_defers_at_the_store_timeout() {
    let server = TestServer::start();
    server.store.set_mode(STORE_STALLED);
    let mut c = server.connect().await;
    c.ehlo().await;
    c.write(&format!(
        "AUTH PLAIN {}\r\n",
        plain(None, "alice", "secret")
    ))
    .await;
    server.store.wait_stalled().await;
    // The stalled call holds a blocking thread, which keeps the paused
    // clock from moving on its own: move it past the store timeout.
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(code(&c.reply().await), "454 4.7.0");
    // Once it answers again, so do logins.
    server.release_store();
    server.store.set_mode(STORE_UP);
    assert_eq!(code(&c.auth_plain("alice", "secret").await), "235 2.7.0");
}

#[tokio::test(start_paused = true)]
async fn a_scram_exchange_gets_454_when_the_store_cannot_give_its_secrets() {
    let server = TestServer::builder()
        .session(|s| {
            s.mechanisms
                .insert(0, portcullis_sasl::Mechanism::ScramSha256)
        })
        .build();
    let mut c = server.connect().await;
    assert!(c.ehlo().await.contains("SCRAM-SHA-256"));
    let client_first = b64("n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL");
    server.store.set_mode(STORE_FAILING);
    let reply = c.cmd(&format!("AUTH SCRAM-SHA-256 {client_first}")).await;
    assert_eq!(code(&reply), "454 4.7.0");
    // With the store back, the exchange goes on to the server-first
    // message (fake secrets for a user without any: no user oracle).
    server.store.set_mode(STORE_UP);
    let reply = c.cmd(&format!("AUTH SCRAM-SHA-256 {client_first}")).await;
    assert!(reply.starts_with("334 "), "{reply}");
}

#[tokio::test(start_paused = true)]
async fn a_user_under_attack_cools_down_for_other_addresses() {
    let server = TestServer::builder()
        .limits(|l| {
            l.user_max_failures = 2;
            l.ban_after = 100;
        })
        .build();
    let mut attacker = server.connect().await;
    attacker.ehlo().await;
    // Different guesses: a wrong password repeated is counted once.
    for guess in ["guess1", "guess2"] {
        assert_eq!(
            code(&attacker.auth_plain("alice", guess).await),
            "535 5.7.8"
        );
    }
    let mut other = server.connect_from([192, 0, 2, 77].into()).await;
    other.ehlo().await;
    // Unchecked, even with the right password.
    let reply = other.auth_plain("alice", "secret").await;
    assert!(reply.starts_with("454 4.7."), "{reply}");
    // Another user is not affected.
    assert_eq!(code(&other.auth_plain("bob", "hunter2").await), "235 2.7.0");
}

#[tokio::test(start_paused = true)]
async fn the_failure_that_reaches_the_ban_gets_421_and_the_close() {
    let server = TestServer::builder().limits(|l| l.ban_after = 2).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("alice", "guess1").await), "535 5.7.8");
    assert_eq!(code(&c.auth_plain("alice", "guess2").await), "421 4.7.0");
    assert!(c.closed().await);
    // And the address stays out.
    let mut again = server.open_from(IpAddr::from(CLIENT));
    assert!(again.reply().await.starts_with("421 4.7.0"));
}

#[tokio::test(start_paused = true)]
async fn a_ban_made_by_another_connection_closes_an_open_session() {
    let server = TestServer::builder().limits(|l| l.ban_after = 2).build();
    let mut idle = server.connect().await;
    idle.ehlo().await;
    let mut guesser = server.connect().await;
    guesser.ehlo().await;
    guesser.auth_plain("alice", "guess1").await;
    assert_eq!(
        code(&guesser.auth_plain("alice", "guess2").await),
        "421 4.7.0"
    );
    assert_eq!(code(&idle.cmd("NOOP").await), "421 4.7.0");
    assert!(idle.closed().await);
}

#[tokio::test(start_paused = true)]
async fn a_ban_added_by_the_operator_mid_session_is_enforced_on_the_next_command() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.ehlo().await;
    server.ban(IpAddr::from(CLIENT)).await;
    assert_eq!(code(&c.cmd("NOOP").await), "421 4.7.0");
    assert!(c.closed().await);
}

#[tokio::test(start_paused = true)]
async fn an_authzid_the_store_allows_is_the_identity() {
    let server = TestServer::builder().senders(&["example.test"]).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    let ir = plain(Some("postmaster@example.test"), "alice", "secret");
    assert_eq!(code(&c.cmd(&format!("AUTH PLAIN {ir}")).await), "235 2.7.0");
    // The authz id's address is owned too.
    let reply = c.cmd("MAIL FROM:<postmaster@example.test>").await;
    assert_eq!(code(&reply), "250 2.1.0");
}

#[tokio::test(start_paused = true)]
async fn an_authzid_the_store_does_not_allow_is_refused() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.ehlo().await;
    let ir = plain(Some("alice"), "bob", "hunter2");
    assert_eq!(code(&c.cmd(&format!("AUTH PLAIN {ir}")).await), "535 5.7.8");
}

#[tokio::test(start_paused = true)]
async fn after_auth_the_sender_rule_allows_owned_addresses_only() {
    let server = TestServer::builder().senders(&["example.test"]).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("alice", "secret").await), "235 2.7.0");
    assert_eq!(
        code(&c.cmd("MAIL FROM:<alice@example.test>").await),
        "250 2.1.0"
    );
    c.cmd("RSET").await;
    // `may_act_as = ["@alias.test"]`: the whole domain.
    assert_eq!(
        code(&c.cmd("MAIL FROM:<any@alias.test>").await),
        "250 2.1.0"
    );
    c.cmd("RSET").await;
    let refused = c.cmd("MAIL FROM:<bob@example.test>").await;
    assert!(refused.starts_with("553 5.7.1"), "{refused}");
}

#[tokio::test(start_paused = true)]
async fn the_sender_rule_fails_closed_when_the_alias_lookup_fails() {
    let server = TestServer::builder().senders(&["example.test"]).build();
    // The check and the alias lookup are two store calls: the store fails
    // once the first has answered.
    let mut d = server.connect().await;
    d.ehlo().await;
    let lookups = server.store.lookups();
    d.write(&format!(
        "AUTH PLAIN {}\r\n",
        plain(None, "alice", "secret")
    ))
    .await;
    while server.store.lookups() == lookups {
        tokio::task::yield_now().await;
    }
    server.store.set_mode(STORE_FAILING);
    assert_eq!(code(&d.reply().await), "235 2.7.0");
    // Only the addresses derived from the name: not the aliases.
    assert_eq!(
        code(&d.cmd("MAIL FROM:<alice@example.test>").await),
        "250 2.1.0"
    );
    d.cmd("RSET").await;
    let refused = d.cmd("MAIL FROM:<any@alias.test>").await;
    assert!(refused.starts_with("553 5.7.1"), "{refused}");
}

#[tokio::test(start_paused = true)]
async fn too_many_failures_on_one_connection_close_it() {
    let server = TestServer::builder()
        .session(|s| s.max_auth_failures = 2)
        .build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("alice", "x").await), "535 5.7.8");
    assert_eq!(code(&c.auth_plain("alice", "y").await), "535 5.7.8");
    assert_eq!(code(&c.reply().await), "421 4.7.0");
    assert!(c.closed().await);
}

#[tokio::test(start_paused = true)]
async fn a_second_auth_after_success_is_refused_without_asking_the_store() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.ehlo().await;
    c.auth_plain("alice", "secret").await;
    let lookups = server.store.lookups();
    assert_eq!(&c.auth_plain("bob", "hunter2").await[..3], "503");
    assert_eq!(server.store.lookups(), lookups);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_exchange_is_not_a_failure() {
    let server = TestServer::builder()
        .session(|s| s.max_auth_failures = 1)
        .build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert!(c.cmd("AUTH LOGIN").await.starts_with("334 "));
    assert_eq!(&c.cmd("*").await[..3], "501");
    assert_eq!(code(&c.auth_plain("alice", "secret").await), "235 2.7.0");
}

//! XCLIENT through the auth service: a trusted proxy's LOGIN (with and
//! without a policy reviewing it), the client it names counted by the
//! defence, typed once whether IPv4 or `IPV6:`.

use std::net::IpAddr;

use super::harness::*;

const PROXY: [u8; 4] = [10, 0, 0, 5];

const REVIEW: &str = r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  if auth.mechanism == 'XCLIENT' and auth.user == 'eve' then
    return portcullis.reject{ message = 'not here' }
  elseif auth.mechanism == 'XCLIENT' and auth.user == 'later' then
    return portcullis.defer{ message = 'Try later' }
  elseif auth.mechanism == 'XCLIENT' and auth.user == 'gone' then
    return portcullis.reject{ message = 'Bye', code = 421, enhanced = '4.7.0', disconnect = true }
  elseif auth.mechanism == 'XCLIENT' then
    return portcullis.accept{ user = auth.user }
  end
  return portcullis.reject{ message = 'no' }
end)
"#;

async fn proxied(server: &TestServer) -> Client {
    let mut c = server.connect_from(IpAddr::from(PROXY)).await;
    assert!(c.ehlo().await.contains("XCLIENT"));
    c
}

#[tokio::test(start_paused = true)]
async fn a_trusted_proxy_logs_a_user_in() {
    let server = TestServer::builder().xclient_from_10().build();
    let mut c = proxied(&server).await;
    assert_eq!(&c.cmd("XCLIENT LOGIN=alice").await[..4], "220 ");
    c.ehlo().await;
    // Authenticated: a second AUTH is refused.
    assert_eq!(&c.auth_plain("bob", "hunter2").await[..3], "503");
}

#[tokio::test(start_paused = true)]
async fn an_untrusted_client_may_not_send_xclient() {
    let server = TestServer::builder().xclient_from_10().build();
    let mut c = server.connect().await;
    c.ehlo().await;
    assert_eq!(code(&c.cmd("XCLIENT LOGIN=alice").await), "550 5.7.0");
}

#[tokio::test(start_paused = true)]
async fn the_policy_refuses_a_login_the_proxy_vouched_for() {
    let server = TestServer::builder()
        .xclient_from_10()
        .policy(REVIEW)
        .build();
    let mut c = proxied(&server).await;
    // Whatever the script's text, the proxy is told `550 5.7.0`.
    assert_eq!(code(&c.cmd("XCLIENT LOGIN=eve").await), "550 5.7.0");
    let reply = c.cmd("XCLIENT LOGIN=later").await;
    assert!(reply.starts_with("454 4.7.0 Try later"), "{reply}");
    assert_eq!(&c.cmd("XCLIENT LOGIN=frank").await[..4], "220 ");
}

#[tokio::test(start_paused = true)]
async fn the_policy_closes_a_proxy_login() {
    let server = TestServer::builder()
        .xclient_from_10()
        .policy(REVIEW)
        .build();
    let mut c = proxied(&server).await;
    let reply = c.cmd("XCLIENT LOGIN=gone").await;
    assert!(reply.starts_with("421 4.7.0 Bye"), "{reply}");
    assert!(c.closed().await);
}

#[tokio::test(start_paused = true)]
async fn a_proxy_login_gets_the_users_sender_rule() {
    let server = TestServer::builder()
        .xclient_from_10()
        .senders(&["example.test"])
        .build();
    let mut c = proxied(&server).await;
    c.cmd("XCLIENT LOGIN=alice").await;
    c.ehlo().await;
    assert_eq!(
        code(&c.cmd("MAIL FROM:<alice@example.test>").await),
        "250 2.1.0"
    );
    c.cmd("RSET").await;
    assert_eq!(
        code(&c.cmd("MAIL FROM:<bob@example.test>").await),
        "553 5.7.1"
    );
}

#[tokio::test(start_paused = true)]
async fn the_client_a_proxy_names_is_the_one_counted() {
    let server = TestServer::builder().xclient_from_10().build();
    let mut c = proxied(&server).await;
    assert_eq!(&c.cmd("XCLIENT ADDR=192.0.2.66").await[..4], "220 ");
    c.ehlo().await;
    server.ban([192, 0, 2, 66].into()).await;
    assert_eq!(code(&c.auth_plain("alice", "secret").await), "421 4.7.0");
}

#[tokio::test(start_paused = true)]
async fn an_ipv6_client_named_by_a_proxy_is_counted_under_its_address() {
    let server = TestServer::builder().xclient_from_10().build();
    let mut c = proxied(&server).await;
    assert_eq!(&c.cmd("XCLIENT ADDR=IPV6:2001:db8::66").await[..4], "220 ");
    c.ehlo().await;
    let ip: IpAddr = "2001:db8::66".parse().unwrap();
    server.ban(ip).await;
    assert_eq!(code(&c.cmd("NOOP").await), "421 4.7.0");
}

#[tokio::test(start_paused = true)]
async fn failures_behind_a_proxy_ban_the_client_not_the_proxy() {
    let server = TestServer::builder()
        .xclient_from_10()
        .limits(|l| l.ban_after = 1)
        .build();
    let mut c = proxied(&server).await;
    c.cmd("XCLIENT ADDR=192.0.2.66").await;
    c.ehlo().await;
    assert_eq!(code(&c.auth_plain("alice", "guess").await), "421 4.7.0");
    // The proxy itself is still welcome.
    let mut other = proxied(&server).await;
    assert_eq!(code(&other.cmd("NOOP").await), "250 2.0.0");
}

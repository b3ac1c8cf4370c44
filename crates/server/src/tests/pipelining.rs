//! Pipelined input around the auth service's answers: what follows an
//! AUTH or an XCLIENT LOGIN in the same packet is read only once the
//! verdict (and the sender rule it brings) is in the session.

use super::harness::*;

#[tokio::test(start_paused = true)]
async fn a_mail_pipelined_after_auth_meets_the_sender_rule() {
    let server = TestServer::builder().senders(&["example.test"]).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    let auth = plain(None, "alice", "secret");
    c.write(&format!(
        "AUTH PLAIN {auth}\r\nMAIL FROM:<bob@example.test>\r\nMAIL FROM:<alice@example.test>\r\n"
    ))
    .await;
    assert_eq!(code(&c.reply().await), "235 2.7.0");
    assert_eq!(code(&c.reply().await), "553 5.7.1");
    assert_eq!(code(&c.reply().await), "250 2.1.0");
}

#[tokio::test(start_paused = true)]
async fn a_mail_pipelined_after_a_failed_auth_is_refused_when_auth_is_required() {
    let server = TestServer::builder()
        .session(|s| s.auth = portcullis_session::AuthPolicy::Required)
        .build();
    let mut c = server.connect().await;
    c.ehlo().await;
    let auth = plain(None, "alice", "wrong");
    c.write(&format!(
        "AUTH PLAIN {auth}\r\nMAIL FROM:<alice@example.test>\r\n"
    ))
    .await;
    assert_eq!(code(&c.reply().await), "535 5.7.8");
    assert_eq!(&c.reply().await[..3], "530");
}

#[tokio::test(start_paused = true)]
async fn commands_pipelined_after_a_proxy_login_run_as_that_user() {
    let server = TestServer::builder()
        .xclient_from_10()
        .senders(&["example.test"])
        .build();
    let mut c = server.connect_from([10, 0, 0, 5].into()).await;
    c.ehlo().await;
    c.write("XCLIENT LOGIN=alice\r\nEHLO proxy.test\r\nMAIL FROM:<alice@example.test>\r\n")
        .await;
    assert_eq!(&c.reply().await[..4], "220 ");
    assert!(c.reply().await.starts_with("250-mx.test"));
    assert_eq!(code(&c.reply().await), "250 2.1.0");
}

#[tokio::test(start_paused = true)]
async fn input_pipelined_after_the_banning_failure_is_not_read() {
    let server = TestServer::builder().limits(|l| l.ban_after = 1).build();
    let mut c = server.connect().await;
    c.ehlo().await;
    let auth = plain(None, "alice", "wrong");
    c.write(&format!("AUTH PLAIN {auth}\r\nNOOP\r\nNOOP\r\n"))
        .await;
    assert_eq!(code(&c.reply().await), "421 4.7.0");
    assert!(c.closed().await, "nothing after the 421");
}

#[tokio::test(start_paused = true)]
async fn a_whole_message_pipelined_after_auth_is_spooled() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.ehlo().await;
    let auth = plain(None, "bob", "hunter2");
    c.write(&format!(
        "AUTH PLAIN {auth}\r\nMAIL FROM:<bob@example.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n"
    ))
    .await;
    assert_eq!(code(&c.reply().await), "235 2.7.0");
    assert_eq!(code(&c.reply().await), "250 2.1.0");
    assert_eq!(code(&c.reply().await), "250 2.1.5");
    assert_eq!(&c.reply().await[..3], "354");
    c.write("Subject: hi\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(&c.reply().await[..3], "250");
}

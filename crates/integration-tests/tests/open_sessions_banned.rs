//! A ban reaches the sessions already open from the banned address: each
//! gets `421` on its next command, and the right password from one of them
//! is not accepted. Before, every other open connection kept one more
//! verified guess per failure reply, and the right password got `235`.

use portcullis_integration_tests::{RawClient, TestServer, ALICE};

/// Loopback counts (empty allow-list); short delays; bans last the test.
const DEFENCE: &str = r#"
[limits]
max_connection_rate = 1000
max_auth_failures = 50
[limits.auth]
allow = []
delay_initial = "10ms"
delay_max = "20ms"
user_max_failures = 100
ban_after = 4
ban_duration = "1h"
"#;

fn open(port: u16) -> RawClient {
    let (mut client, greeting) = RawClient::connect_tls(port);
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(client.cmd("EHLO client.test").code, 250);
    client
}

#[test]
fn open_sessions_of_a_banned_address_get_421_on_their_next_command() {
    let server = TestServer::builder()
        .config(DEFENCE)
        .log_filter("info")
        .start();
    let port = server.implicit_port();
    let mut sessions: Vec<RawClient> = (0..5).map(|_| open(port)).collect();
    // One connection guesses until the address is banned.
    let mut replies = Vec::new();
    for i in 0..10 {
        let reply = sessions[0].auth_plain(ALICE.0, &format!("guess-{i}"));
        replies.push(reply.code);
        if reply.code == 421 {
            break;
        }
    }
    assert_eq!(replies, [535, 535, 535, 421], "banned at the 4th failure");
    // Every other open session: 421 on its next command, whatever it is.
    let noop = sessions[1].cmd("NOOP");
    assert_eq!(noop.code, 421, "{noop:?}");
    assert!(noop.lines[0].starts_with("4.7.0"), "{noop:?}");
    let right = sessions[2].auth_plain(ALICE.0, ALICE.1);
    assert_eq!(
        right.code, 421,
        "right password from a banned address: {right:?}"
    );
    let ehlo = sessions[3].cmd("EHLO client.test");
    assert_eq!(ehlo.code, 421, "{ehlo:?}");
    for (i, session) in sessions.iter_mut().enumerate().skip(1).take(3) {
        assert!(session.is_closed(), "session {i} closed after 421");
    }
    let last = sessions[4].auth_plain(ALICE.0, ALICE.1);
    assert_eq!(last.code, 421, "{last:?}");
    assert!(
        !server.log().contains("result=\"accepted\""),
        "no login accepted from the banned address:\n{}",
        server.log()
    );
}

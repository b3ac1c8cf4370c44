//! A ban reaches the sessions already open from the banned address: each
//! gets `421` on its next command, and the right password from one of them
//! is not accepted. Before, every other open connection kept one more
//! verified guess per failure reply, and the right password got `235`.
//! The same holds for a user's cool-down under guesses in parallel.

use portcullis_integration_tests::{python, RawClient, TestServer, ALICE};

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

/// Eight addresses guess one user at the same instant: only
/// `user_max_failures` guesses are checked (535); the rest get 454
/// unchecked, since counting them all as failures would already start the
/// cool-down. Before, every guess in flight was checked.
#[test]
fn parallel_guesses_for_one_user_get_no_more_checks_than_the_cool_down_allows() {
    let server = TestServer::start(
        "[limits]\nmax_connection_rate = 1000\n[limits.auth]\nallow = []\n\
         delay_initial = \"10ms\"\ndelay_max = \"20ms\"\nuser_max_failures = 3\n\
         user_cooldown = \"1h\"\nban_after = 100\n",
    );
    let out = python(
        r#"
        import threading
        N = 8
        ready = threading.Barrier(N)
        def guess(i):
            s = smtplib.SMTP_SSL("127.0.0.1", PORT, local_hostname="client.test", timeout=30,
                                 context=ctx(), source_address=(f"127.0.0.{i + 2}", 0))
            s.ehlo()
            token = b64(f"\0alice\0guess-{i}")
            ready.wait()
            show(f"g{i}", s.docmd("AUTH", "PLAIN " + token))
        threads = [threading.Thread(target=guess, args=(i,)) for i in range(N)]
        for t in threads: t.start()
        for t in threads: t.join()
        "#,
        &[server.implicit_port()],
    );
    let codes: Vec<String> = (0..8)
        .map(|i| out.reply(&format!("g{i}"))[..3].to_string())
        .collect();
    let checked = codes.iter().filter(|c| *c == "535").count();
    let held_back = codes.iter().filter(|c| *c == "454").count();
    assert_eq!(
        (checked, held_back),
        (3, 5),
        "{codes:?}\n{}",
        out.transcript()
    );
}

//! Many workers of one sender logging in with the same credentials at the
//! same moment (a SaaS restarting its senders): more attempts in flight
//! than `ban_after` and `user_max_failures` must all be checked and
//! accepted. Attempts in flight are held back only until they are counted,
//! so a burst of guesses still meets the ban (tested in
//! open_sessions_banned.rs).

use portcullis_integration_tests::{RawClient, TestServer, ALICE};

#[test]
fn a_burst_of_right_passwords_from_one_address_all_get_in() {
    let server = TestServer::builder()
        .config(
            "[limits]\nmax_connection_rate = 1000\n\
             [limits.auth]\nallow = []\nban_after = 3\nuser_max_failures = 3\n\
             delay_initial = \"0ms\"\ndelay_max = \"0ms\"\n",
        )
        .start();
    let port = server.implicit_port();
    let workers: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut client, greeting) = RawClient::connect_tls(port);
                assert_eq!(greeting.code, 220);
                client.cmd("EHLO worker.test");
                client.auth_plain(ALICE.0, ALICE.1).first_line()
            })
        })
        .collect();
    let replies: Vec<String> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    assert!(
        replies.iter().all(|r| r.starts_with("235")),
        "{replies:?}\n{}",
        server.log()
    );
}

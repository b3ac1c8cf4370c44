//! A burst of first logins (every user cold, as after a restart) larger
//! than the hash slots: the logins wait for a slot instead of getting
//! `454`, and a login that waits is not taken for a stalled credential
//! store. Seen from a real client (Python smtplib, one thread per user,
//! all sending AUTH at the same moment) against the real server.

use portcullis_integration_tests::{python, TestServer};

/// Each thread connects (STARTTLS), waits for the others, then sends
/// AUTH PLAIN as its own user; prints `login.N: CODE ...` per user.
const BURST: &str = r#"
import threading
users = int(sys.argv[2])
ready = threading.Barrier(users)
def one(n):
    s = connect()
    ready.wait()
    login(f"login.{n}", s, f"u{n}", f"pw-{n}", "PLAIN")
    try:
        s.quit()
    except Exception:
        pass
threads = [threading.Thread(target=one, args=(n,)) for n in range(1, users + 1)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"#;

fn users(count: usize) -> Vec<(String, String)> {
    (1..=count)
        .map(|n| (format!("u{n}"), format!("pw-{n}")))
        .collect()
}

/// Starts a server with `count` users and `extra` config, runs the burst,
/// and returns the reply code of each user's AUTH.
fn burst(count: usize, extra: &str) -> (TestServer, Vec<u16>) {
    let users = users(count);
    let refs: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    let server = TestServer::builder().config(extra).users(&refs).start();
    let port = server.submission_port();
    let out = python(BURST, &[port, u16::try_from(count).expect("few users")]);
    let codes = (1..=count)
        .map(|n| {
            out.reply(&format!("login.{n}"))
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("no AUTH reply for u{n}\n{}", out.transcript()))
        })
        .collect();
    (server, codes)
}

#[test]
fn a_burst_of_cold_logins_beyond_the_hash_slots_all_succeed() {
    let (server, codes) = burst(6, "[auth]\nmax_concurrent_verifications = 1\n");
    assert!(
        codes.iter().all(|&code| code == 235),
        "every login waits for the one hash slot: {codes:?}\n{}",
        server.log()
    );
}

#[test]
fn a_login_waiting_for_a_hash_slot_is_not_a_stalled_store() {
    // Twelve hashes one after the other take longer than the store
    // timeout; the store itself answers at once.
    let (server, codes) = burst(
        12,
        "[users]\ntimeout = \"250ms\"\n\n[auth]\nmax_concurrent_verifications = 1\n",
    );
    let log = server.log();
    assert!(
        codes.iter().all(|&code| code == 235),
        "waiting for a slot is not a store timeout: {codes:?}\n{log}"
    );
    assert!(
        !log.contains("credential store stalled"),
        "the store never stalled:\n{log}"
    );
}

//! A PostgreSQL that hangs (its processes stopped with SIGSTOP, so
//! connections stay open and nothing answers): logins are answered
//! `454 4.7.0` within the store timeout instead of waiting out the stall,
//! and logins work again as soon as the database does.

use std::time::{Duration, Instant};

use portcullis_integration_tests::{python, PostgresServer, TestServer};

const LOGIN: &str = r#"
s = connect()
login("right", s, "alice", "correct horse", "PLAIN")
"#;

#[test]
fn a_stalled_postgres_gets_454_within_the_timeout_and_recovers() {
    let mut pg = PostgresServer::start().expect("PostgreSQL (apt-get install postgresql)");
    let server = TestServer::builder()
        .config(&format!(
            "[users]\nbackend = \"postgres\"\nurl = \"{}\"\ntimeout = \"1s\"\n",
            pg.url()
        ))
        .start();
    python(LOGIN, &[server.submission_port()]).assert_reply("right", "235 2.7.0");

    pg.pause();
    for _ in 0..3 {
        let started = Instant::now();
        python(LOGIN, &[server.submission_port()]).assert_reply("right", "454 4.7.0");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "a login waited {took:?} for a stalled database"
        );
    }
    assert!(
        server.log().contains("credential store stalled"),
        "{}",
        server.log()
    );

    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = python(LOGIN, &[server.submission_port()]);
        if out.reply("right").starts_with("235") {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.log().contains("answers again"), "{}", server.log());
}

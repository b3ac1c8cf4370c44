//! Redis that goes away and comes back, with traffic during the outage:
//! the server counts locally while it is down, says once when it is back,
//! and shares counts and bans again (seen through `portcullis ban list`,
//! which reads Redis).

use std::time::{Duration, Instant};

use portcullis_integration_tests::{RawClient, RedisServer, TestServer, ALICE};

/// One AUTH PLAIN over implicit TLS; the reply code.
fn login(server: &TestServer, password: &str) -> u16 {
    let (mut client, greeting) = RawClient::connect_tls(server.implicit_port());
    if greeting.code != 220 {
        return greeting.code;
    }
    client.cmd("EHLO client.test");
    client.auth_plain(ALICE.0, password).code
}

/// Waits (a few seconds at most) until `/metrics` has the sample line.
fn wait_for_gauge(server: &TestServer, line: &str) {
    let url = format!("http://127.0.0.1:{}/metrics", server.port("admin"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = std::process::Command::new("curl")
            .args(["-s", &url])
            .output()
            .expect("curl");
        let metrics = String::from_utf8_lossy(&out.stdout).into_owned();
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "no `{line}` in:\n{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn redis_that_comes_back_after_an_outage_with_traffic_is_used_again() {
    let mut redis = RedisServer::start().expect("redis-server (apt-get install redis-server)");
    let config = format!(
        "[limits]\nbackend = \"{}\"\nmax_connection_rate = 10000\n\
         [limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n\
         ban_after = 4\nuser_max_failures = 100\n\
         [admin]\naddress = \"127.0.0.1:{{port:admin}}\"\n",
        redis.url()
    );
    let server = TestServer::builder().config(&config).start();
    assert_eq!(login(&server, ALICE.1), 235);

    redis.kill();
    assert_eq!(login(&server, "wrong during the outage"), 535);
    assert!(
        server.log().contains("counting locally"),
        "{}",
        server.log()
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.log().contains("is back") {
        assert!(
            Instant::now() < deadline,
            "Redis is back but the server never used it again:\n{}",
            server.log()
        );
        assert_eq!(login(&server, ALICE.1), 235);
        std::thread::sleep(Duration::from_millis(200));
    }

    wait_for_gauge(&server, "portcullis_limits_backend_up 1");

    // Shared again: failures now counted in Redis end in a ban stored there.
    // (Distinct guesses: the same wrong password repeated is not counted again.)
    for n in 0..4 {
        login(&server, &format!("wrong after the outage {n}"));
    }
    let out = server.cli(&["ban", "list"]).output().expect("ban list");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("127.0.0.1"), "{out:?}\n{}", server.log());
}

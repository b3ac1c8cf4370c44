//! The brute-force defence seen from clients: a bounded guessing loop
//! against one server. Client addresses are distinct loopback addresses
//! (127.0.0.2, .3, …: Linux routes all of 127/8 to `lo`), bound with
//! Python's `source_address`; the allow-list is emptied so loopback counts.

use portcullis_integration_tests::{python, wait_until, RedisServer, TestServer};

/// Small delays so the test is quick; the cool-down and ban are long
/// enough not to end during the test.
const DEFENCE: &str = r#"
[limits]
max_connection_rate = 1000
[limits.auth]
allow = []
delay_initial = "40ms"
delay_max = "160ms"
user_max_failures = 4
user_cooldown = "1h"
ban_after = 6
ban_duration = "1h"
"#;

/// `attempt(label, source, user, password)`: a fresh connection from
/// `source`, one AUTH PLAIN, QUIT; prints the greeting's code when it is
/// refused.
const ATTEMPT: &str = r#"
def attempt(label, source, user, password):
    try:
        s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=15,
                         source_address=(source, 0))
    except smtplib.SMTPConnectError as e:
        show(label, (e.smtp_code, e.smtp_error))
        return
    s.ehlo(); s.starttls(context=ctx()); s.ehlo()
    login(label, s, user, password, "PLAIN")
    try:
        s.quit()
    except Exception:
        pass
"#;

fn script(body: &str) -> String {
    format!("{ATTEMPT}\n{}", textwrap(body))
}

/// Strips the common indentation of a raw-string script body.
fn textwrap(body: &str) -> String {
    let indent = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.lines()
        .map(|l| l.get(indent..).unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn guesser_is_delayed_cooled_down_and_banned_while_the_real_user_gets_in() {
    let server = TestServer::builder()
        .config(DEFENCE)
        .log_filter("info,portcullis_server::defence=debug")
        .start();
    let port = server.submission_port();
    // The real user logs in from home, then a guesser goes for them.
    let out = python(
        &script(
            r#"
            attempt("home", "127.0.0.2", "alice", "correct horse")
            for i in range(4):
                attempt(f"guess{i}", "127.0.0.3", "alice", f"guess-{i}")
            attempt("cooling", "127.0.0.3", "alice", "guess-x")
            attempt("spray0", "127.0.0.3", "bob", "spray-0")
            attempt("spray1", "127.0.0.3", "bob", "spray-1")
            attempt("after-ban", "127.0.0.3", "bob", "spray-2")
            attempt("home-again", "127.0.0.2", "alice", "correct horse")
            attempt("stranger", "127.0.0.4", "alice", "correct horse")
            "#,
        ),
        &[port],
    );
    out.assert_reply("home", "235 2.7.0");
    for i in 0..4 {
        out.assert_reply(&format!("guess{i}"), "535 5.7.8");
    }
    // Four failures for alice: her cool-down, unchecked 454, for strangers.
    out.assert_reply("cooling", "454 4.7.0")
        .assert_reply("spray0", "535 5.7.8")
        // The sixth failure from the address bans it, on the spot ...
        .assert_reply("spray1", "421 4.7.0")
        // ... and at the greeting from then on.
        .assert_reply("after-ban", "421 4.7.0")
        // Alice's usual address is spared the cool-down; a new one is not.
        .assert_reply("home-again", "235 2.7.0")
        .assert_reply("stranger", "454 4.7.0");

    // The delays grew as configured: 40, 80, 160 ms, then capped.
    let log = server.log();
    let delays: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("auth: failure delay") && l.contains("127.0.0.3"))
        .filter_map(|l| l.split("delay_ms=").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(delays, ["40", "80", "160", "160", "160", "160"], "{log}");

    // The CLI sees the ban, and lifting it lets the address in again.
    let list = server.cli(&["ban", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.status.success(), "{list:?}");
    assert!(
        listed.contains("127.0.0.3") && listed.contains("6 failed logins"),
        "{listed}"
    );
    let del = server.cli(&["ban", "del", "127.0.0.3"]).output().unwrap();
    assert!(del.status.success(), "{del:?}");
    let out = python(
        &script(
            r#"
            import time
            for i in range(50):
                try:
                    s = smtplib.SMTP("127.0.0.1", PORT, timeout=15, source_address=("127.0.0.3", 0))
                    show("lifted", (220, "greeting"))
                    s.quit()
                    break
                except smtplib.SMTPConnectError:
                    time.sleep(0.1)
            "#,
        ),
        &[port],
    );
    out.assert_reply("lifted", "220");
}

#[test]
fn a_stale_password_repeated_is_slowed_but_never_banned() {
    let server = TestServer::builder().config(DEFENCE).start();
    let out = python(
        &script(
            r#"
            for i in range(10):
                attempt(f"stale{i}", "127.0.0.5", "bob", "last-years-password")
            attempt("right", "127.0.0.5", "bob", "battery staple")
            "#,
        ),
        &[server.submission_port()],
    );
    for i in 0..10 {
        out.assert_reply(&format!("stale{i}"), "535 5.7.8");
    }
    out.assert_reply("right", "235 2.7.0");
    let log = server.log();
    assert!(log.contains("same wrong password repeated"), "{log}");
    assert!(!log.contains("last-years-password"), "password in the log");
}

#[test]
fn manual_ban_refuses_at_greeting_and_allow_list_wins() {
    let server = TestServer::builder()
        .config("[limits.auth]\nallow = [\"127.0.0.7\"]\n")
        .start();
    for ip in ["127.0.0.6", "127.0.0.7"] {
        let added = server
            .cli(&["ban", "add", ip, "--duration", "1h"])
            .output()
            .unwrap();
        assert!(added.status.success(), "{added:?}");
    }
    // The server reloads the ban file when it changes, and says so.
    wait_until(
        &server,
        "the server to reload both bans",
        std::time::Duration::from_secs(30),
        || server.log().contains("ban file reloaded bans=2"),
    );
    let out = python(
        &script(
            r#"
            attempt("banned", "127.0.0.6", "alice", "correct horse")
            attempt("allowed", "127.0.0.7", "alice", "correct horse")
            "#,
        ),
        &[server.submission_port()],
    );
    out.assert_reply("banned", "421 4.7.0")
        .assert_reply("allowed", "235 2.7.0");
}

#[test]
fn connections_per_address_and_invalid_commands_are_limited() {
    let server = TestServer::builder()
        .config("[limits]\nmax_connections_per_address = 2\nmax_invalid_commands = 2\n[limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n")
        .start();
    let out = python(
        &script(
            r#"
            def open_from(source):
                return smtplib.SMTP("127.0.0.1", PORT, timeout=15, source_address=(source, 0))
            a, b = open_from("127.0.0.8"), open_from("127.0.0.8")
            try:
                open_from("127.0.0.8")
                show("third", (220, "admitted"))
            except smtplib.SMTPConnectError as e:
                show("third", (e.smtp_code, e.smtp_error))
            other = open_from("127.0.0.9")
            show("other", (220, "admitted"))
            for i in range(3):
                show(f"bad{i}", other.docmd("FOO"))
            a.quit()
            "#,
        ),
        &[server.submission_port()],
    );
    out.assert_reply("third", "421 4.7.0")
        .assert_reply("other", "220")
        .assert_reply("bad0", "500")
        .assert_reply("bad1", "500")
        .assert_reply("bad2", "421 4.7.0");
}

/// Two servers sharing one Redis: a ban earned on one is enforced by the
/// other, `portcullis ban` sees and lifts it there, and when Redis dies
/// logins go on (counted locally).
#[test]
fn two_servers_share_bans_through_redis_and_survive_its_death() {
    let mut redis = RedisServer::start()
        .expect("redis-server is not installed: apt-get install -y redis-server");
    let config = format!(
        "[limits]\nbackend = \"{}\"\nmax_connection_rate = 1000\n\
         [limits.auth]\nallow = []\ndelay_initial = \"10ms\"\ndelay_max = \"10ms\"\n\
         ban_after = 3\nuser_max_failures = 100\n",
        redis.url()
    );
    let one = TestServer::builder().config(&config).start();
    let two = TestServer::builder().config(&config).start();
    let ports = [one.submission_port(), two.submission_port()];
    // Two failures on the first server, the third on the second: banned
    // there, and the first refuses the address at the greeting.
    let out = python(
        &script(
            r#"
            PORT = PORTS[0]
            attempt("one-a", "127.0.0.3", "alice", "guess-a")
            attempt("one-b", "127.0.0.3", "bob", "guess-b")
            PORT = PORTS[1]
            attempt("two-c", "127.0.0.3", "alice", "guess-c")
            PORT = PORTS[0]
            attempt("one-after", "127.0.0.3", "alice", "correct horse")
            attempt("one-other", "127.0.0.2", "alice", "correct horse")
            "#,
        ),
        &ports,
    );
    out.assert_reply("one-a", "535")
        .assert_reply("one-b", "535")
        .assert_reply("two-c", "421 4.7.0")
        .assert_reply("one-after", "421 4.7.0")
        .assert_reply("one-other", "235");

    let list = one.cli(&["ban", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(listed.contains("127.0.0.3"), "{list:?}");
    let del = two.cli(&["ban", "del", "127.0.0.3"]).output().unwrap();
    assert!(del.status.success(), "{del:?}");

    redis.kill();
    let out = python(
        &script(
            r#"
            PORT = PORTS[0]
            attempt("lifted", "127.0.0.3", "alice", "correct horse")
            attempt("down-wrong", "127.0.0.5", "alice", "nope")
            attempt("down-right", "127.0.0.5", "alice", "correct horse")
            PORT = PORTS[1]
            attempt("down-two", "127.0.0.6", "bob", "battery staple")
            "#,
        ),
        &ports,
    );
    out.assert_reply("lifted", "235")
        .assert_reply("down-wrong", "535")
        .assert_reply("down-right", "235")
        .assert_reply("down-two", "235");
    assert!(
        one.log()
            .contains("limits backend unavailable; counting locally"),
        "{}",
        one.log()
    );
}

/// Behind a trusted XCLIENT proxy the client it names is counted and
/// banned, never the proxy.
#[test]
fn behind_xclient_the_named_client_is_banned_not_the_proxy() {
    let server = TestServer::builder()
        .without_default_listeners()
        .config(
            "[[listener]]\nname = \"proxied\"\naddress = \"127.0.0.1:{port:proxied}\"\n\
             tls = \"starttls\"\nxclient_trusted = [\"127.0.0.1/32\"]\n\n\
             [limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\nban_after = 2\n",
        )
        .start();
    let out = python(
        r#"
        def via_proxy(label, addr, password):
            s = connect()
            s.docmd("XCLIENT", f"ADDR={addr} NAME=[UNAVAILABLE]")
            s.ehlo()
            show(label, s.docmd("AUTH", "PLAIN " + b64("\0alice\0" + password)))
        via_proxy("first", "192.0.2.7", "wrong-1")
        via_proxy("second", "192.0.2.7", "wrong-2")
        via_proxy("banned", "192.0.2.7", "correct horse")
        via_proxy("neighbour", "192.0.2.8", "correct horse")
        "#,
        &[server.port("proxied")],
    );
    out.assert_reply("first", "535")
        .assert_reply("second", "421 4.7.0")
        .assert_reply("banned", "421 4.7.0")
        .assert_reply("neighbour", "235");
    let list = server.cli(&["ban", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(listed.contains("192.0.2.7"), "{listed}");
    assert!(!listed.contains("127.0.0.1"), "{listed}");
}

/// Behind a load balancer speaking the PROXY protocol, the client the
/// header names is the one banned and counted, never the balancer.
#[test]
fn behind_proxy_protocol_the_named_client_is_refused_not_the_balancer() {
    let server = TestServer::builder()
        .without_default_listeners()
        .config(
            "[[listener]]\nname = \"lb\"\naddress = \"127.0.0.1:{port:lb}\"\n\
             tls = \"starttls\"\nproxy_protocol = true\nproxy_trusted = [\"127.0.0.0/8\"]\n\n\
             [limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\nban_after = 2\n",
        )
        .start();
    let out = python(
        r#"
        def proxied(label, src, password):
            sock = socket.create_connection(("127.0.0.1", PORT), timeout=15)
            sock.sendall(f"PROXY TCP4 {src} 198.51.100.1 4711 587\r\n".encode())
            s = smtplib.SMTP(local_hostname="client.test", timeout=15)
            s.sock, s._host = sock, "127.0.0.1"
            code, msg = s.getreply()
            if code != 220:
                show(label, (code, msg))
                return
            s.ehlo(); s.starttls(context=ctx()); s.ehlo()
            show(label, s.docmd("AUTH", "PLAIN " + b64("\0alice\0" + password)))
        proxied("first", "192.0.2.7", "wrong-1")
        proxied("second", "192.0.2.7", "wrong-2")
        proxied("at-greeting", "192.0.2.7", "correct horse")
        proxied("neighbour", "192.0.2.8", "correct horse")
        "#,
        &[server.port("lb")],
    );
    out.assert_reply("first", "535")
        .assert_reply("second", "421 4.7.0")
        .assert_reply("at-greeting", "421 4.7.0")
        .assert_reply("neighbour", "235");
    let list = server.cli(&["ban", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listed.contains("192.0.2.7") && !listed.contains("127.0.0.1"),
        "{listed}"
    );
}

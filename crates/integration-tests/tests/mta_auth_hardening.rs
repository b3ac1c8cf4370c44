//! The Dovecot-protocol front end under tricks a peer on its socket can
//! play, as a raw client (no Postfix needed): hanging up before a refusal
//! is answered, leaving out `rip=`, spelling a name another way; and a
//! trusted SMTP proxy naming a suspended user with `XCLIENT LOGIN=`.

use std::time::Duration;

use portcullis_integration_tests::{python, wait_until, TestServer};

/// Reads the handshake, then defines `send` and `answer`.
const RAW: &str = r#"
import socket
def conn():
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
    f = s.makefile("rb")
    while f.readline().decode().rstrip("\n") != "DONE":
        pass
    s.sendall(b"VERSION\t1\t2\nCPID\t1\n")
    return s, f
def send(s, line):
    s.sendall((line + "\n").encode())
def answer(f):
    return f.readline().decode().rstrip("\n")
def plain(user, password):
    return b64("\0" + user + "\0" + password)
"#;

fn server(extra: &str) -> TestServer {
    TestServer::builder()
        .config(&format!(
            "{extra}\n[[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{{port:mta}}\"\n"
        ))
        .start()
}

/// A peer that closes the connection before each wrong password is
/// answered is still counted: the decisions in flight finish. Before, they
/// were aborted with the connection, so a guesser that hung up before the
/// (slower) refusal was never counted, delayed or banned.
#[test]
fn guesses_whose_answer_nobody_waits_for_are_still_counted() {
    let server = server(
        "[limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\nban_after = 3\n",
    );
    let script = format!(
        r#"{RAW}
for i in range(3):
    s, f = conn()
    send(s, "AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.9\tresp=" + plain("alice", f"guess-{{i}}"))
    s.close()
"#
    );
    python(&script, &[server.port("mta")]);
    wait_until(
        &server,
        "the hung-up guesses to ban the address",
        Duration::from_secs(20),
        || server.log().contains("banned"),
    );
    let script = format!(
        r#"{RAW}
s, f = conn()
send(s, "AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.9\tresp=" + plain("alice", "correct horse"))
say("right: " + answer(f))
"#
    );
    let out = python(&script, &[server.port("mta")]);
    let right = out.reply("right");
    assert!(right.starts_with("FAIL\t1"), "{}", out.transcript());
}

/// A request without `rip=` (chasquid sends none) is not taken for the
/// MTA's own loopback address, which the default allow-list covers: its
/// guesses are counted (under the unspecified address) and banned. Before,
/// such clients had unlimited guesses.
#[test]
fn requests_without_rip_are_counted_not_allow_listed() {
    let server =
        server("[limits.auth]\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\nban_after = 2\n");
    let script = format!(
        r#"{RAW}
s, f = conn()
for i in range(2):
    send(s, f"AUTH\t{{i + 1}}\tPLAIN\tservice=smtp\tresp=" + plain("alice", f"guess-{{i}}"))
    say(f"guess.{{i}}: " + answer(f))
send(s, "AUTH\t9\tPLAIN\tservice=smtp\tresp=" + plain("alice", "correct horse"))
say("right: " + answer(f))
"#
    );
    let out = python(&script, &[server.port("mta")]);
    assert!(
        out.reply("guess.0").starts_with("FAIL\t1"),
        "{}",
        out.transcript()
    );
    assert!(
        out.reply("right").starts_with("FAIL\t9"),
        "banned after 2 failures: {}",
        out.transcript()
    );
}

/// Names are canonicalised through the MTA as for SMTP clients: `ALICE`
/// logs in as `alice` (before, the raw name reached the store and failed).
#[test]
fn names_through_the_mta_are_canonical() {
    let server = server("");
    let script = format!(
        r#"{RAW}
s, f = conn()
send(s, "AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.10\tresp=" + plain("ALICE", "correct horse"))
say("upper: " + answer(f))
"#
    );
    let out = python(&script, &[server.port("mta")]);
    assert_eq!(
        out.reply("upper"),
        "OK\t1\tuser=alice",
        "{}",
        out.transcript()
    );
}

/// A trusted proxy's `XCLIENT LOGIN=` cannot log in a suspended user:
/// the proxy vouches for the password, not for the identity's standing.
/// Before, the suspension was never asked on this path.
#[test]
fn xclient_login_of_a_suspended_user_is_refused() {
    let server = TestServer::builder()
        .without_default_listeners()
        .config(
            "[[listener]]\nname = \"proxied\"\naddress = \"127.0.0.1:{port:proxied}\"\n\
             tls = \"starttls\"\nxclient_trusted = [\"127.0.0.1/32\", \"::1\"]\n",
        )
        .start();
    let out = server
        .cli(&["user", "suspend", "alice", "--reason", "password leaked"])
        .output()
        .expect("portcullis runs");
    assert!(out.status.success(), "{out:?}");
    let script = r#"
s = connect()
show("xclient", s.docmd("XCLIENT", "LOGIN=alice ADDR=192.0.2.7"))
s.ehlo()
show("mail", s.mail(FROM))
s.quit()
"#;
    wait_until(
        &server,
        "the suspension to refuse the proxy's login",
        Duration::from_secs(15),
        || {
            let out = python(script, &[server.port("proxied")]);
            !out.reply("xclient").starts_with("220") && out.reply("mail").starts_with("530")
        },
    );
}

//! Compromise containment end to end: sending limits shared by two
//! instances through Redis, each signal (many networks, in after guessing,
//! volume spike, bad recipients) and each answer (log, hold, defer,
//! suspend), the signed webhook, and the CLI that shows and lifts them.
//! Clients come from several loopback networks (127.0.N.1), which
//! `limits.auth.allow = []` stops treating as trusted.

#[path = "delivery/sink.rs"]
mod sink;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use portcullis_integration_tests::{
    free_port, python, wait_until, PostgresServer, RawClient, RedisServer, TestServer, ALICE,
};
use sha2::Sha256;

const SECRET: &str = "webhook test secret";

/// Loopback is not allow-listed; failures are not delayed.
fn config(limits_backend: Option<&str>, extra: &str) -> String {
    let backend = limits_backend
        .map(|url| format!("backend = \"{url}\"\n"))
        .unwrap_or_default();
    format!(
        "[limits]\n{backend}max_connection_rate = 10000\n\
         [limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\nban_after = 100\n\
         user_max_failures = 100\n\
         [admin]\naddress = \"127.0.0.1:{{port:admin}}\"\n{extra}"
    )
}

/// A server running `policy` as its policy script, with [`config`] and
/// `extra`.
fn with_policy(policy: &str, extra: &str) -> TestServer {
    TestServer::builder()
        .config(&format!("policy = \"policy.lua\"\n{}", config(None, extra)))
        .file("policy.lua", policy)
        .start()
}

/// A client from `addr` over STARTTLS, for the python scripts.
const AT: &str = r#"
def at(addr, port=None):
    s = smtplib.SMTP("127.0.0.1", port or PORT, local_hostname="client.test", timeout=15,
                     source_address=(addr, 0))
    s.ehlo()
    s.starttls(context=ctx())
    s.ehlo()
    return s

def send(label, s, rcpts=(TO,)):
    show(label + ".mail", s.mail(FROM))
    for i, r in enumerate(rcpts):
        show(f"{label}.rcpt{i + 1}", s.rcpt(r))
    try:
        show(label + ".data", s.data(MSG))
    except smtplib.SMTPException as e:
        say(f"{label}.data: EXC {e!r}")
"#;

/// [`AT`] and the script `body`, written indented in Rust.
fn script(body: &str) -> String {
    let indent = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let body: Vec<&str> = body
        .lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect();
    format!("{AT}\n{}", body.join("\n"))
}

fn metrics(server: &TestServer) -> String {
    let url = format!("http://127.0.0.1:{}/metrics", server.port("admin"));
    let out = std::process::Command::new("curl")
        .args(["-s", &url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `/metrics` has a sample of `name` with all `labels` and `value`.
fn has_sample(server: &TestServer, name: &str, labels: &[&str], value: &str) -> bool {
    metrics(server).lines().any(|l| {
        l.starts_with(name)
            && labels.iter().all(|x| l.contains(x))
            && l.ends_with(&format!(" {value}"))
    })
}

/// Waits until a fresh AUTH PLAIN as alice gets `code` (suspensions and
/// their lifting reach the server within a store poll or two).
fn wait_for_alice_login(server: &TestServer, what: &str, code: u16) {
    wait_until(server, what, Duration::from_secs(15), || {
        let (mut c, _) = RawClient::connect_tls(server.implicit_port());
        c.cmd("EHLO client.test");
        c.auth_plain(ALICE.0, ALICE.1).code == code
    });
}

fn cli(server: &TestServer, args: &[&str]) -> String {
    let out = server.cli(args).output().expect("portcullis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

/// A webhook endpoint: keeps each POST's headers and body, answers 200.
struct Receiver {
    port: u16,
    posts: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::failing_first(0)
    }

    /// Answers `503` to the first `failures` posts, then `200`.
    fn failing_first(failures: usize) -> Receiver {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        let posts: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let kept = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut headers = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    headers.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let seen = {
                    let mut posts = kept.lock().unwrap();
                    posts.push((headers, String::from_utf8_lossy(&body).into_owned()));
                    posts.len()
                };
                let status = match seen <= failures {
                    true => "503 Service Unavailable",
                    false => "200 OK",
                };
                let reply =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = reader.get_mut().write_all(reply.as_bytes());
            }
        });
        Receiver { port, posts }
    }

    fn config(&self) -> String {
        format!(
            "[containment]\nwebhook = \"http://127.0.0.1:{}/hook\"\nwebhook_secret = \"{SECRET}\"\n",
            self.port
        )
    }

    fn posts(&self) -> Vec<(String, String)> {
        self.posts.lock().unwrap().clone()
    }
}

/// The header's value, from a block of `Name: value` lines.
fn header(headers: &str, name: &str) -> String {
    headers
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// Checks the HMAC-SHA-256 signature of one post and returns its JSON.
fn verified(headers: &str, body: &str) -> serde_json::Value {
    let timestamp = header(headers, "X-Portcullis-Timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        header(headers, "X-Portcullis-Signature"),
        expected,
        "{headers}"
    );
    serde_json::from_str(body).expect("the webhook body is JSON")
}

#[test]
fn sending_limits_are_shared_by_two_instances_through_redis() {
    let redis = RedisServer::start().expect("redis-server (apt-get install redis-server)");
    let config = config(
        Some(&redis.url()),
        "[limits.sending]\nmessages = [\"3/h\"]\n",
    );
    let a = TestServer::builder().config(&config).start();
    let b = TestServer::builder().config(&config).start();
    // bob's own limits, in each instance's user store, replace the
    // default for what they name.
    for server in [&a, &b] {
        cli(
            server,
            &[
                "user",
                "limits",
                "bob",
                "--messages",
                "100/h",
                "--recipients",
                "4/h",
            ],
        );
    }
    let out = python(
        &script(
            r#"
            for label, port in [("a1", PORTS[0]), ("a2", PORTS[0]), ("b1", PORTS[1]), ("b2", PORTS[1])]:
                s = connect(port=port)
                login(label, s, "alice", "correct horse", "PLAIN")
                show(label + ".mail", s.mail(FROM))
                s.quit()
            s = connect(port=PORTS[0])
            login("bob", s, "bob", "battery staple", "PLAIN")
            send("bob", s, ["r1@x.test", "r2@x.test", "r3@x.test", "r4@x.test", "r5@x.test"])
            "#,
        ),
        &[a.submission_port(), b.submission_port()],
    );
    for label in ["a1.mail", "a2.mail", "b1.mail"] {
        assert!(out.reply(label).starts_with("250"), "{}", out.transcript());
    }
    // The fourth message is over alice's 3/h, though this instance saw one.
    let refused = out.reply("b2.mail");
    assert!(
        refused.starts_with("451 4.7.1") && refused.contains("user alice messages 3/h"),
        "{}",
        out.transcript()
    );
    // bob: the fifth recipient is over 4/h at RCPT; the message goes with four.
    assert!(
        out.reply("bob.rcpt4").starts_with("250"),
        "{}",
        out.transcript()
    );
    let rcpt5 = out.reply("bob.rcpt5");
    assert!(
        rcpt5.starts_with("451 4.7.1") && rcpt5.contains("user bob recipients 4/h"),
        "{}",
        out.transcript()
    );
    assert!(
        out.reply("bob.data").starts_with("250"),
        "{}",
        out.transcript()
    );
    // The other instance sees bob's recipients used up at his next MAIL.
    wait_until(
        &b,
        "bob's recipients to count on b",
        Duration::from_secs(15),
        || {
            let out = python(
                r#"
            s = connect()
            login("bob", s, "bob", "battery staple", "PLAIN")
            show("mail", s.mail(FROM))
            "#,
                &[b.submission_port()],
            );
            out.reply("mail").contains("user bob recipients 4/h")
        },
    );
    assert!(b.log().contains("sending limit reached"), "{}", b.log());
    assert!(
        has_sample(
            &b,
            "portcullis_sending_limited_total",
            &["scope=\"user\"", "quantity=\"messages\""],
            "1"
        ),
        "{}",
        metrics(&b)
    );
    assert!(has_sample(
        &a,
        "portcullis_sending_limited_total",
        &["quantity=\"recipients\""],
        "1"
    ));
}

#[test]
fn many_networks_defers_new_addresses_spares_the_known_one_and_posts_a_signed_webhook() {
    let receiver = Receiver::start();
    let extra = format!(
        "{}spare_known_after = \"1s\"\n[containment.many_networks]\nmax_networks = 2\nwindow = \"10m\"\nanswer = \"defer\"\n",
        receiver.config()
    );
    let server = TestServer::builder().config(&config(None, &extra)).start();
    let legit = python(
        &script(
            r#"
            s = at("127.0.0.1")
            login("legit", s, "alice", "correct horse", "PLAIN")
            send("legit", s)
            "#,
        ),
        &[server.submission_port()],
    );
    assert!(
        legit.reply("legit.data").starts_with("250"),
        "{}",
        legit.transcript()
    );
    // The legitimate address must be older than `spare_known_after` when
    // the signal fires: a precondition in time, not a timed assertion.
    std::thread::sleep(Duration::from_millis(1500));
    let out = python(
        &script(
            r#"
            one = at("127.0.1.1")
            login("one", one, "alice", "correct horse", "PLAIN")
            two = at("127.0.2.1")
            login("two", two, "alice", "correct horse", "PLAIN")
            show("two.mail", two.mail(FROM))
            show("one.mail", one.mail(FROM))
            s = at("127.0.0.1")
            login("legit", s, "alice", "correct horse", "PLAIN")
            send("legit", s)
            "#,
        ),
        &[server.submission_port()],
    );
    assert!(out.reply("two").starts_with("235"), "{}", out.transcript());
    for label in ["two.mail", "one.mail"] {
        assert!(
            out.reply(label).starts_with("451 4.7.1"),
            "{label}: {}",
            out.transcript()
        );
    }
    assert!(
        out.reply("legit.data").starts_with("250"),
        "{}",
        out.transcript()
    );
    wait_until(&server, "the webhook post", Duration::from_secs(20), || {
        !receiver.posts().is_empty()
    });
    let (headers, body) = receiver.posts().remove(0);
    let doc = verified(&headers, &body);
    assert_eq!(doc["identity"], "alice");
    assert_eq!(doc["signal"], "many_networks");
    assert_eq!(doc["answer"], "defer");
    assert_eq!(doc["evidence"]["count"], 3);
    assert_eq!(doc["spared"], serde_json::json!(["127.0.0.1"]));
    let addresses = doc["evidence"]["addresses"].to_string();
    assert!(addresses.contains("127.0.2.1"), "{doc}");
    assert!(
        server.log().contains("identity suspect"),
        "{}",
        server.log()
    );
    assert!(has_sample(
        &server,
        "portcullis_identity_signals_total",
        &["signal=\"many_networks\"", "answer=\"defer\""],
        "1"
    ));
    // The history is written in batches, at most a tenth of a second
    // behind.
    wait_until(&server, "the history", Duration::from_secs(10), || {
        let activity = cli(&server, &["user", "activity", "alice"]);
        activity.contains("many_networks") && activity.contains("127.0.2.1")
    });
    let activity = cli(&server, &["user", "activity", "alice"]);
    assert!(
        activity.contains("many_networks  answer=defer"),
        "{activity}"
    );
    assert!(
        activity.contains("127.0.2.1  PLAIN  accepted"),
        "{activity}"
    );
    assert!(activity.contains("messages="), "{activity}");
}

#[test]
fn in_after_guessing_suspends_open_sessions_get_421_and_resume_lifts_it() {
    let extra = "[containment.after_guessing]\naddress_failures = 2\nnetwork_failures = 0\nanswer = \"suspend\"\n";
    let server = TestServer::builder().config(&config(None, extra)).start();
    let out = python(
        &script(
            r#"
            legit = at("127.0.0.1")
            login("legit", legit, "alice", "correct horse", "PLAIN")
            g = at("127.0.3.1")
            login("guess1", g, "bob", "wrong one", "PLAIN")
            login("guess2", g, "bob", "wrong two", "PLAIN")
            hit = at("127.0.3.1")
            login("hit", hit, "alice", "correct horse", "PLAIN")
            show("hit.noop", hit.noop())
            show("legit.noop", legit.noop())
            again = at("127.0.0.1")
            login("again", again, "alice", "correct horse", "PLAIN")
            "#,
        ),
        &[server.submission_port()],
    );
    assert!(
        out.reply("guess2").starts_with("535"),
        "{}",
        out.transcript()
    );
    assert!(out.reply("hit").starts_with("235"), "{}", out.transcript());
    for label in ["hit.noop", "legit.noop"] {
        assert!(
            out.reply(label).starts_with("421 4.7.1"),
            "{label}: {}",
            out.transcript()
        );
    }
    assert!(
        out.reply("again").starts_with("535 5.7.8"),
        "{}",
        out.transcript()
    );
    assert!(
        server.log().contains("identity suspended"),
        "{}",
        server.log()
    );
    wait_until(
        &server,
        "the suspension in the store",
        Duration::from_secs(10),
        || cli(&server, &["user", "activity", "alice"]).contains("suspended since"),
    );
    let mut test = server.cli(&["auth", "test", "alice", "--password-stdin"]);
    let output = test
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"correct horse\n")?;
            child.wait_with_output()
        })
        .expect("auth test runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("suspended: signal after_guessing"), "{said}");
    // Lifted by the operator: logins work again within a poll or two.
    cli(&server, &["user", "resume", "alice"]);
    wait_for_alice_login(&server, "alice to log in again", 235);
}

#[test]
fn operator_suspension_refuses_auth_and_closes_open_sessions() {
    let server = TestServer::builder().config(&config(None, "")).start();
    let (mut open, _) = RawClient::connect_tls(server.implicit_port());
    open.cmd("EHLO client.test");
    assert_eq!(open.auth_plain(ALICE.0, ALICE.1).code, 235);
    cli(
        &server,
        &["user", "suspend", "alice", "--reason", "password leaked"],
    );
    wait_until(
        &server,
        "the open session to get 421",
        Duration::from_secs(15),
        || open.cmd("NOOP").code == 421,
    );
    let (mut c, _) = RawClient::connect_tls(server.implicit_port());
    c.cmd("EHLO client.test");
    assert_eq!(c.auth_plain(ALICE.0, ALICE.1).code, 535);
    assert!(
        server.log().contains("suspended: password leaked"),
        "{}",
        server.log()
    );
}

#[test]
fn volume_spike_holds_new_messages_until_released() {
    let extra = "[containment.volume_spike]\nfactor = 5.0\nmin_messages = 3\nanswer = \"hold\"\n";
    let server = TestServer::builder().config(&config(None, extra)).start();
    let out = python(
        &script(
            r#"
            s = at("127.0.0.1")
            login("alice", s, "alice", "correct horse", "PLAIN")
            for i in range(6):
                send(f"m{i}", s)
            "#,
        ),
        &[server.submission_port()],
    );
    for i in 0..6 {
        let label = format!("m{i}.data");
        assert!(out.reply(&label).starts_with("250"), "{}", out.transcript());
    }
    // The fourth message is the spike: it and the ones after it are held.
    let held = |server: &TestServer| {
        server
            .spool_messages()
            .iter()
            .filter(|m| m.meta["meta"]["held"].is_string() || m.meta["held"].is_string())
            .count()
    };
    assert_eq!(
        held(&server),
        3,
        "{:?}",
        server
            .spool_messages()
            .iter()
            .map(|m| m.meta.clone())
            .collect::<Vec<_>>()
    );
    let list = cli(&server, &["queue", "list"]);
    assert_eq!(list.matches("  held").count(), 3, "{list}");
    assert!(has_sample(
        &server,
        "portcullis_identity_signals_total",
        &["signal=\"volume_spike\"", "answer=\"hold\""],
        "1"
    ));
    let released = cli(&server, &["queue", "release", "--user", "alice"]);
    assert!(
        released.contains("3 held message(s) of alice released"),
        "{released}"
    );
    assert_eq!(
        cli(&server, &["queue", "list"]).matches("  held").count(),
        0
    );
    let hold = cli(&server, &["queue", "hold", "--user", "alice"]);
    assert!(hold.contains("6 message(s) of alice held"), "{hold}");
    let deleted = cli(
        &server,
        &["queue", "release", "--user", "alice", "--delete"],
    );
    assert!(
        deleted.contains("6 held message(s) of alice deleted"),
        "{deleted}"
    );
    wait_until(
        &server,
        "the spool to empty",
        Duration::from_secs(10),
        || server.spool_len() == 0,
    );
}

#[test]
fn bad_recipients_from_delivery_results_log_the_signal() {
    let port = free_port();
    let mut plan = sink::Plan::default();
    for i in 0..4 {
        plan.reject_rcpt
            .insert(format!("nobody{i}@x.test"), "550 5.1.1 No such user".into());
    }
    let _sink = sink::Sink::tcp(port, plan);
    let extra = format!(
        "[delivery]\nscan_interval = \"100ms\"\nretry_initial = \"200ms\"\nretry_max = \"500ms\"\n\
         [[route]]\nname = \"sink\"\ntransport = \"smtp\"\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\n\
         [containment.bad_recipients]\nmax_share = 0.5\nmin_recipients = 5\nwindow = \"1h\"\nanswer = \"log\"\n"
    );
    let server = TestServer::builder().config(&config(None, &extra)).start();
    let out = python(
        &script(
            r#"
            s = at("127.0.0.1")
            login("alice", s, "alice", "correct horse", "PLAIN")
            send("m", s, ["nobody0@x.test", "nobody1@x.test", "nobody2@x.test", "nobody3@x.test", "real@x.test"])
            "#,
        ),
        &[server.submission_port()],
    );
    assert!(
        out.reply("m.data").starts_with("250"),
        "{}",
        out.transcript()
    );
    wait_until(
        &server,
        "the bad-recipients signal",
        Duration::from_secs(20),
        || {
            server.log().contains("signal=\"bad_recipients\"")
                || server.log().contains("signal=bad_recipients")
        },
    );
    assert!(has_sample(
        &server,
        "portcullis_identity_signals_total",
        &["signal=\"bad_recipients\"", "answer=\"log\""],
        "1"
    ));
    // `log` answers nothing else: alice still sends.
    let again = python(
        &script(
            r#"
            s = at("127.0.0.1")
            login("alice", s, "alice", "correct horse", "PLAIN")
            send("m", s)
            "#,
        ),
        &[server.submission_port()],
    );
    assert!(
        again.reply("m.data").starts_with("250"),
        "{}",
        again.transcript()
    );
}

#[test]
fn the_policy_event_sees_the_signal_and_may_choose_another_answer() {
    const POLICY: &str = r#"
portcullis.on('portcullis_identity_suspect', function(suspect)
  if suspect.identity == 'alice' and suspect.signal == 'many_networks'
     and suspect.answer == 'log' and suspect.evidence.count == 2 then
    return 'defer'
  end
end)
"#;
    let extra = "[containment.many_networks]\nmax_networks = 1\nanswer = \"log\"\n";
    let server = with_policy(POLICY, extra);
    let out = python(
        &script(
            r#"
            one = at("127.0.1.1")
            login("one", one, "alice", "correct horse", "PLAIN")
            two = at("127.0.2.1")
            login("two", two, "alice", "correct horse", "PLAIN")
            "#,
        ),
        &[server.submission_port()],
    );
    assert!(out.reply("two").starts_with("235"), "{}", out.transcript());
    // The event runs off the session's path: its answer lands shortly.
    wait_until(
        &server,
        "the policy's defer",
        Duration::from_secs(15),
        || {
            let out = python(
                &script(
                    r#"
                s = at("127.0.2.1")
                login("again", s, "alice", "correct horse", "PLAIN")
                show("mail", s.mail(FROM))
                "#,
                ),
                &[server.submission_port()],
            );
            out.reply("mail").starts_with("451 4.7.1")
        },
    );
    assert!(
        server.log().contains("answer chosen by the policy"),
        "{}",
        server.log()
    );
}

#[test]
fn history_limits_and_suspension_live_in_postgres_too() {
    let pg = PostgresServer::start()
        .expect("PostgreSQL is not installed: apt-get install -y postgresql");
    let users = format!("[users]\nbackend = \"postgres\"\nurl = \"{}\"\n", pg.url());
    let server = TestServer::builder()
        .config(&format!("{users}{}", config(None, "")))
        .start();
    cli(&server, &["user", "limits", "alice", "--messages", "1/h"]);
    let out = python(
        &script(
            r#"
            s = at("127.0.0.1")
            login("alice", s, "alice", "correct horse", "PLAIN")
            send("m1", s)
            show("m2.mail", s.mail(FROM))
            "#,
        ),
        &[server.submission_port()],
    );
    assert!(
        out.reply("m1.data").starts_with("250"),
        "{}",
        out.transcript()
    );
    assert!(
        out.reply("m2.mail").contains("user alice messages 1/h"),
        "{}",
        out.transcript()
    );
    wait_until(
        &server,
        "the history in PostgreSQL",
        Duration::from_secs(10),
        || {
            let activity = cli(&server, &["user", "activity", "alice"]);
            activity.contains("127.0.0.1  PLAIN  accepted") && activity.contains("messages=1")
        },
    );
    cli(&server, &["user", "suspend", "alice"]);
    wait_for_alice_login(&server, "the suspension to apply", 535);
}

#[test]
fn a_webhook_refused_at_first_is_retried_with_the_same_notice() {
    let receiver = Receiver::failing_first(2);
    let extra = format!(
        "{}[containment.many_networks]\nmax_networks = 1\nanswer = \"log\"\n",
        receiver.config()
    );
    let server = TestServer::builder().config(&config(None, &extra)).start();
    let out = python(
        &script(
            r#"
            for addr in ["127.0.1.1", "127.0.2.1"]:
                s = at(addr)
                login(addr, s, "alice", "correct horse", "PLAIN")
            "#,
        ),
        &[server.submission_port()],
    );
    assert!(
        out.reply("127.0.2.1").starts_with("235"),
        "{}",
        out.transcript()
    );
    wait_until(
        &server,
        "the third attempt",
        Duration::from_secs(30),
        || receiver.posts().len() >= 3,
    );
    let posts = receiver.posts();
    let first = verified(&posts[0].0, &posts[0].1);
    let third = verified(&posts[2].0, &posts[2].1);
    assert_eq!(first, third, "the same notice, signed again");
    wait_until(
        &server,
        "the delivered count",
        Duration::from_secs(10),
        || {
            has_sample(
                &server,
                "portcullis_webhook_deliveries_total",
                &["result=\"delivered\""],
                "1",
            )
        },
    );
    assert!(
        server
            .log()
            .contains("webhook refused a containment notice"),
        "{}",
        server.log()
    );
}

/// Limits in the user data a policy's `accept{data = {limits = ...}}`
/// gave replace the configured ones for that login; read from the
/// session's user data at MAIL. The configured default (1/h) would refuse
/// the second message; the policy's 2/h refuses the third.
#[test]
fn limits_in_the_policys_user_data_apply_at_mail() {
    const POLICY: &str = r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  return portcullis.accept{ data = { limits = { messages = '2/h' } } }
end)
"#;
    let server = with_policy(POLICY, "[limits.sending]\nmessages = [\"1/h\"]\n");
    let out = python(
        &script(
            r#"
            for label in ["a1", "a2", "a3"]:
                s = connect()
                login(label, s, "alice", "correct horse", "PLAIN")
                show(label + ".mail", s.mail(FROM))
                s.quit()
            "#,
        ),
        &[server.submission_port()],
    );
    for label in ["a1.mail", "a2.mail"] {
        assert!(out.reply(label).starts_with("250"), "{}", out.transcript());
    }
    let refused = out.reply("a3.mail");
    assert!(
        refused.starts_with("451 4.7.1") && refused.contains("user alice messages 2/h"),
        "{}",
        out.transcript()
    );
}

//! The deployment of `docs/many-instances.md`, run for real: three
//! portcullis instances behind HAProxy (Debian's `haproxy`, started by the
//! test in the foreground) speaking PROXY v2, users in one PostgreSQL,
//! counts and bans in one Redis.
//!
//! What it guards, as a client sees it:
//! - a guesser whose connections the balancer spreads over all three
//!   instances is counted once: with `ban_after = N` the N-th failure in
//!   total bans it, every instance refuses it at the greeting from then on,
//!   and the one ban `portcullis ban list` shows names the client's address
//!   from the PROXY header, never the balancer's;
//! - with one instance killed under load (SIGKILL, no goodbye), only the
//!   sessions that were on it, or that the balancer sent to it before its
//!   health check marked it down, fail; the balancer stops sending to it
//!   within a few check intervals, and from then on every session succeeds;
//! - HAProxy's health checks (PROXY `LOCAL`: the balancer itself) are not
//!   counted as a client's connections, so no rate limit takes an instance
//!   out of the balancer.
//!
//! HAProxy's own view (who is up, how many sessions each server got) is
//! read from its stats socket, so the bound on errors is exact rather than
//! guessed from timings.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_integration_tests::{
    free_port, load_bin, python, PostgresServer, RedisServer, TestServer, ALICE, BOB,
};
use serde_json::Value;

/// The instances' names, as the HAProxy backend calls them.
const NAMES: [&str; 3] = ["a", "b", "c"];

/// Failures from one address (in total, over every instance) that ban it.
const BAN_AFTER: usize = 7;

/// HAProxy's health-check interval; one failed check marks a server down.
const CHECK_INTERVAL_MS: u64 = 200;

/// Concurrent load connections; below [`BAN_AFTER`], since an instance
/// holds back an AUTH when the address's attempts in flight could reach
/// the ban if they all failed.
const CONNECTIONS: u64 = 6;

/// A `haproxy -db` child process with a stats socket, killed on drop.
struct Haproxy {
    child: Child,
    port: u16,
    stats: PathBuf,
    log: PathBuf,
    config: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// TCP mode, round robin over `backends` (name, port), each sent a
    /// PROXY v2 header and health-checked every [`CHECK_INTERVAL_MS`]
    /// (a TCP connect unless `options`, lines for the backend section, say
    /// otherwise).
    fn start(backends: &[(&str, u16)], options: &str) -> Haproxy {
        let dir = tempfile::tempdir().expect("a temp dir can be created");
        let port = free_port();
        let stats = dir.path().join("stats.sock");
        let log = dir.path().join("haproxy.log");
        let servers: String = backends
            .iter()
            .map(|(name, backend)| {
                format!(
                    "    server {name} 127.0.0.1:{backend} send-proxy-v2 \
                     check inter {CHECK_INTERVAL_MS}ms fall 1 rise 1\n"
                )
            })
            .collect();
        let config = format!(
            "global\n    maxconn 1000\n    stats socket {} mode 600 level admin\n\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    \
             timeout server 60s\n    retries 2\n    option redispatch 1\n\n\
             frontend submission\n    bind 127.0.0.1:{port}\n    default_backend portcullis\n\n\
             backend portcullis\n    balance roundrobin\n{options}{servers}",
            stats.display()
        );
        let config_path = dir.path().join("haproxy.cfg");
        fs::write(&config_path, &config).expect("haproxy config can be written");
        let out = fs::File::create(&log).expect("haproxy log can be created");
        let err = out.try_clone().expect("log handle can be cloned");
        let child = Command::new(haproxy_bin())
            .arg("-f")
            .arg(&config_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("haproxy is not installed: apt-get install -y haproxy");
        let mut haproxy = Haproxy {
            child,
            port,
            stats,
            log,
            config,
            _dir: dir,
        };
        haproxy.wait_until_all_up(backends.len());
        haproxy
    }

    fn wait_until_all_up(&mut self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("haproxy exited with {status}\n{}", self.diagnostics());
            }
            let up = self.servers().values().filter(|s| s.up).count();
            if up == count && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy: {up} of {count} servers up after 10 s\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Each server's state from `show stat` on the stats socket.
    fn servers(&self) -> BTreeMap<String, ServerStat> {
        let Ok(mut sock) = UnixStream::connect(&self.stats) else {
            return BTreeMap::new();
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        if sock.write_all(b"show stat\n").is_err() {
            return BTreeMap::new();
        }
        let mut csv = String::new();
        let _ = sock.read_to_string(&mut csv);
        let mut lines = csv.lines();
        let Some(header) = lines.next() else {
            return BTreeMap::new();
        };
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .unwrap_or_else(|| panic!("no {name} column in {header}"))
        };
        let (px, sv, scur, stot, status) = (
            column("pxname"),
            column("svname"),
            column("scur"),
            column("stot"),
            column("status"),
        );
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[px] == "portcullis" && f[sv] != "BACKEND")
            .map(|f| {
                (
                    f[sv].to_string(),
                    ServerStat {
                        up: f[status].starts_with("UP"),
                        current: f[scur].parse().unwrap_or(0),
                        total: f[stot].parse().unwrap_or(0),
                    },
                )
            })
            .collect()
    }

    fn diagnostics(&self) -> String {
        format!(
            "---- haproxy config ----\n{}\n---- haproxy output ----\n{}",
            self.config,
            fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// `haproxy` on the PATH, else Debian's `/usr/sbin/haproxy` (not on a
/// normal user's PATH).
fn haproxy_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("haproxy"))
        .find(|bin| bin.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"))
}

/// One server's line of HAProxy's stats.
#[derive(Debug, Clone, Copy, Default)]
struct ServerStat {
    /// Status `UP` (the health check passes).
    up: bool,
    /// Sessions open to it now.
    current: u64,
    /// Sessions the balancer ever sent to it.
    total: u64,
}

/// The instances' shared config: users in PostgreSQL, limits in Redis, one
/// STARTTLS listener reading PROXY headers from HAProxy only; loopback is
/// not allow-listed, so it is counted and banned like any client.
fn instance_config(pg: &PostgresServer, redis: &RedisServer) -> String {
    format!(
        "[users]\nbackend = \"postgres\"\nurl = \"{}\"\n\n\
         [limits]\nbackend = \"{}\"\n\
         # The load run comes from one address, faster than any person.\n\
         max_connection_rate = 0\n\
         [limits.auth]\nallow = []\ndelay_initial = \"10ms\"\ndelay_max = \"20ms\"\n\
         ban_after = {BAN_AFTER}\nuser_max_failures = 100\nban_duration = \"1h\"\n\n\
         [[listener]]\nname = \"submission\"\naddress = \"127.0.0.1:{{port:submission}}\"\n\
         tls = \"starttls\"\nauth = \"required\"\n\
         proxy_protocol = true\nproxy_trusted = [\"127.0.0.1/32\"]\n",
        pg.url(),
        redis.url()
    )
}

/// `portcullis-load` through the balancer: STARTTLS, AUTH PLAIN as alice,
/// one message per session, `extra` for the length of the run.
fn load(port: u16, extra: &[&str]) -> Command {
    let mut command = Command::new(load_bin());
    command
        .arg(format!("127.0.0.1:{port}"))
        .args(["--user", ALICE.0, "--password", ALICE.1, "--insecure"])
        .args(["--starttls", "--auth", "PLAIN", "-n", "1"])
        .args(["-c", &CONNECTIONS.to_string()])
        .args(["--json", "--quiet", "--timeout", "20", "--threads", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn report(out: std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report from portcullis-load ({e}); status {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn errors_total(report: &Value) -> u64 {
    report["errors_total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no errors_total in {report:#}"))
}

/// `attempt(label, user, password)`: a fresh connection to the balancer
/// from 127.0.0.9, one AUTH PLAIN, QUIT; the greeting's code when refused.
const GUESSER: &str = r#"
def attempt(label, user, password):
    try:
        s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=15,
                         source_address=("127.0.0.9", 0))
    except smtplib.SMTPConnectError as e:
        show(label, (e.smtp_code, e.smtp_error))
        return
    except (smtplib.SMTPServerDisconnected, OSError) as e:
        print(f"{label}: EXC {e!r}", flush=True)
        return
    s.ehlo(); s.starttls(context=ctx()); s.ehlo()
    login(label, s, user, password, "PLAIN")
    try:
        s.quit()
    except Exception:
        pass
"#;

fn logs(instances: &[TestServer]) -> String {
    instances
        .iter()
        .zip(NAMES)
        .map(|(server, name)| format!("---- instance {name} ----\n{}", server.log()))
        .collect()
}

#[test]
fn three_instances_behind_haproxy_ban_a_spread_guesser_once_and_survive_losing_one() {
    let pg = PostgresServer::start()
        .expect("PostgreSQL is not installed: apt-get install -y postgresql");
    let redis = RedisServer::start()
        .expect("redis-server is not installed: apt-get install -y redis-server");
    let config = instance_config(&pg, &redis);
    // The users are added once, through the first instance; the others
    // read the same table.
    let mut instances: Vec<TestServer> = (0..NAMES.len())
        .map(|i| {
            let users: &[(&str, &str)] = if i == 0 { &[ALICE, BOB] } else { &[] };
            TestServer::builder()
                .without_default_listeners()
                .users(users)
                .config(&config)
                .start()
        })
        .collect();
    let backends: Vec<(&str, u16)> = NAMES
        .iter()
        .zip(&instances)
        .map(|(name, server)| (*name, server.port("submission")))
        .collect();
    let haproxy = Haproxy::start(&backends, "");

    // (1) A guesser from 127.0.0.9, one connection per guess: round robin
    // sends consecutive ones to different instances. The first N-1
    // failures are refused as such; the N-th, counted in Redis whatever
    // instance took the others, bans the address on the spot; then each
    // instance refuses it at the greeting.
    let mut script = String::from(GUESSER);
    for i in 1..BAN_AFTER {
        script.push_str(&format!(
            "attempt(\"guess{i}\", \"alice\", \"guess-{i}\")\n"
        ));
    }
    script.push_str(&format!(
        "attempt(\"guess{BAN_AFTER}\", \"bob\", \"guess-{BAN_AFTER}\")\n"
    ));
    for i in 0..NAMES.len() {
        script.push_str(&format!(
            "attempt(\"after{i}\", \"alice\", \"correct horse\")\n"
        ));
    }
    let out = python(&script, &[haproxy.port]);
    for i in 1..BAN_AFTER {
        out.assert_reply(&format!("guess{i}"), "535 5.7.8");
    }
    out.assert_reply(&format!("guess{BAN_AFTER}"), "421 4.7.0");
    for i in 0..NAMES.len() {
        out.assert_reply(&format!("after{i}"), "421 4.7.0");
    }
    // The failures were spread: every instance refused some of them, each
    // under the guesser's own address (from the PROXY header), so no one
    // instance saw anything near the ban threshold.
    for (server, name) in instances.iter().zip(NAMES) {
        let failures = server
            .log()
            .lines()
            .filter(|l| l.contains("auth client=127.0.0.9 ") && l.contains("rejected"))
            .count();
        assert!(
            (1..BAN_AFTER - 1).contains(&failures),
            "instance {name} refused {failures} of the guesses\n{}",
            logs(&instances)
        );
    }
    let bans_made = logs(&instances)
        .lines()
        .filter(|l| l.contains("defence: banned client=127.0.0.9 "))
        .count();
    assert_eq!(bans_made, 1, "one ban, made once\n{}", logs(&instances));
    let list = instances[2].cli(&["ban", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.status.success(), "{list:?}");
    assert_eq!(
        listed.matches("127.0.0.9").count(),
        1,
        "one ban for the guesser: {listed}"
    );
    assert!(
        listed.contains(&format!("{BAN_AFTER} failed logins")),
        "{listed}"
    );
    assert!(
        !listed.contains("127.0.0.1"),
        "the balancer was banned: {listed}"
    );

    // (2) Load through the balancer; one instance is killed in the middle.
    let run = load(haproxy.port, &["-w", "0", "-d", "6"])
        .spawn()
        .expect("portcullis-load can be run");
    std::thread::sleep(Duration::from_secs(3));
    let before = haproxy.servers();
    let killed_at = Instant::now();
    instances[1].kill_hard();
    let mut down_after = None;
    while killed_at.elapsed() < Duration::from_secs(5) {
        if haproxy.servers().get("b").is_some_and(|s| !s.up) {
            down_after = Some(killed_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let down_after = down_after.unwrap_or_else(|| {
        panic!(
            "HAProxy still sends to the killed instance after 5 s: {:?}",
            haproxy.servers()
        )
    });
    let at_down = haproxy.servers();
    let first = report(run.wait_with_output().expect("portcullis-load ends"));
    let after = haproxy.servers();

    let b_before = before["b"];
    let sent_to_dead = at_down["b"].total - b_before.total;
    let errors = errors_total(&first);
    eprintln!(
        "kill under load: {errors} errors of {} sessions; b had {} open, got {sent_to_dead} \
         more before marked down after {down_after:?}; {:#}",
        first["sessions"], b_before.current, first["errors"]
    );
    // Only the sessions open on the dead instance may fail: one per load
    // connection at most, and no more than HAProxy had on it just before
    // the kill plus what it sent there since. A connection HAProxy tried
    // on it before the health check noticed is redispatched to a live one.
    assert!(
        errors <= b_before.current + sent_to_dead && errors <= CONNECTIONS,
        "{errors} errors, but {} sessions were on the killed instance, {sent_to_dead} were sent \
         to it before it was marked down, and {CONNECTIONS} connections ran: {first:#}\n{}",
        b_before.current,
        logs(&instances)
    );
    // Each of them was cut, never refused: a live instance answering with
    // an SMTP error (a 454 say) would show its code here.
    for row in first["errors"].as_array().into_iter().flatten() {
        let code = row["code"].as_str().unwrap_or_default();
        assert!(
            !code.starts_with(|c: char| c.is_ascii_digit()) && code != "timeout",
            "a live instance refused or stalled a session: {row}\n{}",
            logs(&instances)
        );
    }
    assert!(
        down_after <= Duration::from_millis(10 * CHECK_INTERVAL_MS),
        "marked down only after {down_after:?}"
    );
    // The others carried the load.
    for name in ["a", "c"] {
        assert!(
            after[name].total > at_down[name].total,
            "instance {name} took no sessions after the kill: {after:?}"
        );
    }
    assert!(
        first["sessions"].as_u64().unwrap_or(0) > errors,
        "the sessions on the live instances went on: {first:#}"
    );

    // After the health check window, every session succeeds, and none is
    // sent to the dead instance (retries of connections assigned to it
    // before it was marked down are over by now).
    let settle = Instant::now();
    while haproxy.servers()["b"].current > 0 {
        assert!(
            settle.elapsed() < Duration::from_secs(10),
            "{:?}",
            haproxy.servers()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before_second = haproxy.servers();
    let second = report(
        load(haproxy.port, &["--sessions", "30"])
            .output()
            .expect("portcullis-load can be run"),
    );
    assert_eq!(
        errors_total(&second),
        0,
        "errors after the dead instance was marked down: {second:#}\n{}",
        logs(&instances)
    );
    assert_eq!(second["sessions"], 30, "{second:#}");
    assert_eq!(
        haproxy.servers()["b"].total,
        before_second["b"].total,
        "HAProxy sent sessions to the instance it had marked down"
    );
    let messages: usize = [&instances[0], &instances[2]]
        .iter()
        .map(|server| server.spool_len())
        .sum();
    assert!(
        messages as u64 >= 30,
        "the live instances spooled only {messages} messages"
    );
}

/// HAProxy's health checks arrive with a PROXY v2 `LOCAL` header: the
/// balancer speaking for itself, not a client. They come several times a
/// second from one address, forever, so counting them as that address's
/// connections would soon refuse them (`421`) as too fast, log a warning
/// per check, and with an SMTP check (`option smtpchk`) take every instance
/// out of the balancer. They are not counted; clients still are.
#[test]
fn haproxy_health_checks_are_not_counted_as_a_clients_connections() {
    let instance = TestServer::builder()
        .without_default_listeners()
        .config(
            "[limits]\nmax_connection_rate = 3\nconnection_rate_window = \"1h\"\n\
             [limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n\n\
             [[listener]]\nname = \"submission\"\naddress = \"127.0.0.1:{port:submission}\"\n\
             tls = \"starttls\"\nproxy_protocol = true\nproxy_trusted = [\"127.0.0.1/32\"]\n",
        )
        .start();
    let haproxy = Haproxy::start(
        &[("a", instance.port("submission"))],
        "    option smtpchk EHLO haproxy.test\n",
    );
    // Many more checks than the rate allows any one address.
    std::thread::sleep(Duration::from_millis(12 * CHECK_INTERVAL_MS));
    let up = haproxy.servers().get("a").is_some_and(|s| s.up);
    let log = instance.log();
    assert!(
        up && !log.contains("refused: connection rate"),
        "health checks were refused as a client's connections (up: {up})\n{log}"
    );
    // A client through the balancer is still held to the rate.
    let out = python(
        r#"
        for i in range(4):
            try:
                s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=15,
                                 source_address=("127.0.0.9", 0))
                show(f"c{i}", (220, "greeting"))
                s.quit()
            except smtplib.SMTPConnectError as e:
                show(f"c{i}", (e.smtp_code, e.smtp_error))
        "#,
        &[haproxy.port],
    );
    out.assert_reply("c0", "220")
        .assert_reply("c2", "220")
        .assert_reply("c3", "421 4.7.0");
}

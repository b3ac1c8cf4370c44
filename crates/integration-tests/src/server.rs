//! Starting, stopping and inspecting a real `portcullis serve` process.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_spool::Spool;
use serde_json::Value;
use tempfile::TempDir;

/// Fixture user created in every server unless [`Builder::users`] says otherwise.
pub const ALICE: (&str, &str) = ("alice", "correct horse");
/// Second fixture user.
pub const BOB: (&str, &str) = ("bob", "battery staple");

/// How long a server may take to listen on all its ports.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the `portcullis` binary under test.
///
/// `PORTCULLIS_BIN` wins; otherwise the binary is looked up beside the test
/// executable (`<target>/<profile>/deps/<test>` → `<target>/<profile>/portcullis`),
/// which honours `CARGO_TARGET_DIR` and the profile; last the workspace's
/// `target/debug`.
pub fn portcullis_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_BIN") {
        return PathBuf::from(bin);
    }
    let beside_tests = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("portcullis")));
    let in_workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/portcullis");
    let candidates: Vec<PathBuf> = beside_tests.into_iter().chain([in_workspace]).collect();
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => found.clone(),
        None => panic!(
            "portcullis binary not found (looked at {candidates:?}); \
             run `cargo build --workspace --bins` first or set PORTCULLIS_BIN"
        ),
    }
}

/// A free loopback port for a server the test starts.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on
/// Linux), handed out by a counter that starts at a place derived from the
/// process id. An ephemeral port (what `bind(0)` returns) can be taken by
/// any client's outgoing connection between the check and the server's own
/// bind; these cannot, and two tests of one process never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = (std::process::id() * 97) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        // Invariant: FIRST + SPAN < 65536.
        let port = u16::try_from(FIRST + offset).expect("port below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Configures a [`TestServer`] before it starts.
pub struct Builder {
    config: String,
    users: Vec<(String, String)>,
    files: Vec<(String, String)>,
    default_listeners: bool,
    log_filter: Option<String>,
    mechanisms: Option<String>,
}

impl Builder {
    /// `PORTCULLIS_LOG` filter for the server (default: the test's own
    /// `PORTCULLIS_LOG`, else `info`).
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = Some(filter.to_string());
        self
    }

    /// TOML appended to the generated config, after the top-level keys and
    /// before the default listeners. `{port:NAME}` is replaced by a fresh free
    /// port, later available as [`TestServer::port`]`("NAME")`.
    pub fn config(mut self, extra: &str) -> Self {
        self.config.push_str(extra);
        self.config.push('\n');
        self
    }

    /// Users added with `portcullis user add` before the server starts
    /// (replaces the default alice and bob). Empty for a `file` backend.
    pub fn users(mut self, users: &[(&str, &str)]) -> Self {
        self.users = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        self
    }

    /// A file written into the data directory before start.
    pub fn file(mut self, relative: &str, contents: &str) -> Self {
        self.files
            .push((relative.to_string(), contents.to_string()));
        self
    }

    /// The default listeners' `mechanisms` list, e.g. to offer the -PLUS
    /// variants, which no listener offers unless its list names them.
    pub fn mechanisms(mut self, names: &[&str]) -> Self {
        self.mechanisms = Some(format!("mechanisms = {names:?}\n"));
        self
    }

    /// Leave out the default submission (STARTTLS) and submissions
    /// (implicit TLS) listeners; the config must then declare its own.
    pub fn without_default_listeners(mut self) -> Self {
        self.default_listeners = false;
        self
    }

    /// Write the config, add the users, start the server and wait until
    /// every listener accepts connections.
    pub fn start(self) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-it-")
            .tempdir()
            .expect("a temp dir can be created");
        let mut ports = BTreeMap::new();
        let extra = substitute_ports(&self.config, &mut ports);
        let mut config = format!(
            "hostname = \"mx.test\"\ndata_dir = {:?}\n\n{extra}\n",
            dir.path().display().to_string()
        );
        // Failure delays (2 s and up by default) would make every test with
        // a wrong password crawl; tests of the defence set their own.
        if !extra.contains("[limits.auth]") {
            config.push_str("[limits.auth]\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n\n");
        }
        if self.default_listeners {
            let submission = free_port();
            let implicit = free_port();
            ports.insert("submission".into(), submission);
            ports.insert("submissions".into(), implicit);
            let mechanisms = self.mechanisms.as_deref().unwrap_or("");
            config.push_str(&format!(
                "[[listener]]\nname = \"submission\"\naddress = \"127.0.0.1:{submission}\"\n\
                 tls = \"starttls\"\nauth = \"required\"\n{mechanisms}\n\
                 [[listener]]\nname = \"submissions\"\naddress = \"127.0.0.1:{implicit}\"\n\
                 tls = \"implicit\"\nauth = \"required\"\n{mechanisms}"
            ));
        }
        let config_path = dir.path().join("portcullis.toml");
        fs::write(&config_path, &config).expect("config can be written");
        for (relative, contents) in &self.files {
            let path = dir.path().join(relative);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("data subdirectory can be created");
            }
            fs::write(path, contents).expect("fixture file can be written");
        }
        let log_filter = self
            .log_filter
            .clone()
            .unwrap_or_else(|| std::env::var("PORTCULLIS_LOG").unwrap_or_else(|_| "info".into()));
        let mut server = TestServer {
            dir,
            config_path,
            config,
            child: None,
            ports,
            log_path: PathBuf::new(),
            log_filter,
        };
        server.log_path = server.dir.path().join("server.log");
        for (user, password) in &self.users {
            server.add_user(user, password);
        }
        server.spawn();
        server
    }
}

/// Replaces each `{port:NAME}` with a free port, the same one for the same NAME.
fn substitute_ports(text: &str, ports: &mut BTreeMap<String, u16>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{port:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "{port:".len()..];
        let end = after
            .find('}')
            .expect("`{port:NAME}` placeholder must be closed");
        let name = &after[..end];
        let port = *ports.entry(name.to_string()).or_insert_with(free_port);
        out.push_str(&port.to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// One message in the server's spool (`<data_dir>/spool`).
#[derive(Debug, Clone)]
pub struct SpooledMessage {
    /// Its metadata, as `portcullis queue show` reads it.
    pub meta: Value,
    /// The message as stored, `Received:` first.
    pub eml: String,
}

impl SpooledMessage {
    /// The first header of the message, unfolded. portcullis prepends its
    /// own `Received:` there.
    pub fn first_header(&self) -> String {
        let mut lines = self.eml.split("\r\n").flat_map(|l| l.split('\n'));
        let mut header = lines.next().unwrap_or_default().to_string();
        for line in lines {
            if line.starts_with(' ') || line.starts_with('\t') {
                header.push(' ');
                header.push_str(line.trim());
            } else {
                break;
            }
        }
        header
    }

    /// `auth.<field>` of the metadata as a string, or `None` when absent/null.
    pub fn auth_field(&self, field: &str) -> Option<String> {
        self.meta
            .get("auth")?
            .get(field)?
            .as_str()
            .map(str::to_string)
    }

    /// Asserts the message was accepted from `user` authenticated with
    /// `mechanism` over TLS, with no authorization identity other than
    /// `user` itself, and that the trace header says so.
    pub fn assert_submitted_by(&self, user: &str, mechanism: &str) {
        let meta = &self.meta;
        assert_eq!(
            self.auth_field("authn_id").as_deref(),
            Some(user),
            "authn_id in {meta:#}"
        );
        let mech = self.auth_field("mechanism").unwrap_or_default();
        assert!(
            mech.eq_ignore_ascii_case(mechanism),
            "mechanism {mech:?} != {mechanism:?} in {meta:#}"
        );
        let authz = self.auth_field("authz_id");
        assert!(
            authz.is_none() || authz.as_deref() == Some(user),
            "unexpected authz_id in {meta:#}"
        );
        assert!(
            meta.get("tls")
                .is_some_and(|t| t.get("version").is_some_and(|v| !v.is_null())),
            "tls missing in {meta:#}"
        );
        let received = self.first_header();
        assert!(
            received.starts_with("Received:"),
            "message does not start with Received: {:?}",
            self.eml
        );
        assert!(
            received.contains("ESMTPSA"),
            "Received header lacks `with ESMTPSA`: {received}"
        );
        assert!(
            self.eml.contains("Hello from the portcullis tests."),
            "body lost: {:?}",
            self.eml
        );
    }
}

/// A running `portcullis serve`, killed on drop.
pub struct TestServer {
    dir: TempDir,
    config_path: PathBuf,
    config: String,
    child: Option<Child>,
    ports: BTreeMap<String, u16>,
    log_path: PathBuf,
    log_filter: String,
}

impl TestServer {
    /// Starts a server with the default listeners, fixture users alice and
    /// bob, and `config_extra` appended to the config.
    pub fn start(config_extra: &str) -> TestServer {
        TestServer::builder().config(config_extra).start()
    }

    /// A builder for servers that need more than [`TestServer::start`].
    pub fn builder() -> Builder {
        Builder {
            config: String::new(),
            users: [ALICE, BOB]
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            files: Vec::new(),
            default_listeners: true,
            log_filter: None,
            mechanisms: None,
        }
    }

    /// Port of the STARTTLS submission listener.
    pub fn submission_port(&self) -> u16 {
        self.port("submission")
    }

    /// Port of the implicit-TLS submissions listener.
    pub fn implicit_port(&self) -> u16 {
        self.port("submissions")
    }

    /// Port of a listener by the name used in `{port:NAME}`.
    pub fn port(&self, name: &str) -> u16 {
        *self
            .ports
            .get(name)
            .unwrap_or_else(|| panic!("no port named {name:?}; have {:?}", self.ports))
    }

    /// The data directory (a temp dir removed on drop).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file the server was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything the server wrote to stderr and stdout so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A `portcullis` command with `--config` pointing at this server's config.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(portcullis_bin());
        command.args(args).arg("--config").arg(&self.config_path);
        command
    }

    /// Runs `portcullis user add NAME --password-stdin`.
    pub fn add_user(&self, user: &str, password: &str) {
        let mut child = self
            .cli(&["user", "add", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("portcullis user add can be spawned");
        let mut stdin = child.stdin.take().expect("stdin was piped");
        writeln!(stdin, "{password}").expect("password can be written to user add");
        drop(stdin);
        let out = child
            .wait_with_output()
            .expect("user add can be waited for");
        assert!(
            out.status.success(),
            "`portcullis user add {user}` failed: {}\nstderr: {}\nconfig:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.config
        );
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file can be opened");
        let log_err = log.try_clone().expect("log file handle can be cloned");
        let child = Command::new(portcullis_bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env("PORTCULLIS_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("portcullis serve can be spawned");
        self.child = Some(child);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let ports: Vec<u16> = self.ports.values().copied().collect();
        let mut pending = ports.clone();
        while !pending.is_empty() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "portcullis serve exited with {status} before listening\nconfig:\n{}\nlog:\n{}",
                    self.config,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!("ports {pending:?} not listening after {START_TIMEOUT:?}\nconfig:\n{}\nlog:\n{}", self.config, self.log());
            }
            pending.retain(|port| TcpStream::connect(("127.0.0.1", *port)).is_err());
            if !pending.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("the server was started")
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .expect("try_wait on our child works")
                .is_none(),
            None => false,
        }
    }

    /// Waits until the server process has exited (after a stop signal);
    /// panics with its log if it is still running after `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.is_running() {
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to clean up or flush anything.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            // kill() is SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same config, data dir and ports.
    pub fn restart(&mut self) {
        self.kill_hard();
        self.spawn();
    }

    /// Messages in the spool, oldest first, read through the spool crate
    /// beside the running server (a snapshot, as `portcullis queue` sees it).
    /// A message removed by delivery while it is read is left out.
    pub fn spool_messages(&self) -> Vec<SpooledMessage> {
        let Ok(spool) = Spool::attach(&self.dir.path().join("spool")) else {
            return Vec::new();
        };
        spool
            .list()
            .expect("spool index readable")
            .into_iter()
            .filter_map(|id| spool.read(&id).ok())
            .map(|(meta, eml)| SpooledMessage {
                meta: serde_json::to_value(meta).expect("spool metadata serialises"),
                eml: String::from_utf8_lossy(&eml).into_owned(),
            })
            .collect()
    }

    /// How many messages the spool holds, without reading them.
    pub fn spool_len(&self) -> usize {
        Spool::attach(&self.dir.path().join("spool"))
            .and_then(|spool| spool.list())
            .map(|ids| ids.len())
            .unwrap_or(0)
    }

    /// The only spooled message; panics (with the log) unless there is exactly one.
    pub fn single_message(&self) -> SpooledMessage {
        let mut messages = self.spool_messages();
        assert_eq!(
            messages.len(),
            1,
            "expected exactly one spooled message, got {messages:#?}\nlog:\n{}",
            self.log()
        );
        messages.remove(0)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill_hard();
        if std::thread::panicking() {
            eprintln!(
                "---- portcullis config ----\n{}\n---- portcullis log ----\n{}",
                self.config,
                self.log()
            );
        }
    }
}

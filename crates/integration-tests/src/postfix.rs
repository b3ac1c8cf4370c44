//! A private Postfix instance from Debian's package: its own `main.cf` and
//! `master.cf` in a temporary directory, its own queue and data
//! directories, `smtpd` on a free loopback port, run as `master -c DIR -d`
//! in a process group of its own, and the whole group stopped on drop. The
//! system's Postfix service (and `/etc/postfix`) is never used, so tests
//! run in parallel and leave nothing behind.
//!
//! What [`PostfixServer`] can be asked for: SASL through a Dovecot-protocol
//! auth server (`smtpd_sasl_type = dovecot`, at a Unix socket path or
//! `inet:host:port`), a policy service (`check_policy_service`), and where
//! accepted mail goes (relayed to a host and port, else discarded). By
//! default nobody is trusted by address (`mynetworks` names no loopback
//! address): only an authenticated client may send, which is what the
//! SASL tests need to see. [`PostfixRelay`] is the same instance set up the
//! other way: loopback is trusted, and it is a next hop or a client for the
//! ESMTP tests.
//!
//! Postfix's master must start as root (it drops to `mail_owner` for its
//! daemons), so [`PostfixServer::builder`]'s `start` answers `None` when
//! the tests do not run as root or Postfix is not installed
//! (`apt-get install postfix`, with the debconf answer "No configuration").

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where Debian installs Postfix's daemons.
const DAEMON_DIRECTORY: &str = "/usr/lib/postfix/sbin";

/// How long Postfix may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures a [`PostfixServer`].
#[derive(Debug, Default, Clone)]
pub struct PostfixBuilder {
    sasl_path: Option<String>,
    policy: Option<String>,
    relay: Option<(String, u16)>,
    main: Vec<String>,
}

impl PostfixBuilder {
    /// SASL through a Dovecot-protocol auth server: `smtpd_sasl_path`, an
    /// absolute Unix socket path or `inet:127.0.0.1:PORT`.
    pub fn dovecot_sasl(mut self, path: &str) -> Self {
        self.sasl_path = Some(path.to_string());
        self
    }

    /// `check_policy_service` at `address` (`inet:127.0.0.1:PORT` or a
    /// Unix socket path), asked for each recipient before anything else.
    pub fn policy_service(mut self, address: &str) -> Self {
        self.policy = Some(address.to_string());
        self
    }

    /// Relays every accepted message to `host:port` (default: discarded).
    pub fn relay_to(mut self, host: &str, port: u16) -> Self {
        self.relay = Some((host.to_string(), port));
        self
    }

    /// `main.cf` lines, `name = value` each (leading blanks are dropped,
    /// blank lines and `#` comments skipped; continuation lines are not
    /// supported). A parameter already set, by the builder or by an
    /// earlier line, is replaced where it stands rather than repeated.
    /// Postfix would take the later line, but it warns about the repeat,
    /// and its log daemon, logging that warning to its own socket as it
    /// starts, can wait forever behind the daemons' messages queued there:
    /// seen on a busy machine, where no smtpd ever greeted and the instance
    /// outlived its test.
    pub fn main_cf(mut self, lines: &str) -> Self {
        for line in lines.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(
                parameter(line).is_some(),
                "a main.cf line sets a parameter: {line:?}"
            );
            self.main.push(line.to_string());
        }
        self
    }

    /// Writes the configuration, creates the queue, starts the master and
    /// waits until smtpd answers with its greeting. `None` when Postfix
    /// cannot run here (not installed, or not root).
    pub fn start(self) -> Option<PostfixServer> {
        if !PostfixServer::available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temp dir can be created");
        let root = dir.path().to_path_buf();
        // Postfix's daemons run as `postfix` and chdir into the queue.
        set_mode(&root, 0o755);
        let port = crate::server::free_port();
        std::fs::write(root.join("main.cf"), self.main_cf_text(&root))
            .expect("main.cf can be written");
        std::fs::write(root.join("master.cf"), master_cf(port)).expect("master.cf can be written");
        for sub in ["queue", "data"] {
            std::fs::create_dir(root.join(sub)).expect("a postfix directory can be created");
        }
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(root.join("data"))
            .status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "chown postfix of the data directory"
        );
        // `postfix check` creates the queue's subdirectories with their
        // owners and modes (and warns about the temp dir's owner).
        let check = Command::new("postfix")
            .arg("-c")
            .arg(&root)
            .arg("check")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            check.is_ok_and(|s| s.success()),
            "postfix check failed; log:\n{}",
            std::fs::read_to_string(root.join("maillog")).unwrap_or_default()
        );
        // With `-d` the master keeps the test's process group, and its own
        // SIGTERM handler signals only a group led by itself: in a group of
        // its own, one signal to the group reaches every daemon.
        let child = Command::new(Path::new(DAEMON_DIRECTORY).join("master"))
            .arg("-c")
            .arg(&root)
            .arg("-d")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postfix master starts");
        let server = PostfixServer {
            child: Some(child),
            port,
            dir,
        };
        server.wait_for_greeting();
        Some(server)
    }

    fn main_cf_text(&self, root: &Path) -> String {
        let root = root.display();
        let mut lines = vec![
            "compatibility_level = 3.6".to_string(),
            format!("queue_directory = {root}/queue"),
            format!("data_directory = {root}/data"),
            format!("maillog_file = {root}/maillog"),
            format!("maillog_file_prefixes = {root}"),
            "mail_owner = postfix".into(),
            "setgid_group = postdrop".into(),
            "myhostname = postfix.test".into(),
            "mydestination =".into(),
            "inet_interfaces = 127.0.0.1".into(),
            "inet_protocols = ipv4".into(),
            // Nobody is trusted by address: mail needs AUTH.
            "mynetworks = 192.0.2.1/32".into(),
            "alias_maps =".into(),
            "alias_database =".into(),
            "local_recipient_maps =".into(),
            "biff = no".into(),
            "smtp_tls_security_level = none".into(),
            "smtpd_tls_security_level = none".into(),
            // A test sees its answers at once, not after a tarpit.
            "smtpd_error_sleep_time = 0".into(),
            "smtpd_soft_error_limit = 1000".into(),
            "smtpd_hard_error_limit = 1000".into(),
            "smtpd_client_connection_rate_limit = 0".into(),
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination"
                .into(),
        ];
        if let Some(path) = &self.sasl_path {
            lines.extend([
                "smtpd_sasl_auth_enable = yes".to_string(),
                "smtpd_sasl_type = dovecot".into(),
                format!("smtpd_sasl_path = {path}"),
            ]);
        }
        match &self.policy {
            Some(policy) => lines.extend([
                format!(
                    "smtpd_recipient_restrictions = check_policy_service {policy}, permit_sasl_authenticated, reject"
                ),
                // At DATA the request carries recipient_count: where a
                // message is counted against its sender's limits.
                format!("smtpd_data_restrictions = check_policy_service {policy}"),
            ]),
            None => lines.push(
                "smtpd_recipient_restrictions = permit_sasl_authenticated, reject".into(),
            ),
        }
        match &self.relay {
            Some((host, port)) => lines.push(format!("relayhost = [{host}]:{port}")),
            None => lines.push("default_transport = discard".into()),
        }
        // Every line sets a parameter: the builder's, and `main_cf` checks
        // the rest.
        for line in &self.main {
            let name = parameter(line);
            match lines.iter_mut().find(|l| parameter(l) == name) {
                Some(earlier) => *earlier = line.clone(),
                None => lines.push(line.clone()),
            }
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

/// The parameter a `main.cf` line sets (`name` of `name = value`).
fn parameter(line: &str) -> Option<&str> {
    line.split_once('=').map(|(name, _)| name.trim())
}

/// The services a relay needs, none chrooted; smtpd on `port`.
fn master_cf(port: u16) -> String {
    format!(
        "127.0.0.1:{port} inet n - n - - smtpd\n\
         pickup    unix  n - n 60 1 pickup\n\
         cleanup   unix  n - n - 0 cleanup\n\
         qmgr      unix  n - n 300 1 qmgr\n\
         rewrite   unix  - - n - - trivial-rewrite\n\
         bounce    unix  - - n - 0 bounce\n\
         defer     unix  - - n - 0 bounce\n\
         trace     unix  - - n - 0 bounce\n\
         verify    unix  - - n - 1 verify\n\
         flush     unix  n - n 1000? 0 flush\n\
         proxymap  unix  - - n - - proxymap\n\
         smtp      unix  - - n - - smtp\n\
         relay     unix  - - n - - smtp\n\
         showq     unix  n - n - - showq\n\
         error     unix  - - n - - error\n\
         retry     unix  - - n - - error\n\
         discard   unix  - - n - - discard\n\
         anvil     unix  - - n - 1 anvil\n\
         scache    unix  - - n - 1 scache\n\
         postlog   unix-dgram n - n - 1 postlogd\n"
    )
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("permissions can be set");
}

/// A running private Postfix.
pub struct PostfixServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl PostfixServer {
    pub fn builder() -> PostfixBuilder {
        PostfixBuilder::default()
    }

    /// Whether Postfix can run here: installed, and the tests run as root.
    pub fn available() -> bool {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        root && Path::new(DAEMON_DIRECTORY).join("master").is_file()
    }

    /// smtpd's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The configuration directory (`postfix -c`).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Waits until smtpd sends its `220` (master up, smtpd spawned).
    fn wait_for_greeting(&self) {
        use std::io::Read;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let mut greeting = [0u8; 4];
                if tcp.read_exact(&mut greeting).is_ok() && &greeting == b"220 " {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "postfix did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PostfixServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM to the instance's process group (see `start`): the
            // master and every daemon stop. A daemon that cannot (stuck in
            // a system call) is killed with the group once the master is
            // gone, or after 10 s.
            let group = format!("-{}", child.id());
            let signal = |name: &str| {
                let _ = Command::new("kill")
                    .args([name, "--", &group])
                    .stderr(Stdio::null())
                    .status();
            };
            signal("-TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            signal("-KILL");
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- postfix log ---\n{}", self.log());
        }
    }
}

/// A private Postfix that takes mail from loopback without AUTH and holds
/// it (read with [`PostfixRelay::held_messages`]), or, given a
/// `relayhost`, `default_transport = smtp` and `header_checks =` (no
/// hold), relays it. With `debug_peer_list = 127.0.0.1` both its SMTP
/// server and its SMTP client log each command and reply exchanged with
/// loopback peers, so a test can read which extensions were used (`EHLO`,
/// `MAIL FROM ... SMTPUTF8 RET=HDRS`, `BDAT n LAST`) in
/// [`PostfixRelay::log`].
///
/// It is a [`PostfixServer`] with other settings: it starts, waits and
/// stops the same way.
pub struct PostfixRelay {
    server: PostfixServer,
}

/// What a relay sets over [`PostfixBuilder`]'s settings.
const RELAY_MAIN_CF: &[&str] = &[
    "mydomain = test",
    "myorigin = postfix.test",
    "mynetworks = 127.0.0.0/8",
    "smtpd_relay_restrictions = permit_mynetworks, reject",
    "smtpd_recipient_restrictions =",
    "smtputf8_enable = yes",
    "debug_peer_list = 127.0.0.1",
    "header_checks = static:HOLD",
];

impl PostfixRelay {
    /// Starts an instance with `main_cf_extra`'s lines over the relay's
    /// settings (`relayhost = [127.0.0.1]:PORT` for a client role,
    /// `smtputf8_enable = no`, `smtpd_discard_ehlo_keywords = dsn`...): a
    /// line replaces the parameter it names, else is added at the end (see
    /// [`PostfixBuilder::main_cf`]). `None` without Postfix or without
    /// root.
    pub fn start(main_cf_extra: &str) -> Option<PostfixRelay> {
        PostfixServer::builder()
            .main_cf(&RELAY_MAIN_CF.join("\n"))
            .main_cf(main_cf_extra)
            .start()
            .map(|server| PostfixRelay { server })
    }

    /// The port its `smtpd` listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Asks the queue manager to try deferred mail now (`postqueue -f`).
    pub fn flush(&self) {
        let _ = Command::new("postqueue")
            .arg("-c")
            .arg(self.server.config_dir())
            .arg("-f")
            .status();
    }

    /// The messages on hold, as `postcat` prints them (envelope records,
    /// then the message): one string each.
    pub fn held_messages(&self) -> Vec<String> {
        let hold = self.server.config_dir().join("queue/hold");
        let Ok(entries) = std::fs::read_dir(&hold) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let out = Command::new("postcat")
                    .arg("-c")
                    .arg(self.server.config_dir())
                    .arg(e.path())
                    .output()
                    .ok()?;
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_set_again_replaces_the_earlier_line() {
        let text = PostfixServer::builder()
            .main_cf("smtputf8_enable = yes")
            .main_cf("default_transport = smtp")
            .main_cf("\n  smtputf8_enable=no\n# a comment\nsmtpd_discard_ehlo_keywords = dsn\n")
            .main_cf_text(Path::new("/x"));
        let named = |name: &str| {
            text.lines()
                .filter(|l| parameter(l) == Some(name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            named("default_transport"),
            ["default_transport = smtp"],
            "{text}"
        );
        assert_eq!(named("smtputf8_enable"), ["smtputf8_enable=no"], "{text}");
        assert_eq!(named("smtpd_discard_ehlo_keywords").len(), 1, "{text}");
        assert!(text.starts_with("compatibility_level = 3.6\n"), "{text}");
    }
}

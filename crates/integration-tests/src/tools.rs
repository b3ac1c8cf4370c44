//! Running third-party clients (swaks, curl, python3) as child processes,
//! with a time limit so a hung server fails the test instead of hanging it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest a client process may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a client process did.
#[derive(Debug)]
pub struct ToolOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status (a killed-for-timeout process is reported by a panic instead).
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl ToolOutput {
    /// stdout followed by stderr.
    pub fn transcript(&self) -> String {
        format!(
            "$ {}\n[exit {}]\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// Panics with the transcript unless stdout or stderr contains `needle`.
    pub fn assert_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle) || self.stderr.contains(needle),
            "expected {needle:?} in the output of the client\n{}",
            self.transcript()
        );
        self
    }

    /// Panics with the transcript if stdout or stderr contains `needle`.
    pub fn assert_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "did not expect {needle:?} in the output of the client\n{}",
            self.transcript()
        );
        self
    }

    /// Panics with the transcript unless the exit status is `success`.
    pub fn assert_success(&self, success: bool) -> &Self {
        assert_eq!(
            self.status.success(),
            success,
            "unexpected exit status\n{}",
            self.transcript()
        );
        self
    }

    /// Lines `LABEL: rest` printed by [`python`] scripts through `show()`.
    pub fn labelled(&self) -> BTreeMap<String, String> {
        self.stdout
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(label, rest)| (label.to_string(), rest.to_string()))
            .collect()
    }

    /// The reply a python script printed under `label`, e.g. `"235 2.7.0 ..."`.
    pub fn reply(&self, label: &str) -> String {
        match self.labelled().get(label) {
            Some(reply) => reply.clone(),
            None => panic!(
                "python printed nothing labelled {label:?}\n{}",
                self.transcript()
            ),
        }
    }

    /// Asserts the reply under `label` starts with `expected` (e.g. `"535 5.7.8"`).
    pub fn assert_reply(&self, label: &str, expected: &str) -> &Self {
        let reply = self.reply(label);
        assert!(
            reply.starts_with(expected),
            "{label}: expected {expected:?}, got {reply:?}\n{}",
            self.transcript()
        );
        self
    }
}

/// Runs a program with optional stdin, capturing both output streams.
fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> ToolOutput {
    let scratch = tempfile::tempdir().expect("a temp dir can be created");
    let out_path = scratch.path().join("stdout");
    let err_path = scratch.path().join("stderr");
    let command = format!(
        "{program} {}",
        args.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(File::create(&out_path).expect("stdout capture file"))
        .stderr(File::create(&err_path).expect("stderr capture file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); is it installed?"));
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // The client may exit before reading everything; that shows in its output.
        let _ = pipe.write_all(bytes);
    }
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on our child works") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command} still running after {TOOL_TIMEOUT:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                read(&out_path),
                read(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ToolOutput {
        command,
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

fn shell_quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Runs `swaks` with the given arguments (add `--server 127.0.0.1:PORT`).
/// Server replies show in stdout as `<-  250 ...` / `<~  235 ...` (`<~*` for errors).
pub fn swaks(args: &[&str]) -> ToolOutput {
    let mut all = vec!["--timeout", "20", "--helo", "client.test"];
    all.extend_from_slice(args);
    run("swaks", &all, None)
}

/// Runs `curl -v` with the given arguments and `stdin` as the upload (use
/// `--upload-file -`). Server replies show in stderr as `< 235 ...`.
pub fn curl(args: &[&str], stdin: &str) -> ToolOutput {
    let mut all = vec!["-v", "--max-time", "30"];
    all.extend_from_slice(args);
    run("curl", &all, Some(stdin.as_bytes()))
}

/// swaks sending one message from [`crate::FROM`] to [`crate::TO`] over
/// STARTTLS to `server`'s submission port, logged in with AUTH PLAIN as
/// `user`.
pub fn swaks_plain(server: &crate::TestServer, user: &str, password: &str) -> ToolOutput {
    let address = format!("127.0.0.1:{}", server.submission_port());
    swaks(&[
        "--server",
        &address,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        crate::FROM,
        "--to",
        crate::TO,
        "--body",
        "portcullis test",
    ])
}

/// Runs GNU SASL's `gsasl` client (add `--smtp --connect=127.0.0.1:PORT`).
/// The SMTP dialogue, both sides, shows in stderr with `--verbose`.
pub fn gsasl(args: &[&str]) -> ToolOutput {
    run("gsasl", args, None)
}

/// Runs `msmtp` with the given arguments, `stdin` as the message. With
/// `--debug` the SMTP dialogue shows in stdout (`<-- 235 ...`).
pub fn msmtp(args: &[&str], stdin: &str) -> ToolOutput {
    run("msmtp", args, Some(stdin.as_bytes()))
}

/// Helpers every python script can use; `sys.argv[1:]` are the ports given.
const PYTHON_PRELUDE: &str = r#"
import base64, smtplib, socket, ssl, sys, threading
PORTS = [int(p) for p in sys.argv[1:]]
PORT = PORTS[0] if PORTS else 0
FROM, TO = "alice@example.test", "rcpt@example.test"
MSG = ("From: <alice@example.test>\r\nTo: <rcpt@example.test>\r\nSubject: python\r\n"
       "\r\nHello from the portcullis tests.\r\n")

def ctx():
    return ssl._create_unverified_context()

def connect(starttls=True, port=None):
    s = smtplib.SMTP("127.0.0.1", port or PORT, local_hostname="client.test", timeout=15)
    s.ehlo()
    if starttls:
        s.starttls(context=ctx())
        s.ehlo()
    return s

def connect_tls(port):
    s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.test", timeout=15, context=ctx())
    s.ehlo()
    return s

def b64(text):
    return base64.b64encode(text.encode()).decode()

_out = threading.Lock()

def say(line):
    """One whole line per call, so lines from threads never interleave."""
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

def show(label, reply):
    code, msg = reply
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    say(f"{label}: {code} {msg}".replace("\n", " | "))

def login(label, s, user, password, mech, initial_response_ok=True):
    s.user, s.password = user, password
    method = {"CRAM-MD5": s.auth_cram_md5, "PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
    try:
        show(label, s.auth(mech, method, initial_response_ok=initial_response_ok))
    except smtplib.SMTPAuthenticationError as e:
        show(label, (e.smtp_code, e.smtp_error))
    except (smtplib.SMTPException, OSError) as e:
        say(f"{label}: EXC {e!r}")

def submit(label, s):
    show(label + ".mail", s.mail(FROM))
    show(label + ".rcpt", s.rcpt(TO))
    show(label + ".data", s.data(MSG))

def closed(s):
    """True when the server has closed the connection."""
    try:
        s.sock.settimeout(5)
        return s.sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True
    except socket.timeout:
        return False
"#;

/// Runs a python3 script (after [`PYTHON_PRELUDE`]) with `ports` as
/// arguments. The script reports with `show(label, reply)`; read the result
/// with [`ToolOutput::reply`].
pub fn python(script: &str, ports: &[u16]) -> ToolOutput {
    let source = format!("{PYTHON_PRELUDE}\n{}\n", dedent(script));
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut args = vec!["-"];
    args.extend(ports.iter().map(String::as_str));
    run("python3", &args, Some(source.as_bytes()))
}

/// Removes the indentation common to all non-blank lines, so scripts can be
/// written indented inside Rust string literals.
fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

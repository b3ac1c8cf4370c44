//! Command line: raw clap flags, then one validated [`Plan`].
//!
//! The raw struct mirrors the flags; [`Args::into_plan`] checks the
//! combinations once (a password for every mechanism that needs one, no
//! `--sessions` together with `--duration`, ...) so the rest of the tool
//! never re-checks them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use crate::mech::{Mechanism, Password};
use crate::users::{self, User};

/// Closed-loop load against an SMTP submission server: C connections, each
/// running sessions back to back (connect, EHLO, [STARTTLS], AUTH, N
/// messages, QUIT). Prints rates, latencies and errors by step and reply.
#[derive(Debug, Parser)]
#[command(name = "portcullis-load", version, about, long_about = None)]
pub struct Args {
    /// Server to load, HOST:PORT.
    #[arg(default_value = "127.0.0.1:2587")]
    pub target: String,

    /// Concurrent connections (closed loop: each starts its next session when
    /// the last one ends). In --hold mode: connections being set up at once.
    #[arg(short = 'c', long = "connections", default_value_t = 50)]
    pub connections: usize,

    /// Messages per session; 0 = AUTH-only sessions (connect, EHLO, AUTH, QUIT).
    #[arg(short = 'n', long = "messages", default_value_t = 1)]
    pub messages: u32,

    /// Message size in bytes, headers included (at least the headers).
    #[arg(short = 's', long = "size", default_value_t = 1024)]
    pub size: usize,

    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    pub rcpts: u32,

    /// Run exactly this many sessions (all counted) instead of a duration.
    #[arg(long, conflicts_with_all = ["duration", "warmup"])]
    pub sessions: Option<u64>,

    /// Measurement window in seconds (default 10). In --hold mode: how long
    /// to hold the connections (default: until Ctrl-C).
    #[arg(short = 'd', long)]
    pub duration: Option<f64>,

    /// Seconds of load before the window opens; nothing in them is counted
    /// but errors.
    #[arg(short = 'w', long, default_value_t = 2.0)]
    pub warmup: f64,

    /// SASL mechanism.
    #[arg(long = "auth", value_enum, default_value_t = Mechanism::Plain, ignore_case = true)]
    pub mechanism: Mechanism,

    /// User name (authentication identity).
    #[arg(short = 'u', long)]
    pub user: Option<String>,

    /// Password (or XOAUTH2 bearer token). Visible in `ps`: on shared
    /// machines prefer --password-env.
    #[arg(short = 'p', long, conflicts_with = "password_env")]
    pub password: Option<String>,

    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,

    /// Log in as the users listed in FILE, one `user:password` or
    /// `user<TAB>password` per line, taken round-robin by the sessions.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["user", "password", "password_env", "user_pattern"])]
    pub users: Option<PathBuf>,

    /// Log in as numbered users taken round-robin: `{n}` is replaced by
    /// 1, 2, ... --user-count (e.g. 'u{n}@example.com').
    #[arg(
        long,
        value_name = "PATTERN",
        requires = "user_count",
        conflicts_with = "user"
    )]
    pub user_pattern: Option<String>,

    /// With --user-pattern: user n's password, `{n}` replaced (instead of
    /// one --password or --password-env for all).
    #[arg(long, value_name = "PATTERN", requires = "user_pattern", conflicts_with_all = ["password", "password_env"])]
    pub password_pattern: Option<String>,

    /// With --user-pattern: how many numbered users.
    #[arg(long, value_name = "N", requires = "user_pattern")]
    pub user_count: Option<usize>,

    /// Each session logs in as a user picked at random (uniformly) from
    /// --users or --user-pattern, instead of round-robin: the many-user
    /// steady state, where consecutive sessions rarely share a user.
    #[arg(long)]
    pub random_users: bool,

    /// STARTTLS after the first EHLO (full handshake each session).
    #[arg(long, conflicts_with = "tls")]
    pub starttls: bool,

    /// Implicit TLS (RFC 8314, port 465 style): handshake before the greeting.
    #[arg(long)]
    pub tls: bool,

    /// Let sessions resume earlier TLS sessions (tickets/ids) instead of
    /// paying a full handshake each time.
    #[arg(long)]
    pub tls_resume: bool,

    /// Accept any server certificate (self-signed test servers). Handshake
    /// signatures are still checked.
    #[arg(long)]
    pub insecure: bool,

    /// Trust the CA certificates in this PEM file instead of the built-in
    /// roots (a self-signed server certificate is not a CA: use --insecure).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// TLS server name (default: the host part of TARGET).
    #[arg(long)]
    pub sni: Option<String>,

    /// Do not pipeline MAIL/RCPT/DATA even when the server offers PIPELINING.
    #[arg(long)]
    pub no_pipelining: bool,

    /// Open N authenticated connections, keep them idle until Ctrl-C or
    /// --duration, then QUIT them; reports how many were held.
    #[arg(long, value_name = "N", conflicts_with = "sessions")]
    pub hold: Option<usize>,

    /// With --hold: PID of the server (same machine, Linux) whose VmRSS is
    /// read before and after the connections open, giving memory per connection.
    #[arg(long, value_name = "PID", requires = "hold")]
    pub server_pid: Option<u32>,

    /// Per-step timeout in seconds (connect, each reply, TLS handshake).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,

    /// EHLO name.
    #[arg(long, default_value = "load.portcullis.test")]
    pub ehlo: String,

    /// Envelope sender.
    #[arg(long, default_value = "load@portcullis.test")]
    pub from: String,

    /// Envelope recipient (with --rcpts > 1, a number is added before the @).
    #[arg(long, default_value = "sink@portcullis.test")]
    pub to: String,

    /// Tokio worker threads; 1 = a current-thread runtime (cheapest client,
    /// leaves the most CPU to a server on the same machine); 0 = one per CPU.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,

    /// Measure no server: hash with argon2id and the parameters portcullis
    /// stores passwords with, on --threads threads (0: one per CPU) for
    /// --duration seconds, and print hashes per second: the ceiling of cold
    /// logins (no verified-cache hit) per second on this machine.
    #[arg(long, conflicts_with_all = ["hold", "sessions"])]
    pub hash_rate: bool,

    /// Print one JSON object with every result on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// How the TLS layer is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS at all.
    None,
    /// STARTTLS after the first EHLO.
    StartTls,
    /// Handshake right after connect.
    Implicit,
}

/// When the run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Exactly this many sessions.
    Sessions(u64),
    /// Warm up, then measure for a window.
    Window { warmup: Duration, window: Duration },
}

/// What the tool does.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Load(Stop),
    /// Hold N connections for a time (None: until Ctrl-C).
    Hold {
        count: usize,
        duration: Option<Duration>,
        server_pid: Option<u32>,
    },
}

/// Everything a session needs, validated.
#[derive(Debug)]
pub struct Plan {
    pub target: String,
    pub address: SocketAddr,
    pub server_name: String,
    pub connections: usize,
    pub messages: u32,
    pub size: usize,
    pub recipients: Vec<String>,
    pub from: String,
    pub ehlo: String,
    pub mechanism: Mechanism,
    /// Who sessions log in as, round-robin (empty with `--auth none`).
    pub users: Vec<User>,
    /// Pick each session's user at random instead.
    pub random_users: bool,
    pub tls: TlsMode,
    pub tls_resume: bool,
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    pub pipelining: bool,
    pub step_timeout: Duration,
    pub mode: Mode,
    pub threads: usize,
    pub json: bool,
    pub quiet: bool,
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag} {value}: not a duration"))
}

impl Args {
    /// Checks the flags together and resolves the target address.
    pub fn into_plan(self) -> anyhow::Result<Plan> {
        if self.connections == 0 {
            bail!("-c must be at least 1");
        }
        if self.rcpts == 0 {
            bail!("--rcpts must be at least 1");
        }
        if self.tls_resume && !(self.starttls || self.tls) {
            bail!("--tls-resume needs --starttls or --tls");
        }
        let address = self
            .target
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {:?} (expected HOST:PORT)", self.target))?
            .next()
            .with_context(|| format!("{:?} resolves to no address", self.target))?;
        let host = match self.target.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => self.target.as_str(),
        };
        let server_name = self.sni.clone().unwrap_or_else(|| host.to_string());
        let users = self.credentials()?;
        let tls = match (self.starttls, self.tls) {
            (true, _) => TlsMode::StartTls,
            (_, true) => TlsMode::Implicit,
            _ => TlsMode::None,
        };
        let mode = match self.hold {
            Some(count) => Mode::Hold {
                count,
                duration: self
                    .duration
                    .map(|d| seconds(d, "--duration"))
                    .transpose()?,
                server_pid: self.server_pid,
            },
            None => Mode::Load(match self.sessions {
                Some(n) => Stop::Sessions(n),
                None => Stop::Window {
                    warmup: seconds(self.warmup, "--warmup")?,
                    window: seconds(self.duration.unwrap_or(10.0), "--duration")?,
                },
            }),
        };
        let recipients = recipients(&self.to, self.rcpts);
        Ok(Plan {
            target: self.target,
            address,
            server_name,
            connections: self.connections,
            messages: self.messages,
            size: self.size,
            recipients,
            from: self.from,
            ehlo: self.ehlo,
            mechanism: self.mechanism,
            users,
            tls,
            tls_resume: self.tls_resume,
            insecure: self.insecure,
            ca_file: self.ca_file,
            pipelining: !self.no_pipelining,
            random_users: self.random_users,
            step_timeout: seconds(self.timeout, "--timeout")?,
            mode,
            threads: self.threads,
            json: self.json,
            quiet: self.quiet,
        })
    }

    fn credentials(&self) -> anyhow::Result<Vec<User>> {
        if self.mechanism == Mechanism::None {
            return Ok(Vec::new());
        }
        if let Some(path) = &self.users {
            return users::from_file(path);
        }
        let password = self.password()?;
        if let Some(pattern) = &self.user_pattern {
            if password.is_none() && self.password_pattern.is_none() {
                bail!("--user-pattern needs --password-pattern, --password or --password-env");
            }
            return users::numbered(
                pattern,
                self.user_count.unwrap_or(0),
                self.password_pattern.as_deref(),
                password.as_ref(),
            );
        }
        let Some(name) = self.user.clone() else {
            bail!(
                "--auth {} needs --user, --users or --user-pattern",
                self.mechanism.name()
            );
        };
        let Some(password) = password else {
            bail!(
                "--auth {} needs --password or --password-env",
                self.mechanism.name()
            );
        };
        Ok(vec![User { name, password }])
    }

    /// The one password given by --password or --password-env, if any.
    fn password(&self) -> anyhow::Result<Option<Password>> {
        Ok(match (&self.password, &self.password_env) {
            (Some(p), _) => Some(Password::new(p.clone())),
            (None, Some(var)) => {
                Some(Password::new(std::env::var(var).with_context(|| {
                    format!("--password-env {var}: variable not set")
                })?))
            }
            (None, None) => None,
        })
    }
}

/// `--to` once, or numbered copies (`sink1@`, `sink2@`, ...) for --rcpts > 1.
fn recipients(to: &str, count: u32) -> Vec<String> {
    if count == 1 {
        return vec![to.to_string()];
    }
    let (local, domain) = to.rsplit_once('@').unwrap_or((to, "portcullis.test"));
    (1..=count)
        .map(|i| format!("{local}{i}@{domain}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
        let mut full = vec!["portcullis-load"];
        full.extend_from_slice(argv);
        Args::try_parse_from(full)?.into_plan()
    }

    #[test]
    fn defaults_are_a_ten_second_window_with_plain() {
        let p = plan(&["127.0.0.1:25", "-u", "a", "-p", "b"]).unwrap();
        assert!(
            matches!(p.mode, Mode::Load(Stop::Window { window, .. }) if window.as_secs() == 10)
        );
        assert_eq!(p.mechanism, Mechanism::Plain);
        assert_eq!(p.server_name, "127.0.0.1");
        assert_eq!(p.recipients, ["sink@portcullis.test"]);
    }

    #[test]
    fn a_mechanism_needs_a_user_and_a_password() {
        assert!(plan(&["127.0.0.1:25"]).is_err());
        assert!(plan(&["127.0.0.1:25", "-u", "a"]).is_err());
        assert!(plan(&["127.0.0.1:25", "--auth", "none"]).is_ok());
    }

    #[test]
    fn numbered_users_need_a_count_and_a_password() {
        let p = plan(&[
            "127.0.0.1:25",
            "--user-pattern",
            "u{n}",
            "--user-count",
            "3",
            "--password-pattern",
            "pw-{n}",
        ])
        .unwrap();
        let names: Vec<_> = p.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["u1", "u2", "u3"]);
        assert_eq!(p.users[2].password.expose(), "pw-3");
        let shared = plan(&[
            "127.0.0.1:25",
            "--user-pattern",
            "u{n}",
            "--user-count",
            "2",
            "-p",
            "same",
        ])
        .unwrap();
        assert_eq!(shared.users[1].password.expose(), "same");
        assert!(plan(&[
            "127.0.0.1:25",
            "--user-pattern",
            "u{n}",
            "--user-count",
            "2"
        ])
        .is_err());
        assert!(plan(&["127.0.0.1:25", "--user-pattern", "u{n}", "-p", "x"]).is_err());
        assert!(plan(&["127.0.0.1:25", "--users", "f", "-u", "a", "-p", "b"]).is_err());
    }

    #[test]
    fn sessions_and_duration_exclude_each_other() {
        assert!(plan(&[
            "127.0.0.1:25",
            "--auth",
            "none",
            "--sessions",
            "5",
            "-d",
            "3"
        ])
        .is_err());
    }

    #[test]
    fn mechanism_names_are_case_insensitive() {
        let p = plan(&["127.0.0.1:25", "--auth", "cram-md5", "-u", "a", "-p", "b"]).unwrap();
        assert_eq!(p.mechanism, Mechanism::CramMd5);
    }

    #[test]
    fn several_recipients_are_numbered() {
        assert_eq!(recipients("x@d.test", 2), ["x1@d.test", "x2@d.test"]);
    }
}

//! `portcullis`: the binary. Parses the command line, sets up logging, and
//! wires the library crates together; it is the only crate that knows all of
//! them, and the only one that uses `anyhow`.

mod activity;
mod allocator;
mod auth_test;
mod bans;
mod credentials;
mod logging;
mod policy;
mod queue;
mod serve;
mod stores;
mod users;

use std::path::PathBuf;

/// mimalloc, with the biggest buffers apart: see `allocator.rs`.
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use portcullis_config::Config;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "ESMTP submission server with a careful SMTP AUTH layer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the configuration comes from.
#[derive(Args, Clone)]
struct ConfigArgs {
    /// TOML config file; without it, the development defaults are used.
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (certificate, users, spool); overrides the config file.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the config, logging each key written under a deprecated name.
    fn load(&self) -> Result<Config> {
        let config = match &self.config {
            Some(path) => Config::load(path, self.data_dir.as_deref())?,
            None => Config::development(self.data_dir.as_deref()),
        };
        for deprecation in &config.deprecations {
            tracing::warn!(key = deprecation.old, "{deprecation}");
        }
        Ok(config)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Manage users in the configured user store.
    User {
        #[command(subcommand)]
        action: users::UserAction,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage app passwords: scoped, revocable passwords for one device or script.
    Credential {
        #[command(subcommand)]
        action: credentials::CredentialAction,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Validate a config file and exit.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Inspect and manage the delivery queue (works beside a running server).
    Queue {
        #[command(subcommand)]
        action: queue::QueueAction,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// See, add and lift bans (brute-force defence).
    Ban {
        #[command(subcommand)]
        action: bans::BanAction,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Authentication tools.
    Auth {
        #[command(subcommand)]
        action: auth_test::AuthAction,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn main() -> std::process::ExitCode {
    serve::tune_allocator();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        quiet_on_closed_pipe();
    }
    let log_json = matches!(cli.command, Command::Serve { log_json: true, .. });
    logging::init(log_json);
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("portcullis: {}", describe(&error));
            std::process::ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<std::process::ExitCode> {
    match command {
        Command::Serve { config, .. } => {
            let loaded = config.load()?;
            serve::run(loaded, Box::new(move || config.load()))
        }
        Command::User { action, config } => {
            let loaded = config.load()?;
            if !action.may_create_data_dir() {
                require_data_dir(&loaded)?;
            }
            users::run(action, &loaded)
        }
        Command::Credential { action, config } => {
            let loaded = config.load()?;
            require_data_dir(&loaded)?;
            credentials::run(action, &loaded)
        }
        Command::CheckConfig { config } => check_config(&config.load()?),
        Command::Auth { action, config } => {
            let loaded = config.load()?;
            require_data_dir(&loaded)?;
            auth_test::run(action, &loaded)
        }
        Command::Queue { action, config } => {
            let loaded = config.load()?;
            require_data_dir(&loaded)?;
            queue::run(action, &loaded)
        }
        Command::Ban { action, config } => {
            let loaded = config.load()?;
            if loaded.limits.store == portcullis_config::defence::LimitsStore::Local {
                require_data_dir(&loaded)?;
            }
            bans::run(action, &loaded)
        }
    }
}

/// `check-config`: the config parses and validates, and every file it
/// names (certificate, key, client CA, JWKS, user file, policy script)
/// opens and parses. Creates nothing.
fn check_config(config: &Config) -> Result<std::process::ExitCode> {
    check_files(config)?;
    let policy = policy::load(config)?;
    println!(
        "config ok: {} listener(s), users in {}, spool in {}",
        config.listeners.len(),
        config.users,
        config.spool_dir.display()
    );
    for l in &config.listeners {
        println!("  {} {} tls={} auth={}", l.name, l.address, l.tls, l.auth);
    }
    if let Some(policy) = policy {
        println!(
            "  policy {}: events {}, mechanisms {}",
            policy.script().display(),
            list_or_none(policy.registered()),
            list_or_none(policy.mechanisms())
        );
        for line in policy.ignored() {
            println!("    {line}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Every file the config names opens and parses: the server's (see
/// `portcullis_server::preflight`) and the delivery routes' CA files.
fn check_files(config: &Config) -> Result<()> {
    portcullis_server::preflight::check_files(config)?;
    if let Some(delivery) = &config.delivery {
        portcullis_delivery::tls::TlsConfigs::new(&delivery.routes)
            .map_err(|e| anyhow::anyhow!("delivery: {e}"))?;
    }
    Ok(())
}

/// `a, b, c`, or `none`.
fn list_or_none<S: std::fmt::Display>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Admin commands read what a server left in its data directory; run from
/// the wrong directory they must say so, not make an empty one and answer
/// "0 messages" or "unknown user". Only `serve` and `user add` create it.
fn require_data_dir(config: &Config) -> Result<()> {
    let dir = &config.data_dir;
    if dir.is_dir() {
        return Ok(());
    }
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    anyhow::bail!(
        "no data directory at {}: nothing has run here yet (run this where the server runs, \
         or name the directory with --data-dir or the config with --config)",
        shown.display()
    )
}

/// An error and its causes, each said once: many errors already name their
/// cause in their own text (`cannot read X: No such file…`), and printing
/// the chain again would repeat it.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

/// `portcullis queue list | head`: when the reader goes away, a command
/// that prints stops quietly, as other Unix tools do, instead of panicking
/// in `println!` with a broken-pipe backtrace. (Rust ignores SIGPIPE; the
/// default action ends the process silently. `serve` keeps ignoring it: a
/// client that hangs up must never end the server.)
#[allow(unsafe_code)] // libc, see the SAFETY note below
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition, before any other
    // thread exists; no handler code is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

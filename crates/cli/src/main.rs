//! `portcullis`: the binary. Parses the command line, sets up logging, and
//! wires the library crates together; it is the only crate that knows all of
//! them, and the only one that uses `anyhow`.

mod auth_test;
mod bans;
mod policy;
mod queue;
mod serve;
mod stores;
mod users;

use std::path::PathBuf;

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
    fn load(&self) -> Result<Config> {
        Ok(match &self.config {
            Some(path) => Config::load(path, self.data_dir.as_deref())?,
            None => Config::development(self.data_dir.as_deref()),
        })
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
    /// Manage users in the SQLite store.
    User {
        #[command(subcommand)]
        action: users::UserAction,
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
    let cli = Cli::parse();
    let log_json = matches!(cli.command, Command::Serve { log_json: true, .. });
    init_logging(log_json);
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("portcullis: {error:#}");
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
        Command::User { action, config } => users::run(action, &config.load()?),
        Command::CheckConfig { config } => {
            let loaded = config.load()?;
            // The route CA files are read when delivery starts; read them now.
            if let Some(delivery) = &loaded.delivery {
                portcullis_delivery::tls::TlsConfigs::new(&delivery.routes)
                    .map_err(|e| anyhow::anyhow!("delivery: {e}"))?;
            }
            println!(
                "config ok: {} listener(s), users in {:?}, spool in {}",
                loaded.listeners.len(),
                loaded.users,
                loaded.spool_dir.display()
            );
            for l in &loaded.listeners {
                println!(
                    "  {} {} tls={:?} auth={:?}",
                    l.name, l.address, l.tls, l.auth
                );
            }
            if let Some(policy) = policy::load(&loaded)? {
                println!(
                    "  policy {}: events {:?}, mechanisms {:?}",
                    policy.script().display(),
                    policy.registered(),
                    policy.mechanisms()
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Auth { action, config } => auth_test::run(action, &config.load()?),
        Command::Queue { action, config } => queue::run(action, &config.load()?),
        Command::Ban { action, config } => bans::run(action, &config.load()?),
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

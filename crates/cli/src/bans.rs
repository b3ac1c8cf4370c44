//! `portcullis ban list|add|del`: the bans a running server enforces.
//!
//! With local counting the bans are in `bans.json` in the data directory,
//! which the server reloads within a second of a change; with
//! `limits.backend = "redis://…"` they are in Redis, shared by every
//! instance.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use portcullis_config::defence::LimitsStore;
use portcullis_config::Config;
use portcullis_limits::{Ban, BanFile, LimitsBackend, RedisBackend, Timestamp};

#[derive(Subcommand)]
pub enum BanAction {
    /// The bans in force: address, time left, reason.
    List,
    /// Ban an address (refused with 421 at the greeting).
    Add {
        /// The client address (IPv4 or IPv6).
        ip: IpAddr,
        /// How long, e.g. 30m, 12h, 7d.
        #[arg(long, default_value = "1d")]
        duration: String,
        /// Why, shown by `ban list`.
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Lift the ban on an address.
    Del {
        /// The client address (IPv4 or IPv6).
        ip: IpAddr,
    },
}

pub fn run(action: BanAction, config: &Config) -> Result<ExitCode> {
    let file = match &config.limits.store {
        LimitsStore::Local => {
            BanFile::new(config.data_dir.join(portcullis_server::defence::BAN_FILE))
        }
        LimitsStore::Redis { url } => return run_redis(action, url),
    };
    let now = Timestamp::now();
    match action {
        BanAction::List => {
            let bans: Vec<Ban> = file
                .load()?
                .into_iter()
                .filter(|b| b.in_force(now))
                .collect();
            print_bans(&bans, now);
        }
        BanAction::Add {
            ip,
            duration,
            reason,
        } => {
            let ban = new_ban(ip, &duration, reason, now)?;
            file.add(ban, now)?;
            println!("banned {ip}");
        }
        BanAction::Del { ip } => {
            if !file.remove(ip, now)? {
                println!("{ip} was not banned");
                return Ok(ExitCode::from(1));
            }
            println!("lifted the ban on {ip}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn new_ban(ip: IpAddr, duration: &str, reason: String, now: Timestamp) -> Result<Ban> {
    let duration: Duration = portcullis_config::duration::parse(duration)?;
    Ok(Ban {
        ip,
        reason,
        created_ms: now.millis(),
        expires_ms: (now + duration).millis(),
    })
}

pub(crate) fn print_bans(bans: &[Ban], now: Timestamp) {
    if bans.is_empty() {
        println!("no bans");
    }
    for ban in bans {
        println!(
            "{:<39} {:>8}s left  {}",
            ban.ip,
            ban.remaining_secs(now),
            ban.reason
        );
    }
}

/// The same actions against the bans in Redis, which every instance reads.
fn run_redis(action: BanAction, url: &str) -> Result<ExitCode> {
    let redis = RedisBackend::new(url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let now = Timestamp::now();
    runtime.block_on(async {
        match action {
            BanAction::List => print_bans(&redis.bans(now).await?, now),
            BanAction::Add {
                ip,
                duration,
                reason,
            } => {
                redis.ban(new_ban(ip, &duration, reason, now)?).await?;
                println!("banned {ip}");
            }
            BanAction::Del { ip } => {
                if !redis.unban(ip).await? {
                    println!("{ip} was not banned");
                    return Ok(ExitCode::from(1));
                }
                println!("lifted the ban on {ip}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

//! `portcullis queue list|show|retry|delete|hold|release`: the spool as an operator sees it.
//!
//! Beside a running server it attaches to a snapshot of the spool
//! (`Spool::open_or_attach`) and asks the server to apply `delete`; with no
//! server running it opens the spool itself. `retry` clears the next-attempt time; the
//! server picks the message up at its next scan. `delete` removes the entry
//! for good (no bounce); a delivery already in progress may still complete.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Subcommand;
use portcullis_config::Config;
use portcullis_delivery::state;
use portcullis_spool::{MessageId, Spool};

#[derive(Subcommand)]
pub enum QueueAction {
    /// One line per message: id, age, size, sender, recipients, attempts, last failure.
    List,
    /// The envelope, the delivery state and the headers of one message.
    Show {
        /// The message id, as `queue list` prints it.
        id: String,
    },
    /// The whole message as stored (Received: first), on standard output.
    Export {
        /// The message id, as `queue list` prints it.
        id: String,
    },
    /// Try the message again at the next scan.
    Retry {
        /// The message id, as `queue list` prints it.
        id: String,
    },
    /// Remove the message without delivering or bouncing it.
    Delete {
        /// The message id, as `queue list` prints it.
        id: String,
    },
    /// Hold every queued message of a user: not delivered until released.
    Hold {
        /// The authentication identity whose messages to hold.
        #[arg(long)]
        user: String,
    },
    /// Release a user's held messages (those a containment answer held
    /// too), or delete them with `--delete`.
    Release {
        /// The authentication identity whose messages to release.
        #[arg(long)]
        user: String,
        /// Delete them instead (no bounce).
        #[arg(long)]
        delete: bool,
    },
}

pub fn run(action: QueueAction, config: &Config) -> Result<ExitCode> {
    let spool = Spool::open_or_attach(&config.spool_dir)
        .with_context(|| format!("opening the spool at {}", config.spool_dir.display()))?;
    match action {
        QueueAction::List => list(&spool)?,
        QueueAction::Show { id } => show(&spool, &id.parse()?)?,
        QueueAction::Export { id } => {
            let (_, data) = spool.read(&id.parse()?)?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &data)?;
        }
        QueueAction::Retry { id } => {
            let id: MessageId = id.parse()?;
            spool.read(&id)?;
            let mut s = state::load(&spool, &id)?;
            s.next_attempt_ms = 0;
            state::save(&spool, &id, &s)?;
            if config.delivery.is_some() {
                println!("{id}: will be retried at the next scan");
            } else {
                println!(
                    "{id}: marked for retry, but delivery is off in this config (no [delivery] \
                     section): the message stays in the spool until a server with delivery runs"
                );
            }
        }
        QueueAction::Hold { user } => {
            let ids = of_user(&spool, &user)?;
            for id in &ids {
                let mut s = state::load(&spool, id)?;
                s.hold = Some(true);
                state::save(&spool, id, &s)?;
            }
            println!("{} message(s) of {user} held", ids.len());
        }
        QueueAction::Release { user, delete } => {
            let mut count = 0;
            for id in of_user(&spool, &user)? {
                let (meta, _) = spool.read(&id)?;
                let mut s = state::load(&spool, &id)?;
                if !s.is_held(&meta.meta) {
                    continue;
                }
                count += 1;
                if delete {
                    spool.remove(&id)?;
                } else {
                    s.hold = Some(false);
                    s.next_attempt_ms = 0;
                    state::save(&spool, &id, &s)?;
                }
            }
            let done = if delete { "deleted" } else { "released" };
            println!("{count} held message(s) of {user} {done}");
        }
        QueueAction::Delete { id } => {
            let id: MessageId = id.parse()?;
            spool.read(&id)?;
            spool.remove(&id)?;
            println!("{id}: deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The queued messages whose authentication identity is `user`.
fn of_user(spool: &Spool, user: &str) -> Result<Vec<MessageId>> {
    let mut ids = Vec::new();
    for id in spool.list()? {
        let Ok((meta, _)) = spool.read(&id) else {
            continue;
        };
        if meta.meta.auth.as_ref().is_some_and(|a| a.authn_id == user) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn list(spool: &Spool) -> Result<()> {
    let ids = spool.list()?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for id in &ids {
        let Ok((meta, _)) = spool.read(id) else {
            continue;
        };
        let s = state::load(spool, id).unwrap_or_default();
        let age_s = now_ms.saturating_sub(id.spooled_at_micros() / 1000) / 1000;
        let pending = s
            .pending
            .clone()
            .unwrap_or_else(|| meta.meta.rcpt_to.clone());
        let from = if meta.meta.mail_from.is_empty() {
            "<>"
        } else {
            &meta.meta.mail_from
        };
        let last = s
            .last_failure
            .as_ref()
            .map(|f| f.diagnostic.as_str())
            .unwrap_or("-");
        let held = if s.is_held(&meta.meta) { "  held" } else { "" };
        println!(
            "{id}  age={age_s}s  size={}  from={from}  to={}  attempts={}  last={last}{held}",
            meta.size,
            pending.join(","),
            s.attempts
        );
    }
    println!("{} message(s)", ids.len());
    Ok(())
}

fn show(spool: &Spool, id: &MessageId) -> Result<()> {
    let (meta, data) = spool.read(id)?;
    let s = state::load(spool, id)?;
    println!("{}", serde_json::to_string_pretty(&meta)?);
    println!("delivery state: {}", serde_json::to_string_pretty(&s)?);
    println!();
    print!(
        "{}",
        String::from_utf8_lossy(portcullis_delivery::message::headers(&data))
    );
    Ok(())
}

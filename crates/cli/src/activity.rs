//! `portcullis user activity|suspend|resume|limits`: what containment
//! knows of a user, kept in the user store's database beside the
//! credentials. A running server reads suspensions within a second and a
//! user's limits within a few seconds.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use portcullis_config::Config;
use portcullis_credentials::activity::{ActivityStore, Suspension};
use portcullis_limits::sending::Rate;
use time::OffsetDateTime;

use crate::users::UserAction;

/// Logins `user activity` shows.
const HISTORY_SHOWN: usize = 20;

/// Runs the containment subcommands; `None` for the others.
pub fn run(action: &UserAction, config: &Config) -> Result<Option<ExitCode>> {
    let needs_store = matches!(
        action,
        UserAction::Activity { .. }
            | UserAction::Suspend { .. }
            | UserAction::Resume { .. }
            | UserAction::Limits { .. }
    );
    if !needs_store {
        return Ok(None);
    }
    let Some(store) = crate::stores::open_activity(config)? else {
        bail!("login history, suspensions and per-user limits need the sqlite users backend");
    };
    match action {
        UserAction::Activity { name } => activity(store.as_ref(), name)?,
        UserAction::Suspend { name, reason } => {
            let suspension = Suspension {
                reason: reason.clone(),
                at_ms: portcullis_limits::Timestamp::now().millis(),
            };
            store.set_suspension(name, Some(&suspension))?;
            println!("suspended {name}: {reason}");
        }
        UserAction::Resume { name } => {
            store.set_suspension(name, None)?;
            println!("resumed {name}");
        }
        UserAction::Limits {
            name,
            messages,
            recipients,
            bytes,
            clear,
        } => {
            if *clear {
                store.set_limits(name, None)?;
                println!("{name}: the default limits apply");
            } else {
                let text = stored_form(messages, recipients, bytes)?;
                if text.is_empty() {
                    show_limits(store.as_ref(), name)?;
                } else {
                    store.set_limits(name, Some(&text))?;
                    println!("{name}: {text}");
                }
            }
        }
        _ => return Ok(None),
    }
    Ok(Some(ExitCode::SUCCESS))
}

/// `messages=500/h,1000/d;recipients=2000/d`, each rate checked.
fn stored_form(messages: &[String], recipients: &[String], bytes: &[String]) -> Result<String> {
    let mut parts = Vec::new();
    for (key, list) in [
        ("messages", messages),
        ("recipients", recipients),
        ("bytes", bytes),
    ] {
        if list.is_empty() {
            continue;
        }
        let rates = list
            .iter()
            .map(|r| r.parse::<Rate>().map(|r| r.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--{key}"))?;
        parts.push(format!("{key}={}", rates.join(",")));
    }
    Ok(parts.join(";"))
}

fn show_limits(store: &dyn ActivityStore, name: &str) -> Result<()> {
    match store.limits(name)? {
        Some(text) => println!("{name}: {text}"),
        None => println!("{name}: the default limits apply"),
    }
    Ok(())
}

fn when(ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn activity(store: &dyn ActivityStore, name: &str) -> Result<()> {
    match store.suspensions()?.into_iter().find(|(u, _)| u == name) {
        Some((_, s)) => println!("suspended since {}: {}", when(s.at_ms), s.reason),
        None => println!("not suspended"),
    }
    show_limits(store, name)?;
    println!("last logins:");
    for l in store.logins(name, HISTORY_SHOWN)? {
        // Repeats within a minute are one row (the first login of its
        // kind has a row of its own, above or below it).
        let repeats = if l.times > 1 {
            format!("  x{} until {}", l.times, when(l.last_ms))
        } else {
            String::new()
        };
        println!(
            "  {}  {}  {}  {}{repeats}",
            when(l.at_ms),
            l.address,
            l.mechanism,
            l.result
        );
    }
    println!("sent per hour:");
    for h in store.sent(name, 24)? {
        println!(
            "  {}  messages={}  recipients={}",
            when(h.hour * 3_600_000),
            h.messages,
            h.recipients
        );
    }
    println!("signals:");
    for s in store.signals(name, 20)? {
        println!(
            "  {}  {}  answer={}  {}",
            when(s.at_ms),
            s.signal,
            s.answer,
            s.detail
        );
    }
    Ok(())
}

//! `portcullis-load`: closed-loop load against any SMTP submission server,
//! as `redis-benchmark` is for Redis.
//!
//! It answers the operator's question "how many logins (or messages) per
//! second does my deployment take, and at what latency?" and, with
//! `--hold`, "how much memory does an idle client cost?"; with
//! `--hash-rate`, "how many cold logins could these cores verify?". It speaks plain
//! SMTP, STARTTLS and implicit TLS, and PLAIN, LOGIN, CRAM-MD5, XOAUTH2 and
//! SCRAM-SHA-256, so it measures portcullis and its peers the same way.
//!
//! Modules, one concern each: `args` (flags → validated plan), `conn`
//! (stream, bounded reply reader, step timeouts), `tls`, `mech` and `scram`
//! (SASL client step machines, no I/O), `users` (who sessions log in
//! as), `message`, `session` (the SMTP
//! steps), `stats` (window and recorders), `run` (the closed loop and
//! progress line), `hold`, and `report` (table and JSON).
//!
//! Exit status: 0 when no session failed, 1 when some did, 2 on bad usage.

mod args;
mod conn;
mod hashrate;
mod hold;
mod mech;
mod message;
mod report;
mod run;
mod scram;
mod session;
mod stats;
mod tls;
mod users;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::args::{Args, Mode, Plan, TlsMode};
use crate::report::{HoldReport, LoadReport, Setup};
use crate::session::Script;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.hash_rate {
        return hash_rate(&args);
    }
    let plan = match args.into_plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("portcullis-load: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(plan) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("portcullis-load: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `--hash-rate`: no server, only argon2id on this machine's cores.
fn hash_rate(args: &Args) -> std::process::ExitCode {
    let window = match Duration::try_from_secs_f64(args.duration.unwrap_or(10.0)) {
        Ok(window) => window,
        Err(_) => {
            eprintln!("portcullis-load: --duration: not a duration");
            return std::process::ExitCode::from(2);
        }
    };
    let rate = hashrate::measure(args.threads, window);
    let report = if args.json {
        serde_json::to_string(&rate).unwrap_or_default() + "\n"
    } else {
        rate.text()
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), report.as_bytes());
    std::process::ExitCode::SUCCESS
}

/// Runs the plan; true when nothing failed.
fn run(plan: Plan) -> anyhow::Result<bool> {
    let runtime = match plan.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("cannot start the tokio runtime")?;
    let tls = match plan.tls {
        TlsMode::None => None,
        TlsMode::StartTls | TlsMode::Implicit => Some(tls::client(
            &plan.server_name,
            plan.insecure,
            plan.ca_file.as_deref(),
            plan.tls_resume,
        )?),
    };
    let script = Arc::new(Script::new(&plan, tls));
    let setup = Setup::new(&plan, script.message_size());
    let (text, json, clean) = match plan.mode {
        Mode::Load(stop) => {
            let outcome = runtime.block_on(run::load(
                script,
                plan.connections,
                stop,
                plan.step_timeout,
                plan.quiet,
            ));
            let report = LoadReport::new(setup, &outcome);
            let json = serde_json::to_string(&report).context("report to JSON")?;
            (report.text(), json, report.errors_total == 0)
        }
        Mode::Hold {
            count,
            duration,
            server_pid,
        } => {
            let outcome = runtime.block_on(hold::hold(
                script,
                count,
                plan.connections,
                duration,
                server_pid,
                plan.quiet,
            ));
            let report = HoldReport::new(setup, &outcome);
            let json = serde_json::to_string(&report).context("report to JSON")?;
            (report.text(), json, report.errors_total == 0)
        }
    };
    let report = if plan.json { json + "\n" } else { text };
    // A reader that went away (`| head`) is not worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), report.as_bytes());
    Ok(clean)
}

//! The results, as a table for people or one JSON object for scripts.
//!
//! Both are built from the same [`LoadReport`] / [`HoldReport`] values, so
//! the JSON has exactly what the table shows (and nothing is computed
//! twice). Latencies are in milliseconds with microsecond resolution.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Plan, TlsMode};
use crate::hold::HoldOutcome;
use crate::run::Outcome;
use crate::stats::Recorder;

/// What was run, common to both modes.
#[derive(Debug, Serialize)]
pub struct Setup {
    pub target: String,
    pub mechanism: &'static str,
    /// Distinct users the sessions log in as (round-robin).
    pub users: usize,
    pub tls: &'static str,
    pub tls_resume: bool,
    pub connections: usize,
    pub messages_per_session: u32,
    pub message_bytes: usize,
    pub recipients: usize,
    pub pipelining_allowed: bool,
}

impl Setup {
    pub fn new(plan: &Plan, message_bytes: usize) -> Setup {
        Setup {
            target: plan.target.clone(),
            mechanism: plan.mechanism.name(),
            users: plan.users.len(),
            tls: match plan.tls {
                TlsMode::None => "none",
                TlsMode::StartTls => "starttls",
                TlsMode::Implicit => "implicit",
            },
            tls_resume: plan.tls_resume,
            connections: plan.connections,
            messages_per_session: plan.messages,
            message_bytes,
            recipients: plan.recipients.len(),
            pipelining_allowed: plan.pipelining,
        }
    }
}

/// p50 / p99 / max of one latency, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorRow {
    pub step: &'static str,
    pub code: String,
    pub count: u64,
    pub example: String,
}

fn error_rows(rec: &Recorder) -> Vec<ErrorRow> {
    rec.errors
        .iter()
        .map(|((step, code), e)| ErrorRow {
            step: step.name(),
            code: code.clone(),
            count: e.count,
            example: e.example.clone(),
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct Latencies {
    pub auth: Latency,
    pub message: Latency,
    pub session: Latency,
}

/// A load run.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub mode: &'static str,
    #[serde(flatten)]
    pub setup: Setup,
    pub window_s: f64,
    pub interrupted: bool,
    pub sessions: u64,
    pub messages: u64,
    pub auths: u64,
    pub sessions_per_s: f64,
    pub messages_per_s: f64,
    pub auths_per_s: f64,
    pub latency: Latencies,
    pub errors_total: u64,
    pub errors: Vec<ErrorRow>,
}

impl LoadReport {
    pub fn new(setup: Setup, outcome: &Outcome) -> LoadReport {
        let rec = &outcome.rec;
        let secs = outcome.measured.as_secs_f64().max(1e-9);
        LoadReport {
            mode: "load",
            setup,
            window_s: outcome.measured.as_secs_f64(),
            interrupted: outcome.interrupted,
            sessions: rec.sessions,
            messages: rec.messages,
            auths: rec.auths,
            sessions_per_s: rec.sessions as f64 / secs,
            messages_per_s: rec.messages as f64 / secs,
            auths_per_s: rec.auths as f64 / secs,
            latency: Latencies {
                auth: Latency::of(&rec.auth_latency),
                message: Latency::of(&rec.message_latency),
                session: Latency::of(&rec.session_latency),
            },
            errors_total: rec.error_total(),
            errors: error_rows(rec),
        }
    }

    pub fn text(&self) -> String {
        let s = &self.setup;
        let mut out = format!(
            "portcullis-load {}  AUTH {}{} (TLS: {}{})  {} connections  {} message(s) of {} B per session\n",
            s.target,
            s.mechanism,
            match s.users {
                0 | 1 => String::new(),
                n => format!(" as {n} users"),
            },
            s.tls,
            if s.tls_resume { ", resumed" } else { "" },
            s.connections,
            s.messages_per_session,
            s.message_bytes,
        );
        out += &format!(
            "window {:.1} s{}\n\n",
            self.window_s,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        for (name, count, rate) in [
            ("sessions", self.sessions, self.sessions_per_s),
            ("messages", self.messages, self.messages_per_s),
            ("auths", self.auths, self.auths_per_s),
        ] {
            out += &format!("  {name:<10} {count:>10}  {rate:>10.1}/s\n");
        }
        out += &format!(
            "\n  {:<14} {:>9} {:>9} {:>9}\n",
            "latency (ms)", "p50", "p99", "max"
        );
        for (name, l) in [
            ("auth", &self.latency.auth),
            ("message", &self.latency.message),
            ("session", &self.latency.session),
        ] {
            if l.count > 0 {
                out += &format!(
                    "  {name:<14} {:>9.3} {:>9.3} {:>9.3}\n",
                    l.p50_ms, l.p99_ms, l.max_ms
                );
            }
        }
        out + "\n" + &errors_text(self.errors_total, &self.errors)
    }
}

/// A hold run.
#[derive(Debug, Serialize)]
pub struct HoldReport {
    pub mode: &'static str,
    #[serde(flatten)]
    pub setup: Setup,
    pub requested: usize,
    pub held: usize,
    pub setup_s: f64,
    pub held_s: f64,
    pub quit_ok: usize,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    pub server_rss_per_connection_kib: Option<f64>,
    pub auth_latency: Latency,
    pub errors_total: u64,
    pub errors: Vec<ErrorRow>,
}

impl HoldReport {
    pub fn new(setup: Setup, outcome: &HoldOutcome) -> HoldReport {
        HoldReport {
            mode: "hold",
            setup,
            requested: outcome.requested,
            held: outcome.held,
            setup_s: outcome.setup.as_secs_f64(),
            held_s: outcome.held_for.as_secs_f64(),
            quit_ok: outcome.quit_ok,
            server_rss_before_kib: outcome.rss_before_kib,
            server_rss_after_kib: outcome.rss_after_kib,
            server_rss_per_connection_kib: outcome.rss_per_connection_kib(),
            auth_latency: Latency::of(&outcome.rec.auth_latency),
            errors_total: outcome.rec.error_total(),
            errors: error_rows(&outcome.rec),
        }
    }

    pub fn text(&self) -> String {
        let s = &self.setup;
        let mut out = format!(
            "portcullis-load {}  hold  AUTH {} (TLS: {})\n\n",
            s.target, s.mechanism, s.tls
        );
        out += &format!(
            "  held       {} of {} (set up in {:.1} s, idle {:.1} s)\n",
            self.held, self.requested, self.setup_s, self.held_s
        );
        out += &format!("  QUIT 221   {} of {}\n", self.quit_ok, self.held);
        if let (Some(before), Some(after)) = (self.server_rss_before_kib, self.server_rss_after_kib)
        {
            out += &format!("  server RSS {before} KiB -> {after} KiB");
            if let Some(per) = self.server_rss_per_connection_kib {
                out += &format!("  = {per:.1} KiB per connection");
            }
            out += "\n";
        }
        out + "\n" + &errors_text(self.errors_total, &self.errors)
    }
}

fn errors_text(total: u64, rows: &[ErrorRow]) -> String {
    if rows.is_empty() {
        return "  errors: none\n".to_string();
    }
    let mut out = format!("  errors: {total}\n");
    for row in rows {
        let key = format!("{} {}", row.step, row.code);
        out += &format!("    {key:<24} {:>8}  {}\n", row.count, row.example);
    }
    out
}

//! What is counted, when, and where.
//!
//! Each connection task owns a [`Recorder`] (histograms, counts, errors) and
//! no lock is taken on the hot path; the recorders are merged once at the
//! end. The progress line reads a few shared atomics ([`Live`]) instead.
//!
//! Counting rule (as in the shared harness): an event counts when its
//! expected reply arrives inside the measurement window — an AUTH at `235`,
//! a message at the `250` after the dot, a session at `221`. Sessions still
//! running when the window closes are neither successes nor errors. Errors
//! are counted whenever they happen, warm-up included: a smoke run must see
//! all of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency recorded, in microseconds (larger values are clamped;
/// the step timeout ends anything slower anyway).
const MAX_MICROS: u64 = 600_000_000;

/// The measurement window on a shared origin.
pub struct Clock {
    origin: Instant,
    window_start: Duration,
    /// Nanoseconds after `origin`; `u64::MAX` = open-ended. Lowered by Ctrl-C.
    window_end_ns: AtomicU64,
}

impl Clock {
    pub fn new(warmup: Duration, window: Option<Duration>) -> Clock {
        let end = window.map_or(u64::MAX, |w| {
            u64::try_from((warmup + w).as_nanos()).unwrap_or(u64::MAX)
        });
        Clock {
            origin: Instant::now(),
            window_start: warmup,
            window_end_ns: AtomicU64::new(end),
        }
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Whether an event completing now is counted.
    pub fn in_window(&self, at: Instant) -> bool {
        let since = at.saturating_duration_since(self.origin);
        since >= self.window_start && since.as_nanos() < u128::from(self.end_ns())
    }

    pub fn warming_up(&self) -> bool {
        self.elapsed() < self.window_start
    }

    /// True once the window has closed (no new session should start).
    pub fn over(&self) -> bool {
        self.elapsed().as_nanos() >= u128::from(self.end_ns())
    }

    /// The window's close, if it has one.
    pub fn end(&self) -> Option<Instant> {
        let end = self.end_ns();
        (end != u64::MAX).then(|| self.origin + Duration::from_nanos(end))
    }

    /// Closes the window now (Ctrl-C).
    pub fn stop_now(&self) {
        let now = u64::try_from(self.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.window_end_ns.fetch_min(now, Ordering::Relaxed);
    }

    /// Length of the window actually measured, given when the run ended.
    pub fn measured(&self, finished: Instant) -> Duration {
        let end = match self.end() {
            Some(end) => end.min(finished),
            None => finished,
        };
        end.saturating_duration_since(self.origin + self.window_start)
    }

    fn end_ns(&self) -> u64 {
        self.window_end_ns.load(Ordering::Relaxed)
    }
}

/// Counters the progress line reads (everything, warm-up included).
#[derive(Default)]
pub struct Live {
    pub sessions: AtomicU64,
    pub messages: AtomicU64,
    pub auths: AtomicU64,
    pub errors: AtomicU64,
    /// Connections currently open (hold mode: held).
    pub open: AtomicU64,
}

impl Live {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The step of a session, for latencies and error keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// The reply after the message's final dot.
    Message,
    Quit,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Connect => "CONNECT",
            Step::Tls => "TLS",
            Step::Greeting => "GREETING",
            Step::Ehlo => "EHLO",
            Step::StartTls => "STARTTLS",
            Step::Auth => "AUTH",
            Step::Mail => "MAIL",
            Step::Rcpt => "RCPT",
            Step::Data => "DATA",
            Step::Message => "DATA-END",
            Step::Quit => "QUIT",
        }
    }
}

/// One error kind: how often, and the first example seen.
#[derive(Debug, Clone)]
pub struct ErrorCount {
    pub count: u64,
    pub example: String,
}

/// Latencies in microseconds, 3 significant digits. Auto-resizing: an
/// empty histogram is a few hundred bytes and grows to the largest value
/// seen, so a recorder per task stays cheap.
pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

/// Everything one task saw.
pub struct Recorder {
    pub sessions: u64,
    pub messages: u64,
    pub auths: u64,
    pub auth_latency: Histogram<u64>,
    pub message_latency: Histogram<u64>,
    pub session_latency: Histogram<u64>,
    /// Keyed by (step, code or wire error).
    pub errors: BTreeMap<(Step, String), ErrorCount>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            sessions: 0,
            messages: 0,
            auths: 0,
            auth_latency: histogram(),
            message_latency: histogram(),
            session_latency: histogram(),
            errors: BTreeMap::new(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

/// Records one latency. `saturating_record` would clamp to the current
/// (tiny) range of an auto-resizing histogram, so `record` it is.
fn record(h: &mut Histogram<u64>, d: Duration) {
    h.record(micros(d))
        .expect("an auto-resizing histogram takes any value up to MAX_MICROS");
}

impl Recorder {
    pub fn error(&mut self, live: &Live, step: Step, key: String, example: String) {
        Live::bump(&live.errors);
        self.errors
            .entry((step, key))
            .and_modify(|e| e.count += 1)
            .or_insert(ErrorCount { count: 1, example });
    }

    pub fn auth_done(&mut self, clock: &Clock, live: &Live, started: Instant) {
        Live::bump(&live.auths);
        let now = Instant::now();
        if clock.in_window(now) {
            self.auths += 1;
            record(&mut self.auth_latency, now - started);
        }
    }

    pub fn message_done(&mut self, clock: &Clock, live: &Live, started: Instant) {
        Live::bump(&live.messages);
        let now = Instant::now();
        if clock.in_window(now) {
            self.messages += 1;
            record(&mut self.message_latency, now - started);
        }
    }

    pub fn session_done(&mut self, clock: &Clock, live: &Live, started: Instant) {
        Live::bump(&live.sessions);
        let now = Instant::now();
        if clock.in_window(now) {
            self.sessions += 1;
            record(&mut self.session_latency, now - started);
        }
    }

    /// Adds another task's results to these.
    pub fn merge(&mut self, other: Recorder) {
        self.sessions += other.sessions;
        self.messages += other.messages;
        self.auths += other.auths;
        // Auto-resizing histograms with equal precision: adding cannot fail.
        let _ = self.auth_latency.add(&other.auth_latency);
        let _ = self.message_latency.add(&other.message_latency);
        let _ = self.session_latency.add(&other.session_latency);
        for (key, error) in other.errors {
            self.errors
                .entry(key)
                .and_modify(|e| e.count += error.count)
                .or_insert(error);
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_inside_the_window_count() {
        let clock = Clock::new(Duration::from_secs(3600), None);
        let live = Live::default();
        let mut rec = Recorder::default();
        rec.session_done(&clock, &live, Instant::now());
        assert_eq!(rec.sessions, 0, "warm-up must not count");
        assert_eq!(
            live.sessions.load(Ordering::Relaxed),
            1,
            "progress counts it"
        );

        let clock = Clock::new(Duration::ZERO, None);
        rec.session_done(&clock, &live, Instant::now());
        assert_eq!(rec.sessions, 1);
        clock.stop_now();
        std::thread::sleep(Duration::from_millis(2));
        rec.session_done(&clock, &live, Instant::now());
        assert_eq!(rec.sessions, 1, "after the window closed");
        assert!(clock.over());
    }

    #[test]
    fn merging_adds_counts_and_errors() {
        let live = Live::default();
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.error(&live, Step::Auth, "535".into(), "535 no".into());
        b.error(&live, Step::Auth, "535".into(), "535 other".into());
        b.error(
            &live,
            Step::Connect,
            "io:ConnectionRefused".into(),
            String::new(),
        );
        a.merge(b);
        assert_eq!(a.error_total(), 3);
        assert_eq!(a.errors[&(Step::Auth, "535".into())].count, 2);
        assert_eq!(a.errors[&(Step::Auth, "535".into())].example, "535 no");
    }
}

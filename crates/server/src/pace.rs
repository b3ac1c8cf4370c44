//! How slowly a client may talk. The idle timeout alone restarts on every
//! byte, so a client sending one byte every few seconds would hold its
//! connection (and its slot) for ever. Two deadlines close that:
//!
//! - a command line (or an AUTH response) must arrive whole within
//!   `command_timeout` of the server being ready for it;
//! - message data gets `command_timeout` of grace and must then average
//!   `min_data_rate` bytes per second: each byte received buys
//!   `1 / min_data_rate` seconds more.
//!
//! Time goes in as a value, so the rules are tested without a clock.

use std::time::Duration;

use portcullis_proto::Reply;
use tokio::time::Instant;

/// The deadline of what the session is waiting for now.
#[derive(Debug)]
pub(crate) struct Pace {
    command_timeout: Duration,
    min_data_rate: u64,
    waiting: Waiting,
}

#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// A command line, since `since`.
    Line { since: Instant },
    /// Message data, since `since`, `bytes` of it so far.
    Data { since: Instant, bytes: u64 },
}

impl Pace {
    pub(crate) fn new(command_timeout: Duration, min_data_rate: u64, now: Instant) -> Pace {
        Pace {
            command_timeout,
            min_data_rate,
            waiting: Waiting::Line { since: now },
        }
    }

    /// The session fed on its input and wants more. `line_done`: it
    /// consumed input or has none pending, so the next line's clock starts
    /// now; `in_data`: it is reading message data.
    pub(crate) fn wants_input(&mut self, line_done: bool, in_data: bool, now: Instant) {
        self.waiting = match (self.waiting, in_data) {
            (Waiting::Data { since, bytes }, true) => Waiting::Data { since, bytes },
            (_, true) => Waiting::Data {
                since: now,
                bytes: 0,
            },
            (Waiting::Line { since }, false) if !line_done => Waiting::Line { since },
            (_, false) => Waiting::Line { since: now },
        };
    }

    /// `n` bytes arrived.
    pub(crate) fn received(&mut self, n: usize) {
        if let Waiting::Data { bytes, .. } = &mut self.waiting {
            *bytes = bytes.saturating_add(n as u64);
        }
    }

    /// When the client has run out of time, if ever.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.waiting {
            Waiting::Line { since } => Some(since + self.command_timeout),
            Waiting::Data { .. } if self.min_data_rate == 0 => None,
            Waiting::Data { since, bytes } => {
                let earned = Duration::from_secs_f64(bytes as f64 / self.min_data_rate as f64);
                Some(since + self.command_timeout + earned)
            }
        }
    }

    /// The `421 4.4.2` for a client that missed [`Pace::deadline`], and
    /// the reason as logged and counted.
    pub(crate) fn verdict(&self) -> (Reply, &'static str) {
        match self.waiting {
            Waiting::Line { .. } => (Reply::command_timeout(), "slow_command"),
            Waiting::Data { .. } => (Reply::data_too_slow(), "slow_data"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_line_trickling_in_keeps_the_deadline_of_its_first_wait() {
        let t0 = Instant::now();
        let mut pace = Pace::new(MINUTE, 500, t0);
        for second in 1..30 {
            pace.received(1);
            pace.wants_input(false, false, t0 + Duration::from_secs(second));
        }
        assert_eq!(pace.deadline(), Some(t0 + MINUTE));
        assert_eq!(pace.verdict().0.code(), 421);
        assert_eq!(pace.verdict().1, "slow_command");
        // The line completes: the next one has a minute from now.
        let t1 = t0 + Duration::from_secs(40);
        pace.wants_input(true, false, t1);
        assert_eq!(pace.deadline(), Some(t1 + MINUTE));
    }

    #[test]
    fn data_earns_time_at_the_minimum_rate_after_a_grace_period() {
        let t0 = Instant::now();
        let mut pace = Pace::new(MINUTE, 500, t0);
        pace.wants_input(true, true, t0);
        assert_eq!(pace.deadline(), Some(t0 + MINUTE));
        pace.received(1000);
        pace.wants_input(true, true, t0 + Duration::from_secs(5));
        assert_eq!(pace.deadline(), Some(t0 + MINUTE + Duration::from_secs(2)));
        assert_eq!(pace.verdict().0.text(), Reply::data_too_slow().text());
        // After the dot, commands again.
        let t1 = t0 + Duration::from_secs(9);
        pace.wants_input(true, false, t1);
        assert_eq!(pace.deadline(), Some(t1 + MINUTE));
        let mut unlimited = Pace::new(MINUTE, 0, t0);
        unlimited.wants_input(true, true, t0);
        assert_eq!(unlimited.deadline(), None);
    }
}

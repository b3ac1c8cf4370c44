//! How long a refused password takes, from the client's view.
//!
//! The hash schemes differ by two orders of magnitude: an unknown user
//! costs one default argon2id (tens of milliseconds), a wrong password for
//! an imported `{PLAIN}` or SHA-crypt user a millisecond or two, for a
//! bcrypt-12 user hundreds. Without a floor, how long a refusal takes says
//! whether the user exists and how their password is stored — which picks
//! out the users whose hashes are cheapest to attack.
//!
//! So every refused credential check is answered no sooner than the
//! floor: a fixed margin above the slowest verification this process has
//! done (argon2id for unknown users at least, measured once; bcrypt once
//! a bcrypt user has logged in), never below the configured
//! `auth.failure_floor_ms`, plus a little jitter. The slowest is a running
//! maximum (capped at [`MAX_FLOOR`]), so it is the same for every user at
//! any moment. Until the first slow scheme is verified the floor cannot
//! know of it: an operator with bcrypt users sets `failure_floor_ms`
//! above their cost to close that window. Successes are never held back:
//! a correct password never waits.
//!
//! The time math is pure ([`FailureFloor::remaining`]); the wait happens
//! on the blocking pool, after the hash slot is given back, so a flood of
//! refusals holds threads, not hash memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The floor never exceeds this, however slow one verification was (a
/// stall under load must not make every failure slow forever).
pub(crate) const MAX_FLOOR: Duration = Duration::from_secs(1);

/// Margin above the slowest verification, in percent of it.
const MARGIN_PERCENT: u64 = 25;
/// Most jitter added, in percent of the floor.
const JITTER_PERCENT: u64 = 10;

pub(crate) struct FailureFloor {
    /// The configured minimum (`auth.failure_floor_ms`).
    fixed: Duration,
    /// Nanoseconds of the slowest verification seen, at most `MAX_FLOOR`.
    slowest: AtomicU64,
    /// Whether an unknown user's cost (the dummy argon2id) was measured.
    knows_dummy: AtomicBool,
}

impl FailureFloor {
    pub(crate) fn new(fixed: Duration) -> Self {
        FailureFloor {
            fixed,
            slowest: AtomicU64::new(0),
            knows_dummy: AtomicBool::new(false),
        }
    }

    /// Whether an unknown user's cost is known (else measure it first: a
    /// cheap scheme's refusal must not set the floor).
    pub(crate) fn knows_dummy(&self) -> bool {
        self.knows_dummy.load(Ordering::Relaxed)
    }

    /// Records how long one dummy verification (an unknown user's) took.
    pub(crate) fn observe_dummy(&self, took: Duration) {
        self.observe(took);
        self.knows_dummy.store(true, Ordering::Relaxed);
    }

    /// Records how long one password verification took.
    pub(crate) fn observe(&self, took: Duration) {
        let nanos = took.min(MAX_FLOOR).as_nanos() as u64;
        self.slowest.fetch_max(nanos.max(1), Ordering::Relaxed);
    }

    /// The floor now, before jitter.
    pub(crate) fn floor(&self) -> Duration {
        let slowest = self.slowest.load(Ordering::Relaxed);
        let with_margin = slowest.saturating_add(slowest / 100 * MARGIN_PERCENT);
        Duration::from_nanos(with_margin)
            .min(MAX_FLOOR)
            .max(self.fixed)
    }

    /// How much longer a refusal that has taken `elapsed` must wait;
    /// `jitter` in `[0, 1)` picks a point in the jitter band.
    pub(crate) fn remaining(&self, elapsed: Duration, jitter: f64) -> Duration {
        let floor = self.floor();
        let band = floor.as_secs_f64() * JITTER_PERCENT as f64 / 100.0;
        let target = floor + Duration::from_secs_f64(band * jitter.clamp(0.0, 1.0));
        target.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_refusal_waits_until_a_margin_above_the_slowest_verification() {
        let floor = FailureFloor::new(Duration::ZERO);
        assert!(!floor.knows_dummy());
        floor.observe(MS * 2);
        assert!(!floor.knows_dummy());
        floor.observe_dummy(MS * 40);
        assert!(floor.knows_dummy());
        floor.observe(MS * 3);
        assert_eq!(floor.floor(), MS * 50);
        // A {PLAIN} refusal after 2 ms and an unknown user after 40 ms
        // both end at the floor (without jitter).
        assert_eq!(floor.remaining(MS * 2, 0.0), MS * 48);
        assert_eq!(floor.remaining(MS * 40, 0.0), MS * 10);
        assert_eq!(floor.remaining(MS * 80, 0.0), Duration::ZERO);
        // Jitter adds at most a tenth.
        assert_eq!(floor.remaining(MS * 50, 1.0), MS * 5);
    }

    #[test]
    fn the_configured_floor_is_a_minimum_and_stalls_are_capped() {
        let floor = FailureFloor::new(MS * 400);
        floor.observe(MS * 40);
        assert_eq!(floor.floor(), MS * 400);
        floor.observe(Duration::from_secs(30));
        assert_eq!(floor.floor(), MAX_FLOOR);
    }
}

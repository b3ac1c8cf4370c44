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
//! floor: a fixed margin above the slowest kind of verification this
//! process does (the argon2id an unknown user costs at least, measured
//! before the first refusal; bcrypt once a bcrypt user was verified),
//! never below the configured `auth.failure_floor`, plus a little
//! jitter. Each kind keeps a smoothed time, so one verification slowed by
//! load moves the floor only a little, and many fast refusals of a cheap
//! kind never pull it down; the floor is capped at [`MAX_FLOOR`] and is the
//! same for every user at any moment. Until the first slow scheme is verified the floor cannot
//! know of it: an operator with bcrypt users sets `failure_floor`
//! above their cost to close that window. Successes are never held back:
//! a correct password never waits.
//!
//! The time math is pure ([`FailureFloor::remaining`]); the wait happens
//! on the blocking pool, after the hash slot is given back, so a flood of
//! refusals holds threads, not hash memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_credentials::scheme::Family;

/// The floor never exceeds this, however slow one verification was (a
/// stall under load must not make every failure slow).
pub(crate) const MAX_FLOOR: Duration = Duration::from_secs(1);

/// Margin above the slowest verification, in percent of it.
const MARGIN_PERCENT: u64 = 25;
/// Most jitter added, in percent of the floor.
const JITTER_PERCENT: u64 = 10;
/// Each new time moves its kind's estimate by 1/`SMOOTHING` of the gap: a
/// verification slowed by a burst of load moves the floor a little, and
/// the floor comes back down when the burst is over.
const SMOOTHING: i128 = 4;

/// What was verified, for the estimate it updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cost {
    /// The dummy argon2id an unknown user (or a user without a password)
    /// costs.
    Dummy,
    /// A stored hash of this family.
    Stored(Family),
    /// A stored value we could not parse.
    Unusable,
}

impl Cost {
    fn index(self) -> usize {
        match self {
            Cost::Dummy => 0,
            Cost::Stored(Family::Argon2) => 1,
            Cost::Stored(Family::Bcrypt) => 2,
            Cost::Stored(Family::ShaCrypt) => 3,
            Cost::Stored(Family::Plain) => 4,
            Cost::Unusable => 5,
        }
    }
}

pub(crate) struct FailureFloor {
    /// The configured minimum (`auth.failure_floor`).
    fixed: Duration,
    /// Per kind of verification, a smoothed time in nanoseconds (0: none
    /// seen), at most `MAX_FLOOR`.
    estimates: [AtomicU64; 6],
    /// Held while the unknown-user cost is first measured: one thread
    /// measures, the others wait for it rather than each hashing twice
    /// outside the hash slots (a burst of refusals just after a start).
    measuring: std::sync::Mutex<()>,
}

impl FailureFloor {
    pub(crate) fn new(fixed: Duration) -> Self {
        FailureFloor {
            fixed,
            estimates: Default::default(),
            measuring: std::sync::Mutex::new(()),
        }
    }

    /// Whether an unknown user's cost is known (else measure it first: a
    /// cheap scheme's refusal must not go out before the floor knows what
    /// an unknown user costs).
    pub(crate) fn knows_dummy(&self) -> bool {
        self.estimates[Cost::Dummy.index()].load(Ordering::Relaxed) > 0
    }

    /// Measures the unknown-user cost with `measure` unless it is known,
    /// by one thread at a time: however many refusals arrive together,
    /// the measurement's hashes run once.
    pub(crate) fn learn_dummy(&self, measure: impl FnOnce() -> Duration) {
        if self.knows_dummy() {
            return;
        }
        let _one = self.measuring.lock().unwrap_or_else(|p| p.into_inner());
        if !self.knows_dummy() {
            self.observe(Cost::Dummy, measure());
        }
    }

    /// Records how long one verification of this kind took. The first
    /// time of a kind is its estimate; later ones move it by a fraction.
    /// (Two threads updating at once may lose one update: an estimate.)
    pub(crate) fn observe(&self, cost: Cost, took: Duration) {
        let estimate = &self.estimates[cost.index()];
        let took = took.min(MAX_FLOOR).as_nanos().max(1) as i128;
        let old = estimate.load(Ordering::Relaxed) as i128;
        let new = match old {
            0 => took,
            _ => old + (took - old) / SMOOTHING,
        };
        estimate.store(new.max(1) as u64, Ordering::Relaxed);
    }

    /// The floor now, before jitter.
    pub(crate) fn floor(&self) -> Duration {
        let slowest = self
            .estimates
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
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
    const PLAIN: Cost = Cost::Stored(Family::Plain);
    const BCRYPT: Cost = Cost::Stored(Family::Bcrypt);

    #[test]
    fn a_refusal_waits_until_a_margin_above_the_slowest_kind() {
        let floor = FailureFloor::new(Duration::ZERO);
        floor.observe(PLAIN, MS * 2);
        assert!(!floor.knows_dummy());
        floor.observe(Cost::Dummy, MS * 40);
        assert!(floor.knows_dummy());
        floor.observe(PLAIN, MS * 2);
        assert_eq!(floor.floor(), MS * 50);
        // A {PLAIN} refusal after 2 ms and an unknown user after 40 ms
        // both end at the floor (without jitter).
        assert_eq!(floor.remaining(MS * 2, 0.0), MS * 48);
        assert_eq!(floor.remaining(MS * 40, 0.0), MS * 10);
        assert_eq!(floor.remaining(MS * 80, 0.0), Duration::ZERO);
        // Jitter adds at most a tenth.
        assert_eq!(floor.remaining(MS * 50, 1.0), MS * 5);
        // Once a bcrypt user was verified, every refusal takes longer.
        floor.observe(BCRYPT, MS * 320);
        assert_eq!(floor.floor(), MS * 400);
        // Many fast {PLAIN} refusals do not pull it down.
        for _ in 0..100 {
            floor.observe(PLAIN, MS);
        }
        assert_eq!(floor.floor(), MS * 400);
    }

    #[test]
    fn a_slow_moment_moves_the_floor_a_little_and_it_comes_back() {
        let floor = FailureFloor::new(Duration::ZERO);
        floor.observe(Cost::Dummy, MS * 40);
        floor.observe(Cost::Dummy, MS * 200);
        assert_eq!(floor.floor(), MS * 100, "(40 + 160/4) * 1.25");
        for _ in 0..30 {
            floor.observe(Cost::Dummy, MS * 40);
        }
        assert!(floor.floor() < MS * 51, "{:?}", floor.floor());
    }

    #[test]
    fn the_configured_floor_is_a_minimum_and_stalls_are_capped() {
        let floor = FailureFloor::new(MS * 400);
        floor.observe(Cost::Dummy, MS * 40);
        assert_eq!(floor.floor(), MS * 400);
        floor.observe(BCRYPT, Duration::from_secs(30));
        assert_eq!(floor.floor(), MAX_FLOOR);
    }

    /// A burst of refusals just after a start: the unknown-user cost is
    /// measured (two argon2id hashes, outside the hash slots) once, not
    /// once per refusal.
    #[test]
    fn the_unknown_user_cost_is_measured_once_however_many_refusals_wait() {
        let floor = std::sync::Arc::new(FailureFloor::new(Duration::ZERO));
        let measured = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (floor, measured) = (floor.clone(), measured.clone());
                std::thread::spawn(move || {
                    floor.learn_dummy(|| {
                        measured.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        Duration::from_millis(30)
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(measured.load(Ordering::SeqCst), 1);
        assert!(floor.knows_dummy());
    }
}

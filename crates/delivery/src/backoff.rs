//! The retry schedule: exponential back-off, capped, with a maximum age.
//!
//! Pure functions of the attempt count and times given as arguments, so the
//! schedule is tested without a clock.

use std::time::Duration;

/// The delay after the `attempts`-th failed attempt (1-based):
/// `initial · 2^(attempts-1)`, never more than `max`.
pub fn retry_delay(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempts.saturating_sub(1).min(32);
    initial
        .checked_mul(1u32 << exponent.min(31))
        .unwrap_or(max)
        .min(max)
}

/// Whether a message spooled at `spooled_ms` has outlived `max_age` at `now_ms`
/// (both milliseconds since the Unix epoch).
pub fn expired(spooled_ms: u64, now_ms: u64, max_age: Duration) -> bool {
    now_ms.saturating_sub(spooled_ms) >= u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let (i, m) = (Duration::from_secs(60), Duration::from_secs(3600));
        let delays: Vec<u64> = (1..=9).map(|a| retry_delay(a, i, m).as_secs()).collect();
        assert_eq!(delays, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(retry_delay(0, i, m), i, "attempt 0 is treated as the first");
        assert_eq!(retry_delay(u32::MAX, i, m), m, "no overflow");
    }

    #[test]
    fn age_limit() {
        let day = Duration::from_secs(86_400);
        assert!(!expired(1_000, 1_000 + 86_399_999, day));
        assert!(expired(1_000, 1_000 + 86_400_000, day));
        assert!(
            !expired(5_000, 1_000, day),
            "a clock step back is not expiry"
        );
    }
}

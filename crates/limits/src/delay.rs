//! The failure-delay curve, after Dovecot's auth penalty: the first failure
//! waits `initial`, each further recent failure doubles it, up to `max`.
//! With the defaults (2 s, 15 s): 2, 4, 8, 15, 15, … seconds.

use std::time::Duration;

/// The delay before the failure reply when the client's address (or its
/// network, weighted) has `failures` recent failures, this one included.
/// Zero failures (or a zero `initial`) means no delay.
pub fn failure_delay(failures: u64, initial: Duration, max: Duration) -> Duration {
    if failures == 0 || initial.is_zero() {
        return Duration::ZERO;
    }
    // 2^(failures - 1), saturating long before u32 overflows.
    let doublings = (failures - 1).min(20) as u32;
    initial.saturating_mul(1 << doublings).min(max)
}

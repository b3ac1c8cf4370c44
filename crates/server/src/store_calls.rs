//! Calls to the credential store, bounded in time and in number.
//!
//! A store call blocks a thread of the blocking pool (SQLite, a PostgreSQL
//! round trip, LDAP). A stalled database (its processes stopped, a network
//! that drops packets) would hold each login for as long as the stall and
//! add a thread per login. So each call gets [`Config::store_timeout`]:
//! past it the login is answered `454 4.7.0`, while the call itself is
//! left to finish on its thread. At most [`MAX_CALLS`] calls run at once;
//! past that a login is answered `454` at once, so a long stall holds a
//! bounded number of threads. The log says once when the store stalls and
//! once when it answers again; `portcullis_store_up` shows it.
//!
//! A credential check may also wait for a hash slot (a burst of cold
//! logins queues for the slow hash, up to `[auth] slot_wait`, at most
//! `[auth] slot_queue` logins at once). That wait is not the store's, so it
//! must not look like a stall: [`StoreCalls::run_check`] gives a check
//! that has not answered within the store timeout the slot wait on top
//! when hashes are running or waiting at that moment (a stalled store
//! holds its logins before their hash, so it is still detected at the
//! store timeout when nothing else hashes, and at most one slot wait
//! later under a burst). The bound on calls in flight has room for every
//! waiter on top of [`MAX_CALLS`], so a full queue of waiters never leaves
//! the store calls without room; and a burst larger still, which finds
//! that bound reached while hashes run, gets `454` without being logged
//! as a stalled store.
//!
//! [`Config::store_timeout`]: portcullis_config::Config::store_timeout

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::telemetry;

/// Store calls running at once, stalled ones included (plus room for the
/// checks waiting for a hash slot, see [`StoreCalls::new`]).
pub const MAX_CALLS: usize = 64;

/// Why a store call gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreCallError {
    #[error("the credential store did not answer in time")]
    TimedOut,
    #[error("too many credential-store calls are waiting")]
    Busy,
    #[error("the credential-store task failed")]
    Failed,
}

/// The bound on store calls that every connection shares.
#[derive(Debug)]
pub(crate) struct StoreCalls {
    permits: Arc<Semaphore>,
    timeout: Duration,
    /// How long a credential check may wait for a hash slot besides.
    slot_wait: Duration,
    stalled: AtomicBool,
}

impl StoreCalls {
    /// Calls bounded by `timeout`; credential checks, which may also wait
    /// up to `slot_wait` for a hash slot with up to `slot_queue` others
    /// (the authenticator's settings), get that wait on top, and that many
    /// more calls in flight.
    pub(crate) fn new(timeout: Duration, slot_wait: Duration, slot_queue: usize) -> StoreCalls {
        metrics::gauge!(telemetry::STORE_UP).set(1.0);
        StoreCalls {
            permits: Arc::new(Semaphore::new(MAX_CALLS + slot_queue)),
            timeout,
            slot_wait,
            stalled: AtomicBool::new(false),
        }
    }

    /// Runs `call` on the blocking pool and waits for it at most the store
    /// timeout.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreCallError> {
        self.run_within(call, || false).await
    }

    /// Runs a credential check, which may wait for a hash slot: waits for
    /// it the store timeout, and the slot wait on top if `hashing` (the
    /// authenticator's) says hashes run or wait when the timeout is up.
    pub(crate) async fn run_check<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
        hashing: impl Fn() -> bool,
    ) -> Result<T, StoreCallError> {
        self.run_within(check, hashing).await
    }

    async fn run_within<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> T + Send + 'static,
        hashing: impl Fn() -> bool,
    ) -> Result<T, StoreCallError> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Every call in flight while hashes run or wait is a burst of
            // logins, not a store that went away.
            if !hashing() {
                self.went_away(StoreCallError::Busy);
            }
            return Err(StoreCallError::Busy);
        };
        let mut task = tokio::task::spawn_blocking(move || {
            // Held until the call really ends, however long after the
            // caller stopped waiting.
            let _permit = permit;
            call()
        });
        let mut answer = tokio::time::timeout(self.timeout, &mut task).await;
        if answer.is_err() && !self.slot_wait.is_zero() && hashing() {
            answer = tokio::time::timeout(self.slot_wait, &mut task).await;
        }
        match answer {
            Ok(Ok(value)) => {
                if self.stalled.swap(false, Ordering::Relaxed) {
                    tracing::warn!("the credential store answers again");
                    metrics::gauge!(telemetry::STORE_UP).set(1.0);
                }
                Ok(value)
            }
            Ok(Err(_)) => Err(StoreCallError::Failed),
            Err(_) => {
                self.went_away(StoreCallError::TimedOut);
                Err(StoreCallError::TimedOut)
            }
        }
    }

    fn went_away(&self, why: StoreCallError) {
        if !self.stalled.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %why, timeout = ?self.timeout, "credential store stalled; logins get 454 until it answers");
            metrics::gauge!(telemetry::STORE_UP).set(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stalled_call_is_cut_at_the_timeout_and_the_next_one_works() {
        let calls = StoreCalls::new(Duration::from_millis(500), Duration::ZERO, 0);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let stalled = calls.run(move || wait.recv().is_ok()).await;
        assert_eq!(stalled, Err(StoreCallError::TimedOut));
        assert_eq!(calls.run(|| 7).await, Ok(7));
        drop(release);
    }

    #[tokio::test]
    async fn stalled_calls_hold_a_bounded_number_of_threads() {
        let calls = StoreCalls::new(Duration::from_millis(10), Duration::ZERO, 0);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        for _ in 0..MAX_CALLS {
            let wait = wait.clone();
            let _ = calls
                .run(move || {
                    let _ = wait.lock().map(|w| w.recv());
                })
                .await;
        }
        assert_eq!(calls.run(|| 1).await, Err(StoreCallError::Busy));
        drop(release);
    }

    #[tokio::test]
    async fn a_check_may_wait_for_a_hash_slot_beyond_the_store_timeout() {
        let calls = StoreCalls::new(Duration::from_millis(50), Duration::from_secs(5), 1);
        let waits_for_a_slot = || std::thread::sleep(Duration::from_millis(200));
        assert_eq!(calls.run_check(waits_for_a_slot, || true).await, Ok(()));
        assert!(!calls.stalled.load(Ordering::Relaxed), "not a stall");
        let started = std::time::Instant::now();
        assert_eq!(
            calls.run_check(waits_for_a_slot, || false).await,
            Err(StoreCallError::TimedOut),
            "nothing hashes: the store is stuck"
        );
        assert!(started.elapsed() < Duration::from_millis(190));
        assert_eq!(
            calls.run(waits_for_a_slot).await,
            Err(StoreCallError::TimedOut),
            "a plain store call keeps the store timeout"
        );
    }

    #[tokio::test]
    async fn a_burst_that_fills_every_call_while_hashes_run_is_not_a_stall() {
        let calls = Arc::new(StoreCalls::new(
            Duration::from_secs(30),
            Duration::from_secs(30),
            0,
        ));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        let held: Vec<_> = (0..MAX_CALLS)
            .map(|_| {
                let (calls, wait) = (calls.clone(), wait.clone());
                tokio::spawn(async move {
                    let hashing = move || {
                        let _ = wait.lock().map(|w| w.recv());
                    };
                    calls.run_check(hashing, || true).await
                })
            })
            .collect();
        while calls.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            calls.run_check(|| 1, || true).await,
            Err(StoreCallError::Busy)
        );
        assert!(
            !calls.stalled.load(Ordering::Relaxed),
            "a burst, not a stall"
        );
        assert_eq!(calls.run(|| 1).await, Err(StoreCallError::Busy));
        assert!(
            calls.stalled.load(Ordering::Relaxed),
            "nothing hashes: a stall"
        );
        drop(release);
        for call in held {
            assert_eq!(call.await.unwrap(), Ok(()));
        }
    }

    #[tokio::test]
    async fn the_slot_queue_gets_room_beside_the_store_calls() {
        let calls = StoreCalls::new(Duration::from_millis(10), Duration::ZERO, 3);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        for _ in 0..MAX_CALLS + 3 {
            let wait = wait.clone();
            let stalled = calls
                .run(move || {
                    let _ = wait.lock().map(|w| w.recv());
                })
                .await;
            assert_eq!(stalled, Err(StoreCallError::TimedOut), "room for it");
        }
        assert_eq!(calls.run(|| 1).await, Err(StoreCallError::Busy));
        drop(release);
    }
}

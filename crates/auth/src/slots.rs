//! Hash slots: at most `max` slow verifications at once, and a
//! bounded queue with a deadline for the logins that find them all taken.
//!
//! A hash is slow on purpose and holds 19 MiB (argon2id), so the number
//! running at once is capped. Without a queue, the login that finds every
//! slot taken is answered `454` at once, and a mail client shows that as an
//! error to its user. That is wrong after a restart: every user is cold at
//! the same moment, the burst of first logins is legitimate and the slots
//! drain it in a few seconds. So a login waits for a slot, up to `wait`;
//! only then is it answered "try later".
//!
//! The queue is bounded too (`max_waiting`): a waiter parks a thread of the
//! blocking pool, and a flood of wrong passwords must not park them all.
//! Past that length a login is refused at once, as before. Waiters are
//! served first come, first served: a freed slot is handed to the oldest
//! waiter (never grabbed by a newcomer), so a login is refused at its
//! deadline only when the logins ahead of it could not drain in time.
//!
//! The verification runs synchronously on the caller's (blocking) thread,
//! so the wait is a blocking one: a mutex, and one condition variable per
//! waiter so a release wakes exactly the waiter it hands the slot to. The
//! standard library has no semaphore, and an async one would need a
//! runtime that `portcullis auth test` does not run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// Every slot was taken and the queue was full (or waiting is off).
    QueueFull,
    /// Every slot stayed taken until the deadline.
    TimedOut,
}

/// The bounded set of hash slots and its queue.
pub(crate) struct VerificationSlots {
    state: Mutex<State>,
    max: usize,
    max_waiting: usize,
    wait: Duration,
}

struct State {
    /// Slots not held. Invariant: `free > 0` only when nobody waits (a
    /// released slot goes to the oldest waiter first).
    free: usize,
    waiting: VecDeque<Arc<Waiter>>,
}

/// One parked login.
struct Waiter {
    /// Set, under the state's lock, when a slot was handed to this waiter.
    granted: AtomicBool,
    wake: Condvar,
}

/// A slow verification in flight; frees its slot when dropped.
pub(crate) struct Slot<'a>(&'a VerificationSlots);

impl VerificationSlots {
    /// `max` slots (at least 1); up to `max_waiting` logins wait up to
    /// `wait` for one.
    pub(crate) fn new(max: usize, max_waiting: usize, wait: Duration) -> Self {
        let max = max.max(1);
        VerificationSlots {
            state: Mutex::new(State {
                free: max,
                waiting: VecDeque::new(),
            }),
            max,
            max_waiting,
            wait,
        }
    }

    /// How long a login waits for a slot at most.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// How many logins may wait at once.
    pub(crate) fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// A slot now, or none: for work that can simply be skipped (a re-hash,
    /// a dummy hash while the store is down).
    pub(crate) fn try_take(&self) -> Option<Slot<'_>> {
        let mut state = self.lock();
        (state.free > 0).then(|| {
            state.free -= 1;
            Slot(self)
        })
    }

    /// A slot, waiting for one up to the deadline if the queue has room.
    pub(crate) fn take(&self) -> Result<Slot<'_>, NoSlot> {
        let mut state = self.lock();
        if state.free > 0 {
            state.free -= 1;
            return Ok(Slot(self));
        }
        if self.wait.is_zero() || state.waiting.len() >= self.max_waiting {
            return Err(NoSlot::QueueFull);
        }
        let deadline = Instant::now() + self.wait;
        let me = Arc::new(Waiter {
            granted: AtomicBool::new(false),
            wake: Condvar::new(),
        });
        state.waiting.push_back(me.clone());
        loop {
            // Read under the lock the releaser sets it under.
            if me.granted.load(Ordering::Relaxed) {
                return Ok(Slot(self));
            }
            let now = Instant::now();
            if now >= deadline {
                // Not granted, so still queued: leave the queue.
                state.waiting.retain(|w| !Arc::ptr_eq(w, &me));
                return Err(NoSlot::TimedOut);
            }
            state = me
                .wake
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Logins waiting now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Whether any slot is held or any login waits for one.
    pub(crate) fn in_use(&self) -> bool {
        let state = self.lock();
        state.free < self.max || !state.waiting.is_empty()
    }

    fn release(&self) {
        let mut state = self.lock();
        match state.waiting.pop_front() {
            Some(next) => {
                next.granted.store(true, Ordering::Relaxed);
                next.wake.notify_one();
            }
            None => state.free += 1,
        }
    }

    /// The state; nothing panics while holding it, so a poisoned lock
    /// still holds consistent counts.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// Runs `threads` logins at once, each holding its slot for `hold`;
    /// returns how many got a slot and the refusals.
    fn burst(
        slots: &Arc<VerificationSlots>,
        threads: usize,
        hold: Duration,
    ) -> Vec<Result<(), NoSlot>> {
        let start = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (slots, start) = (slots.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let slot = slots.take()?;
                    std::thread::sleep(hold);
                    drop(slot);
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn more_logins_than_slots_all_get_one_within_the_deadline() {
        let slots = Arc::new(VerificationSlots::new(2, 16, Duration::from_secs(5)));
        let results = burst(&slots, 10, Duration::from_millis(20));
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(slots.lock().free, 2, "every slot came back");
    }

    #[test]
    fn past_the_queue_length_a_login_is_refused_at_once() {
        let slots = Arc::new(VerificationSlots::new(2, 3, Duration::from_secs(5)));
        let started = Instant::now();
        let results = burst(&slots, 10, Duration::from_millis(100));
        let refused = results
            .iter()
            .filter(|r| **r == Err(NoSlot::QueueFull))
            .count();
        assert_eq!(refused, 5, "2 hashing + 3 waiting: {results:?}");
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "nobody waited for the deadline"
        );
    }

    #[test]
    fn past_the_deadline_a_waiting_login_is_refused() {
        let slots = Arc::new(VerificationSlots::new(1, 8, Duration::from_millis(150)));
        assert!(!slots.in_use());
        let held = slots.take().expect("a free slot");
        assert!(slots.in_use());
        let started = Instant::now();
        assert_eq!(slots.take().err(), Some(NoSlot::TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(slots.lock().waiting.is_empty(), "the waiter left the queue");
        drop(held);
        assert!(!slots.in_use());
        assert!(slots.take().is_ok(), "the slot came back");
    }

    #[test]
    fn a_freed_slot_goes_to_the_oldest_waiter_not_a_newcomer() {
        let slots = Arc::new(VerificationSlots::new(1, 8, Duration::from_secs(5)));
        let held = slots.take().expect("a free slot");
        let (got, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let waiter = {
            let slots = slots.clone();
            let (got, release) = (got.0, release.1);
            std::thread::spawn(move || {
                let slot = slots.take();
                got.send(slot.is_ok()).unwrap();
                let _ = release.recv();
                drop(slot);
            })
        };
        while slots.lock().waiting.is_empty() {
            std::thread::yield_now();
        }
        drop(held);
        assert!(slots.try_take().is_none(), "handed to the waiter");
        assert!(got.1.recv().unwrap());
        drop(release.0);
        waiter.join().unwrap();
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn without_a_wait_a_busy_login_is_refused_at_once() {
        let slots = VerificationSlots::new(1, 8, Duration::ZERO);
        let _held = slots.take().expect("a free slot");
        assert_eq!(slots.take().err(), Some(NoSlot::QueueFull));
    }
}

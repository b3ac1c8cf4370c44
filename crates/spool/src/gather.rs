//! Gathering a group commit: the writer waits, briefly, for messages
//! that are still coming in.
//!
//! Under load, sessions fall into step. One commit answers many of them
//! at once, so their next messages arrive together too. Without gathering,
//! the first of them starts an fsync alone, and the rest queue behind it
//! for a second fsync: two disk round trips where one would do.
//!
//! A session says when it is receiving a message's body, by holding a
//! [`Receiving`]. It lets go once its message is handed to the writer, or
//! as soon as the body ends any other way, or the connection ends. The
//! writer takes a job. If some other session is still receiving a body,
//! the writer waits until the last of them lets go, or for
//! [`GATHER_LIMIT`], then commits everything that queued with one fsync.
//! A lone sender (nobody else receiving) is not made to wait. (A rare
//! exception: the writer takes the message in the instant between its
//! hand-over and the session letting go, and waits for that.)
//!
//! The wait is asked of the kernel as a timed park. With the kernel's
//! default timer slack (50 µs) it lasts about twice the limit.
//!
//! The count is only a hint: a wrong count delays a commit, and so its
//! `250`s, by the wait at most. It never changes what is committed, and
//! never lets a `250` go before the fsync of the message.
//!
//! A slow upload (a large message over a slow link) keeps the count above
//! zero for as long as it lasts. Every commit meanwhile pays the wait: a
//! hundred microseconds or so, against a message's round trip.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long the writer waits for bodies still being received (as asked;
/// with timer slack, about twice that). Under load some session is nearly
/// always receiving one, so most commits wait this long. Measured with 50
/// sessions on 2 cores, 50 µs gave 12-13 % more messages a second than no
/// wait, at 1 and at 20 messages a session. At 200 µs the waits cost more
/// than the larger groups saved.
pub(crate) const GATHER_LIMIT: Duration = Duration::from_micros(50);

/// What sessions and the writer share for gathering.
#[derive(Debug, Default)]
pub(crate) struct Gather {
    /// Sessions receiving a message's body right now.
    receiving: AtomicUsize,
    /// The writer is waiting for them (and wants an unpark when the count
    /// reaches zero).
    waiting: AtomicBool,
    /// The writer thread, to unpark.
    writer: OnceLock<Thread>,
}

impl Gather {
    /// Called once by the writer thread before its first job.
    pub(crate) fn writer_is(&self, thread: Thread) {
        let _ = self.writer.set(thread);
    }

    /// Waits until no session is receiving a body, at most `limit`.
    /// Returns at once when none is.
    pub(crate) fn wait(&self, limit: Duration) {
        if self.receiving.load(Ordering::SeqCst) == 0 {
            return;
        }
        let until = Instant::now() + limit;
        // Set before looking at the count: a session that brings the count to
        // zero after this load sees the flag, and unparks.
        self.waiting.store(true, Ordering::SeqCst);
        while self.receiving.load(Ordering::SeqCst) > 0 {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::park_timeout(until - now);
        }
        self.waiting.store(false, Ordering::SeqCst);
    }

    fn release(&self) {
        let before = self.receiving.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && self.waiting.load(Ordering::SeqCst) {
            if let Some(writer) = self.writer.get() {
                writer.unpark();
            }
        }
    }
}

/// Held by a session while it receives a message's body. Dropped once
/// the message is handed to the writer, which may be waiting for it.
#[derive(Debug)]
pub struct Receiving {
    gather: Arc<Gather>,
}

impl Receiving {
    pub(crate) fn new(gather: Arc<Gather>) -> Receiving {
        gather.receiving.fetch_add(1, Ordering::SeqCst);
        Receiving { gather }
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.gather.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_receiving_means_no_wait() {
        let gather = Gather::default();
        gather.writer_is(std::thread::current());
        let started = Instant::now();
        gather.wait(Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_wait_ends_when_the_last_body_is_handed_over() {
        let gather = Arc::new(Gather::default());
        gather.writer_is(std::thread::current());
        let first = Receiving::new(gather.clone());
        let second = Receiving::new(gather.clone());
        // Taken before the sessions start, so that a slow start of this
        // thread cannot make the wait look shorter than the sessions took.
        let started = Instant::now();
        let sessions = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            std::thread::sleep(Duration::from_millis(50));
            drop(second);
        });
        gather.wait(Duration::from_secs(30));
        let waited = started.elapsed();
        sessions.join().unwrap();
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert_eq!(gather.receiving.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_body_that_never_ends_holds_the_writer_only_for_the_limit() {
        let gather = Arc::new(Gather::default());
        gather.writer_is(std::thread::current());
        let _slow = Receiving::new(gather.clone());
        let started = Instant::now();
        gather.wait(Duration::from_millis(100));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }
}

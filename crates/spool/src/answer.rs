//! How the journal writer answers each job: one wake for a whole batch.
//!
//! A task woken from a thread outside its runtime costs a system call:
//! tokio's scheduler writes to its eventfd so that a runtime waiting in
//! `epoll_wait` notices. The writer answers a batch of jobs at once, and
//! with a oneshot channel for each it made one such call per message,
//! though one wake would have done.
//!
//! So the writer wakes only the first waiting task of a batch (the leader)
//! and hands it the wakers of the others; the leader wakes them when it
//! runs, on the runtime's own thread, where a wake only queues the task.
//! The others are never stranded: a leader that completes or is dropped
//! before it takes them passes them on (or the writer sees that it has and
//! wakes them itself).
//!
//! Callers outside a runtime (the CLI, start-up recovery) wait with
//! [`Answered::wait`], which parks the thread; a parked leader passes the
//! others on when it wakes, as a task does.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::{lock, SpoolError};

/// The writer's answer: on success, the message buffer of a store (empty
/// for a removal), handed back so that the thread that allocated it frees
/// it (freeing in another thread contends for the allocator's locks).
pub(crate) type Outcome = Result<Vec<u8>, SpoolError>;

/// A job's answer slot, writer side, and the waiting side.
pub(crate) fn channel() -> (Answer, Answered) {
    let slot = Arc::new(Mutex::new(Slot::default()));
    (
        Answer {
            slot: slot.clone(),
            sent: false,
        },
        Answered { slot },
    )
}

#[derive(Default)]
struct Slot {
    outcome: Option<Outcome>,
    /// Who to wake when the outcome is in.
    waiter: Option<Waker>,
    /// The wakers of the rest of the batch, for this waiter to wake.
    others: Vec<Waker>,
    /// The waiting side has taken its outcome or is gone: it passes on
    /// nothing handed to it from now on.
    done: bool,
}

/// The writer's end of one job's slot.
pub(crate) struct Answer {
    slot: Arc<Mutex<Slot>>,
    sent: bool,
}

impl Drop for Answer {
    /// A job dropped unanswered (the writer is going away) answers that.
    fn drop(&mut self) {
        if self.sent {
            return;
        }
        let mut slot = lock(&self.slot);
        slot.outcome.get_or_insert(Err(SpoolError::WriterGone));
        let waiter = slot.waiter.take();
        drop(slot);
        waiter.into_iter().for_each(Waker::wake);
    }
}

/// Answers every job of a batch with one wake from this thread: the first
/// waiting one's, which is handed the other wakers.
pub(crate) fn answer_all(answers: Vec<(Answer, Outcome)>) {
    let mut leader: Option<(Arc<Mutex<Slot>>, Waker)> = None;
    let mut others = Vec::new();
    for (mut answer, outcome) in answers {
        answer.sent = true;
        let mut slot = lock(&answer.slot);
        slot.outcome = Some(outcome);
        // No waker yet: the waiting side finds the outcome when it first
        // looks, and needs no wake.
        let Some(waker) = slot.waiter.take() else {
            continue;
        };
        drop(slot);
        match leader {
            None => leader = Some((answer.slot.clone(), waker)),
            Some(_) => others.push(waker),
        }
    }
    let Some((slot, waker)) = leader else {
        return;
    };
    let mut leading = lock(&slot);
    if leading.done {
        // It took its outcome (a poll between the two locks) or is gone:
        // the others are this thread's to wake.
        drop(leading);
        others.into_iter().for_each(Waker::wake);
    } else {
        leading.others = others;
        drop(leading);
    }
    waker.wake();
}

/// The waiting end: a future, or [`Answered::wait`] for a thread.
pub struct Answered {
    slot: Arc<Mutex<Slot>>,
}

impl Answered {
    /// Looks for the outcome, registering `waker` if it is not in yet, and
    /// passes on any wakers handed to this slot.
    fn check(&self, waker: &Waker) -> Option<Outcome> {
        let mut slot = lock(&self.slot);
        let others = std::mem::take(&mut slot.others);
        let outcome = slot.outcome.take();
        match outcome {
            Some(_) => {
                slot.done = true;
                slot.waiter = None;
            }
            None if slot.waiter.as_ref().is_some_and(|w| w.will_wake(waker)) => {}
            None => slot.waiter = Some(waker.clone()),
        }
        drop(slot);
        others.into_iter().for_each(Waker::wake);
        outcome
    }

    /// Blocks this thread until the outcome is in (for callers outside a
    /// runtime).
    pub(crate) fn wait(self) -> Outcome {
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        loop {
            if let Some(outcome) = self.check(&waker) {
                return outcome;
            }
            // A wake before this park leaves the thread's token set, so
            // the park returns at once: no wake is lost.
            std::thread::park();
        }
    }
}

impl Future for Answered {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        self.check(cx.waker()).map_or(Poll::Pending, Poll::Ready)
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        let mut slot = lock(&self.slot);
        slot.done = true;
        slot.waiter = None;
        let others = std::mem::take(&mut slot.others);
        drop(slot);
        others.into_iter().for_each(Waker::wake);
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter::default());
        (counter.clone(), Waker::from(counter))
    }

    fn poll(answered: &mut Answered, waker: &Waker) -> Poll<Outcome> {
        Pin::new(answered).poll(&mut Context::from_waker(waker))
    }

    fn wakes(counter: &Counter) -> usize {
        counter.0.load(Ordering::SeqCst)
    }

    #[test]
    fn a_batch_wakes_its_leader_once_and_the_leader_wakes_the_rest() {
        let (mut answers, mut waiting, mut counters, mut wakers) = (vec![], vec![], vec![], vec![]);
        for _ in 0..4 {
            let (answer, mut answered) = channel();
            let (counter, waker) = counted();
            assert!(poll(&mut answered, &waker).is_pending());
            answers.push((answer, Ok(vec![1])));
            waiting.push(answered);
            counters.push(counter);
            wakers.push(waker);
        }
        answer_all(answers);
        let woken: Vec<usize> = counters.iter().map(|c| wakes(c)).collect();
        assert_eq!(
            woken,
            [1, 0, 0, 0],
            "only the leader is woken by the writer"
        );
        assert!(matches!(
            poll(&mut waiting[0], &wakers[0]),
            Poll::Ready(Ok(_))
        ));
        let woken: Vec<usize> = counters.iter().map(|c| wakes(c)).collect();
        assert_eq!(woken, [1, 1, 1, 1], "the leader woke the others");
        for (answered, waker) in waiting.iter_mut().zip(&wakers).skip(1) {
            assert!(matches!(poll(answered, waker), Poll::Ready(Ok(_))));
        }
    }

    #[test]
    fn a_leader_dropped_unpolled_passes_the_others_on() {
        let (a1, mut w1) = channel();
        let (a2, mut w2) = channel();
        let (c1, k1) = counted();
        let (c2, k2) = counted();
        assert!(poll(&mut w1, &k1).is_pending());
        assert!(poll(&mut w2, &k2).is_pending());
        answer_all(vec![(a1, Ok(vec![])), (a2, Ok(vec![]))]);
        assert_eq!((wakes(&c1), wakes(&c2)), (1, 0));
        drop(w1);
        assert_eq!(wakes(&c2), 1);
        assert!(matches!(poll(&mut w2, &k2), Poll::Ready(Ok(_))));
    }

    #[test]
    fn a_leader_already_gone_is_skipped() {
        let (a1, w1) = channel();
        let (a2, mut w2) = channel();
        let (c2, k2) = counted();
        drop(w1);
        assert!(poll(&mut w2, &k2).is_pending());
        answer_all(vec![(a1, Ok(vec![])), (a2, Ok(vec![]))]);
        assert_eq!(wakes(&c2), 1);
        assert!(matches!(poll(&mut w2, &k2), Poll::Ready(Ok(_))));
    }

    #[test]
    fn an_answer_before_the_first_look_needs_no_wake() {
        let (answer, mut answered) = channel();
        let (counter, waker) = counted();
        answer_all(vec![(answer, Ok(vec![7]))]);
        assert!(matches!(poll(&mut answered, &waker), Poll::Ready(Ok(v)) if v == [7]));
        assert_eq!(wakes(&counter), 0);
    }

    #[test]
    fn a_job_dropped_unanswered_says_the_writer_is_gone() {
        let (answer, mut answered) = channel();
        let (counter, waker) = counted();
        assert!(poll(&mut answered, &waker).is_pending());
        drop(answer);
        assert_eq!(wakes(&counter), 1);
        assert!(matches!(
            poll(&mut answered, &waker),
            Poll::Ready(Err(SpoolError::WriterGone))
        ));
    }

    #[test]
    fn threads_wait_for_their_answers_and_pass_the_batch_on() {
        let mut answers = Vec::new();
        let mut threads = Vec::new();
        for i in 0..8u8 {
            let (answer, answered) = channel();
            answers.push((answer, Ok(vec![i])));
            threads.push(std::thread::spawn(move || answered.wait()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        answer_all(answers);
        for (i, thread) in threads.into_iter().enumerate() {
            assert_eq!(thread.join().unwrap().unwrap(), [i as u8]);
        }
    }

    /// Many batches answered while their tasks run on a runtime: every
    /// task gets its own answer, whatever the interleaving.
    #[test]
    fn tasks_on_a_runtime_all_get_their_answers() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (jobs, inbox) = std::sync::mpsc::channel::<(Answer, u32)>();
        let writer = std::thread::spawn(move || {
            while let Ok(first) = inbox.recv() {
                let mut batch = vec![(first.0, Ok(first.1.to_le_bytes().to_vec()))];
                while let Ok((answer, n)) = inbox.try_recv() {
                    batch.push((answer, Ok(n.to_le_bytes().to_vec())));
                }
                answer_all(batch);
            }
        });
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for n in 0..2000u32 {
                let jobs = jobs.clone();
                tasks.push(tokio::spawn(async move {
                    let (answer, answered) = channel();
                    jobs.send((answer, n)).unwrap();
                    if n % 7 == 0 {
                        // Some give up early: their leaders' batches must
                        // still be answered.
                        drop(answered);
                        return;
                    }
                    tokio::task::yield_now().await;
                    assert_eq!(answered.await.unwrap(), n.to_le_bytes());
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
        writer.join().unwrap();
    }
}

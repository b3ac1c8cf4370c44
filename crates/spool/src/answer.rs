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
//! Callers outside a runtime (the CLI, start-up recovery, delivery on the
//! blocking pool) wait with [`Answered::wait`], which parks the thread.
//! The writer unparks those itself and never makes one a leader: a parked
//! thread handed to a task would wait for that task's runtime, which may
//! be the very thread that is parked.

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
    /// The waiter is a parked thread ([`Answered::wait`]).
    parked: bool,
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

/// Answers every job of a batch with one wake from this thread for all
/// its tasks (the first waiting task's, which is handed the other tasks'
/// wakers), and one for each parked thread.
pub(crate) fn answer_all(answers: Vec<(Answer, Outcome)>) {
    if let Some(batch) = set_outcomes(answers) {
        hand_over(batch);
    }
}

/// What is left to wake once every outcome is in.
struct Woken {
    /// The first waiting task: its slot and waker.
    leader: (Arc<Mutex<Slot>>, Waker),
    /// The other waiting tasks, for the leader to wake.
    others: Vec<Waker>,
}

/// Puts each outcome in its slot and wakes the parked threads; returns the
/// tasks to wake, if any.
fn set_outcomes(answers: Vec<(Answer, Outcome)>) -> Option<Woken> {
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
        let parked = slot.parked;
        drop(slot);
        if parked {
            waker.wake();
            continue;
        }
        match leader {
            None => leader = Some((answer.slot.clone(), waker)),
            Some(_) => others.push(waker),
        }
    }
    leader.map(|leader| Woken { leader, others })
}

/// Hands the other wakers to the leader and wakes it; if the leader has
/// meanwhile taken its outcome (a poll between the two steps) or is gone,
/// wakes the others instead.
fn hand_over(Woken { leader, others }: Woken) {
    let (slot, waker) = leader;
    let mut leading = lock(&slot);
    if leading.done {
        drop(leading);
        others.into_iter().for_each(Waker::wake);
    } else {
        leading.others = others;
        drop(leading);
        waker.wake();
    }
}

/// The waiting end: a future, or [`Answered::wait`] for a thread.
pub struct Answered {
    slot: Arc<Mutex<Slot>>,
}

impl Answered {
    /// Looks for the outcome, registering `waker` if it is not in yet, and
    /// passes on any wakers handed to this slot.
    fn check(&self, waker: &Waker, parked: bool) -> Option<Outcome> {
        let mut slot = lock(&self.slot);
        let others = std::mem::take(&mut slot.others);
        let outcome = slot.outcome.take();
        // A waker replaced is dropped after the lock, like the others.
        let replaced = match outcome {
            Some(_) => {
                slot.done = true;
                slot.waiter.take()
            }
            None if slot.waiter.as_ref().is_some_and(|w| w.will_wake(waker)) => None,
            None => {
                slot.parked = parked;
                slot.waiter.replace(waker.clone())
            }
        };
        drop(slot);
        drop(replaced);
        others.into_iter().for_each(Waker::wake);
        outcome
    }

    /// Blocks this thread until the outcome is in (for callers outside a
    /// runtime).
    pub(crate) fn wait(self) -> Outcome {
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        loop {
            if let Some(outcome) = self.check(&waker, true) {
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
        self.check(cx.waker(), false)
            .map_or(Poll::Pending, Poll::Ready)
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        let mut slot = lock(&self.slot);
        slot.done = true;
        let waiter = slot.waiter.take();
        let others = std::mem::take(&mut slot.others);
        drop(slot);
        drop(waiter);
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

    /// A job whose waiting side has looked once (and so registered its
    /// counted waker).
    fn waiting_job() -> (Answer, Answered, Arc<Counter>, Waker) {
        let (answer, mut answered) = channel();
        let (counter, waker) = counted();
        assert!(poll(&mut answered, &waker).is_pending());
        (answer, answered, counter, waker)
    }

    #[test]
    fn a_batch_wakes_its_leader_once_and_the_leader_wakes_the_rest() {
        let (mut answers, mut waiting, mut counters, mut wakers) = (vec![], vec![], vec![], vec![]);
        for _ in 0..4 {
            let (answer, answered, counter, waker) = waiting_job();
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
        let (a1, w1, c1, _k1) = waiting_job();
        let (a2, mut w2, c2, k2) = waiting_job();
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

    /// Two waiting tasks; the writer has put both outcomes in and chosen
    /// the first as leader, but not yet handed it the other's waker.
    fn between_the_two_steps() -> (Answered, Arc<Counter>, Waker, Answered, Arc<Counter>, Woken) {
        let (a1, w1, c1, k1) = waiting_job();
        let (a2, w2, c2, _k2) = waiting_job();
        let woken = set_outcomes(vec![(a1, Ok(vec![1])), (a2, Ok(vec![2]))]).expect("tasks");
        assert_eq!((wakes(&c1), wakes(&c2)), (0, 0));
        (w1, c1, k1, w2, c2, woken)
    }

    /// The leader took its outcome (a poll) or was dropped between the
    /// writer's two steps: it passes nothing on, so the writer wakes the
    /// other itself.
    #[test]
    fn a_leader_done_before_the_handover_leaves_the_waking_to_the_writer() {
        for dropped in [false, true] {
            let (mut w1, c1, k1, mut w2, c2, woken) = between_the_two_steps();
            if dropped {
                drop(w1);
            } else {
                assert!(matches!(poll(&mut w1, &k1), Poll::Ready(Ok(v)) if v == [1]));
            }
            hand_over(woken);
            assert_eq!((wakes(&c1), wakes(&c2)), (0, 1), "dropped: {dropped}");
            let k2 = Waker::from(c2);
            assert!(matches!(poll(&mut w2, &k2), Poll::Ready(Ok(v)) if v == [2]));
        }
    }

    /// A thread that blocks on its answer (as a blocking call made on a
    /// runtime's only thread would) is woken by the writer itself, not
    /// handed to a task of that runtime that can no longer run.
    #[test]
    fn a_parked_thread_is_woken_by_the_writer_not_by_a_task() {
        let (finished, finish) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (a_task, mut w_task) = channel();
                let (a_thread, w_thread) = channel();
                let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut w_task).poll(cx)));
                assert!(first.await.is_pending());
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    answer_all(vec![(a_task, Ok(vec![1])), (a_thread, Ok(vec![2]))]);
                });
                assert_eq!(w_thread.wait().unwrap(), [2]);
                writer.join().unwrap();
                assert_eq!(w_task.await.unwrap(), [1]);
            });
            let _ = finished.send(());
        });
        finish
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the parked thread was woken");
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
                    let (answer, mut answered) = channel();
                    jobs.send((answer, n)).unwrap();
                    // Looked at once, so the writer may make it a leader.
                    let first =
                        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut answered).poll(cx)))
                            .await;
                    if n % 7 == 0 {
                        // Some give up, perhaps as the leader of a batch:
                        // the rest of it must still be answered.
                        drop(answered);
                        return;
                    }
                    let outcome = match first {
                        Poll::Ready(outcome) => outcome,
                        Poll::Pending => {
                            tokio::task::yield_now().await;
                            answered.await
                        }
                    };
                    assert_eq!(outcome.unwrap(), n.to_le_bytes());
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
        writer.join().unwrap();
    }
}

//! The login and sending history, written in batches by one thread.
//!
//! Every accepted or refused login, every spooled message and every signal
//! adds a row to the user store's activity tables. Written one by one, each
//! row was its own SQLite commit on a blocking-pool thread: at a few
//! thousand logins a second the commits took a third of the server's CPU,
//! and a burst of logins started hundreds of blocking threads (each with
//! its stack and its malloc arena) to wait for the database lock.
//!
//! Here the session only puts the event on a bounded channel (no wait, no
//! allocation beyond the event) and one thread writes whatever has queued
//! up since its last write in one transaction, the way the spool's writer
//! groups its fsyncs: alone, an event is written at once; under load, a
//! thousand share a commit. The history is a record for people (`portcullis
//! user activity`) and for the volume baseline, not a gate: when the store
//! is slower than the events (the queue is full), events are dropped and
//! counted in the log rather than held in memory without bound.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_credentials::activity::{ActivityEvent, ActivityStore};

/// Events waiting for the writer at most. The channel's slots (about a
/// hundred bytes each) are allocated when it is made: this bound is also
/// memory held from the start.
const QUEUE: usize = 8 * 1024;

/// Events written in one transaction at most.
const MAX_BATCH: usize = 4096;

/// The writer's pause after each commit. SQLite commits (and fsyncs) in
/// microseconds, so without it the writer would wake for nearly every
/// event and commit batches of one; with it a busy server commits at most
/// ten times a second, and the history is at most this much behind.
const LINGER: Duration = Duration::from_millis(100);

/// Hands events to the writer thread; cheap to clone.
#[derive(Clone)]
pub(crate) struct ActivityLog {
    events: SyncSender<ActivityEvent>,
    dropped: Arc<AtomicU64>,
    /// Set by [`ActivityLog::finish`]: write what is queued, then end.
    stopping: Arc<AtomicBool>,
    /// Told when the writer has ended.
    ended: Arc<Mutex<Option<Receiver<()>>>>,
}

impl ActivityLog {
    /// Starts the writer thread; it ends when the last handle is dropped,
    /// after writing what was queued.
    pub(crate) fn start(store: Arc<dyn ActivityStore>) -> ActivityLog {
        let (events, queue) = sync_channel(QUEUE);
        let stopping = Arc::new(AtomicBool::new(false));
        let (tell_ended, ended) = sync_channel(1);
        let stop = stopping.clone();
        let spawned = std::thread::Builder::new()
            .name("portcullis-activity".into())
            .spawn(move || {
                write_batches(&*store, &queue, &stop);
                let _ = tell_ended.send(());
            });
        if let Err(error) = spawned {
            // The receiver is gone with the closure: every record is
            // dropped (and counted), the server keeps running.
            tracing::error!(%error, "could not start the activity writer; the login history is not kept");
        }
        ActivityLog {
            events,
            dropped: Arc::default(),
            stopping,
            ended: Arc::new(Mutex::new(Some(ended))),
        }
    }

    /// At shutdown: the writer writes what is queued and ends; waits for
    /// that at most `limit` (a store that does not answer must not hold
    /// the exit).
    pub(crate) fn finish(&self, limit: Duration) {
        self.stopping.store(true, Ordering::Release);
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(ended) = ended {
            if ended.recv_timeout(limit).is_err() {
                tracing::warn!("the activity history was not all written before the exit");
            }
        }
    }

    /// Queues `event` for the store without waiting.
    pub(crate) fn record(&self, event: ActivityEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "the activity history falls behind; events not recorded so far"
                    );
                }
            }
        }
    }
}

/// The writer: waits for the first event, takes every event queued
/// meanwhile (up to [`MAX_BATCH`]), writes them in one transaction, then
/// lingers (a lone event is written at once; the next batch waits), unless
/// the batch was full (a backlog is written without a pause) or the server
/// is stopping (then it ends once the queue is empty).
fn write_batches(
    store: &dyn ActivityStore,
    queue: &Receiver<ActivityEvent>,
    stopping: &AtomicBool,
) {
    let mut batch = Vec::with_capacity(64);
    loop {
        let first = match queue.recv_timeout(LINGER) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) if !stopping.load(Ordering::Acquire) => continue,
            Err(_) => return,
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let full = batch.len() == MAX_BATCH;
        merge_sent(&mut batch);
        if let Err(error) = store.record_batch(&batch) {
            tracing::warn!(%error, events = batch.len(), "could not record activity in the history");
        }
        batch.clear();
        if !full && !stopping.load(Ordering::Acquire) {
            std::thread::sleep(LINGER);
        }
    }
}

/// Folds the batch's `Sent` events of one user and hour into one (the
/// store adds them to the same row anyway): one upsert per sender and
/// batch instead of one per message. Other events keep their order.
fn merge_sent(batch: &mut Vec<ActivityEvent>) {
    let mut sums: std::collections::HashMap<(String, u64), (u64, u64)> = Default::default();
    batch.retain(|event| match event {
        ActivityEvent::Sent {
            user,
            at_ms,
            messages,
            recipients,
        } => {
            let sum = sums.entry((user.clone(), at_ms / 3_600_000)).or_default();
            sum.0 += messages;
            sum.1 += recipients;
            false
        }
        _ => true,
    });
    for ((user, hour), (messages, recipients)) in sums {
        batch.push(ActivityEvent::Sent {
            user,
            at_ms: hour * 3_600_000,
            messages,
            recipients,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_credentials::activity::LoginRecord;
    use portcullis_credentials::sqlite::SqliteStore;
    use std::time::Instant;

    fn login(i: u64) -> ActivityEvent {
        ActivityEvent::Login(LoginRecord {
            user: "alice".into(),
            at_ms: i,
            address: "192.0.2.1".into(),
            mechanism: "PLAIN".into(),
            result: "accepted".into(),
        })
    }

    #[test]
    fn sent_messages_of_a_batch_are_one_row_update_per_user_and_hour() {
        let sent = |user: &str, at_ms, recipients| ActivityEvent::Sent {
            user: user.into(),
            at_ms,
            messages: 1,
            recipients,
        };
        let mut batch = vec![
            sent("alice", 3_600_000, 2),
            login(1),
            sent("alice", 3_600_999, 3),
            sent("bob", 3_600_000, 1),
            sent("alice", 7_200_000, 1),
        ];
        merge_sent(&mut batch);
        assert_eq!(batch[0], login(1));
        let mut rest: Vec<_> = batch[1..].to_vec();
        rest.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            rest,
            vec![
                ActivityEvent::Sent {
                    user: "alice".into(),
                    at_ms: 3_600_000,
                    messages: 2,
                    recipients: 5
                },
                ActivityEvent::Sent {
                    user: "alice".into(),
                    at_ms: 7_200_000,
                    messages: 1,
                    recipients: 1
                },
                ActivityEvent::Sent {
                    user: "bob".into(),
                    at_ms: 3_600_000,
                    messages: 1,
                    recipients: 1
                },
            ]
        );
    }

    #[test]
    fn every_event_of_a_burst_reaches_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("u.sqlite")).expect("opens"));
        let log = ActivityLog::start(store.clone());
        for i in 0..5000 {
            log.record(login(i));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.logins("alice", 10_000).unwrap().len() < 5000 {
            assert!(Instant::now() < deadline, "history incomplete");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(log.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn what_is_queued_at_shutdown_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("u.sqlite")).expect("opens"));
        let log = ActivityLog::start(store.clone());
        log.record(login(1));
        // The writer lingers after its first batch: these wait for it.
        std::thread::sleep(Duration::from_millis(20));
        for i in 2..=100 {
            log.record(login(i));
        }
        log.finish(Duration::from_secs(10));
        assert_eq!(store.logins("alice", 1000).unwrap().len(), 100);
    }

    /// A store that never answers: the queue fills, the rest is dropped
    /// and counted, and `record` never blocks.
    struct Stuck;
    impl ActivityStore for Stuck {
        fn record_batch(
            &self,
            _: &[ActivityEvent],
        ) -> Result<(), portcullis_credentials::StoreError> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        }
        fn record_sent(
            &self,
            _: &str,
            _: u64,
            _: u64,
        ) -> Result<(), portcullis_credentials::StoreError> {
            Ok(())
        }
        fn sent(
            &self,
            _: &str,
            _: usize,
        ) -> Result<
            Vec<portcullis_credentials::activity::SentHour>,
            portcullis_credentials::StoreError,
        > {
            Ok(vec![])
        }
        fn record_signal(
            &self,
            _: &portcullis_credentials::activity::SignalRecord,
        ) -> Result<(), portcullis_credentials::StoreError> {
            Ok(())
        }
        fn signals(
            &self,
            _: &str,
            _: usize,
        ) -> Result<
            Vec<portcullis_credentials::activity::SignalRecord>,
            portcullis_credentials::StoreError,
        > {
            Ok(vec![])
        }
        fn record_login(&self, _: &LoginRecord) -> Result<(), portcullis_credentials::StoreError> {
            Ok(())
        }
        fn logins(
            &self,
            _: &str,
            _: usize,
        ) -> Result<Vec<LoginRecord>, portcullis_credentials::StoreError> {
            Ok(vec![])
        }
        fn prune_logins(&self, _: u64) -> Result<usize, portcullis_credentials::StoreError> {
            Ok(0)
        }
        fn set_suspension(
            &self,
            _: &str,
            _: Option<&portcullis_credentials::activity::Suspension>,
        ) -> Result<(), portcullis_credentials::StoreError> {
            Ok(())
        }
        fn suspensions(
            &self,
        ) -> Result<
            Vec<(String, portcullis_credentials::activity::Suspension)>,
            portcullis_credentials::StoreError,
        > {
            Ok(vec![])
        }
        fn set_limits(
            &self,
            _: &str,
            _: Option<&str>,
        ) -> Result<(), portcullis_credentials::StoreError> {
            Ok(())
        }
        fn limits(&self, _: &str) -> Result<Option<String>, portcullis_credentials::StoreError> {
            Ok(None)
        }
    }

    #[test]
    fn a_stuck_store_costs_bounded_memory_and_never_blocks_a_session() {
        let log = ActivityLog::start(Arc::new(Stuck));
        let started = Instant::now();
        let total = QUEUE as u64 + 10_000;
        for i in 0..total {
            log.record(login(i));
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        let dropped = log.dropped.load(Ordering::Relaxed);
        // One batch is with the stuck writer, QUEUE wait, the rest dropped.
        let most = total - QUEUE as u64;
        assert!(
            (most - MAX_BATCH as u64..=most).contains(&dropped),
            "dropped {dropped}"
        );
    }
}

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
//!
//! Logins are folded per minute ([`LoginFold`]): the first login of a
//! user from an address with a mechanism and a result is a row at once
//! (what someone looking for a stranger's login wants to see soon), and
//! the repeats of that minute become one row with their count when the
//! minute is over. A device that reconnects all day, or a user whose
//! client opens a connection per message, no longer adds a row per login:
//! at full speed that was 20 000 rows a second, each an insert into a
//! per-user index whose pages a thousand users scatter over the file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_credentials::activity::{ActivityEvent, ActivityStore, LoginRecord};

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

/// Logins are folded within this span.
const FOLD_SPAN_MS: u64 = 60_000;

/// Distinct logins folded per minute at most: past it, a login of a new
/// kind is a row of its own and not remembered, so a flood of names and
/// addresses costs rows, not memory.
const FOLD_KEYS: usize = 20_000;

/// A kind with a longer user name (a refused login keeps the name as the
/// client sent it, up to a command line's length) is never remembered:
/// with [`FOLD_KEYS`], the fold holds a few MiB at most.
const FOLD_NAME_MAX: usize = 256;

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
/// meanwhile (up to [`MAX_BATCH`]), folds the repeated logins, writes the
/// rest in one transaction, then lingers (a lone event is written at once;
/// the next batch waits), unless the batch was full (a backlog is written
/// without a pause) or the server is stopping (then it ends once the queue
/// is empty, after writing the repeats it holds).
fn write_batches(
    store: &dyn ActivityStore,
    queue: &Receiver<ActivityEvent>,
    stopping: &AtomicBool,
) {
    let mut batch = Vec::with_capacity(64);
    let mut fold = LoginFold::default();
    loop {
        let first = match queue.recv_timeout(LINGER) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) if !stopping.load(Ordering::Acquire) => {
                // Quiet: a minute over hands its repeats to the store.
                if fold.over(now_ms()) {
                    fold.flush(&mut batch);
                    write(store, &mut batch);
                }
                continue;
            }
            Err(_) => {
                fold.flush(&mut batch);
                write(store, &mut batch);
                return;
            }
        };
        fold.add(first, &mut batch);
        let mut taken = 1;
        while taken < MAX_BATCH {
            match queue.try_recv() {
                Ok(event) => {
                    fold.add(event, &mut batch);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        let full = taken == MAX_BATCH;
        // A minute over hands its repeats to the store even when the
        // events never pause (sends, signals, but no login of a later
        // minute to turn it).
        if fold.over(now_ms()) {
            fold.flush(&mut batch);
        }
        write(store, &mut batch);
        if !full && !stopping.load(Ordering::Acquire) {
            std::thread::sleep(LINGER);
        }
    }
}

/// One transaction for `batch` (nothing for an empty one), then empties it.
fn write(store: &dyn ActivityStore, batch: &mut Vec<ActivityEvent>) {
    if batch.is_empty() {
        return;
    }
    merge_sent(batch);
    if let Err(error) = store.record_batch(batch) {
        tracing::warn!(%error, events = batch.len(), "could not record activity in the history");
    }
    batch.clear();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What makes two logins the same for the history.
#[derive(PartialEq, Eq, Hash)]
struct LoginKind {
    user: String,
    address: String,
    mechanism: String,
    result: String,
}

/// The repeats of one kind of login in the current minute.
#[derive(Default)]
struct Repeats {
    times: u64,
    first_ms: u64,
    last_ms: u64,
}

/// The logins of the current minute seen so far, by kind, with their
/// repeats not yet written.
#[derive(Default)]
struct LoginFold {
    /// The minute (Unix ms / [`FOLD_SPAN_MS`]) being folded.
    minute: u64,
    seen: HashMap<LoginKind, Repeats>,
}

impl LoginFold {
    /// Puts `event` in `batch`, unless it repeats a login of this minute
    /// (then it is counted here). A login of a later minute first hands
    /// the repeats of this one to `batch`; one of an earlier minute (late
    /// in the queue) is a row of its own.
    fn add(&mut self, event: ActivityEvent, batch: &mut Vec<ActivityEvent>) {
        let ActivityEvent::Login(login) = event else {
            batch.push(event);
            return;
        };
        let minute = login.at_ms / FOLD_SPAN_MS;
        if minute > self.minute {
            self.flush(batch);
            self.minute = minute;
        }
        if minute < self.minute || login.times != 1 {
            batch.push(ActivityEvent::Login(login));
            return;
        }
        let LoginRecord {
            user,
            at_ms,
            address,
            mechanism,
            result,
            ..
        } = login;
        let kind = LoginKind {
            user,
            address,
            mechanism,
            result,
        };
        if let Some(repeats) = self.seen.get_mut(&kind) {
            if repeats.times == 0 {
                repeats.first_ms = at_ms;
            }
            repeats.times += 1;
            repeats.first_ms = repeats.first_ms.min(at_ms);
            repeats.last_ms = repeats.last_ms.max(at_ms);
            return;
        }
        let row = LoginRecord::one(
            kind.user.clone(),
            at_ms,
            kind.address.clone(),
            kind.mechanism.clone(),
            kind.result.clone(),
        );
        if self.seen.len() < FOLD_KEYS && kind.user.len() <= FOLD_NAME_MAX {
            self.seen.insert(kind, Repeats::default());
        }
        batch.push(ActivityEvent::Login(row));
    }

    /// Whether the minute being folded is over at `now_ms`, with repeats
    /// to write.
    fn over(&self, now_ms: u64) -> bool {
        now_ms / FOLD_SPAN_MS > self.minute && !self.seen.is_empty()
    }

    /// One row per kind that repeated, into `batch`; forgets the minute's
    /// kinds (and the memory they held).
    fn flush(&mut self, batch: &mut Vec<ActivityEvent>) {
        for (kind, repeats) in std::mem::take(&mut self.seen) {
            if repeats.times == 0 {
                continue;
            }
            batch.push(ActivityEvent::Login(LoginRecord {
                user: kind.user,
                at_ms: repeats.first_ms,
                address: kind.address,
                mechanism: kind.mechanism,
                result: kind.result,
                times: repeats.times,
                last_ms: repeats.last_ms,
            }));
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
        ActivityEvent::Login(LoginRecord::one(
            "alice".into(),
            i,
            "192.0.2.1".into(),
            "PLAIN".into(),
            "accepted".into(),
        ))
    }

    /// Logins in the store's rows, repeats counted.
    fn logins_written(store: &SqliteStore, user: &str) -> u64 {
        store
            .logins(user, 100_000)
            .unwrap()
            .iter()
            .map(|l| l.times)
            .sum()
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
        while logins_written(&store, "alice") < 5000 {
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
        assert_eq!(logins_written(&store, "alice"), 100);
    }

    fn login_at(user: &str, address: &str, at_ms: u64) -> ActivityEvent {
        ActivityEvent::Login(LoginRecord::one(
            user.into(),
            at_ms,
            address.into(),
            "PLAIN".into(),
            "accepted".into(),
        ))
    }

    #[test]
    fn a_minute_of_repeated_logins_is_two_rows_and_a_new_address_shows_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("u.sqlite")).expect("opens"));
        let log = ActivityLog::start(store.clone());
        // Now, so the minute is not over while the test runs: near its
        // end, the next one.
        if now_ms() % FOLD_SPAN_MS > FOLD_SPAN_MS - 10_000 {
            std::thread::sleep(Duration::from_millis(
                FOLD_SPAN_MS - now_ms() % FOLD_SPAN_MS,
            ));
        }
        let now = now_ms();
        for i in 0..1000 {
            log.record(login_at("alice", "192.0.2.1", now + i % 10));
        }
        log.record(login_at("alice", "198.51.100.7", now + 20));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rows = store.logins("alice", 100).unwrap();
            if rows.iter().any(|l| l.address == "198.51.100.7") {
                assert!(rows.len() <= 3, "{rows:?}");
                break;
            }
            assert!(Instant::now() < deadline, "new address not written");
            std::thread::sleep(Duration::from_millis(20));
        }
        log.finish(Duration::from_secs(10));
        let rows = store.logins("alice", 100).unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(logins_written(&store, "alice"), 1001);
        let repeats = rows.iter().find(|l| l.times > 1).expect("a folded row");
        assert_eq!(repeats.times, 999);
        assert!(
            repeats.at_ms >= now && repeats.last_ms == now + 9,
            "{repeats:?}"
        );
    }

    #[test]
    fn folding_holds_a_bounded_number_of_kinds_and_loses_no_login() {
        let mut fold = LoginFold::default();
        let mut batch = Vec::new();
        let users = FOLD_KEYS as u64 + 10;
        for round in 0..2 {
            for u in 0..users {
                fold.add(
                    login_at(&format!("u{u}"), "192.0.2.1", 60_000 + round),
                    &mut batch,
                );
            }
        }
        assert_eq!(fold.seen.len(), FOLD_KEYS);
        // A name longer than a real one is a row each time, not held.
        let long = "x".repeat(FOLD_NAME_MAX + 1);
        let (kinds, rows) = (fold.seen.len(), batch.len());
        let mut fresh = LoginFold::default();
        for _ in 0..2 {
            fresh.add(login_at(&long, "192.0.2.1", 60_000), &mut batch);
        }
        assert!(fresh.seen.is_empty());
        assert_eq!((fold.seen.len(), batch.len()), (kinds, rows + 2));
        batch.truncate(rows);
        // The first of each, and both of the ten not remembered.
        assert_eq!(batch.len() as u64, users + 10);
        // A later minute hands the repeats over.
        fold.add(login_at("late", "192.0.2.1", 120_000), &mut batch);
        let total: u64 = batch
            .iter()
            .map(|e| match e {
                ActivityEvent::Login(l) => l.times,
                _ => 0,
            })
            .sum();
        assert_eq!(total, 2 * users + 1);
        // One of the minute before, late in the queue: a row of its own.
        let before = batch.len();
        fold.add(login_at("u1", "192.0.2.1", 60_001), &mut batch);
        assert_eq!(batch.len(), before + 1);
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

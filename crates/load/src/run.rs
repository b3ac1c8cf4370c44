//! The closed loop: C tasks, each running sessions back to back, plus the
//! progress line and Ctrl-C.
//!
//! Closed loop means the offered load is whatever the server can take with
//! C sessions in flight: a task starts its next session only when the last
//! one ended. After a failed session a task pauses [`ERROR_PAUSE`], so a
//! server that refuses connections is not hammered in a tight loop that
//! would also starve the tasks that still work.
//!
//! When the window closes no new session starts; sessions in flight may
//! finish (they are not counted) for up to one step timeout, then are
//! dropped. Ctrl-C closes the window at once; a second Ctrl-C exits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::args::Stop;
use crate::session::{self, Script};
use crate::stats::{Clock, Live, Recorder};

/// Pause after a failed session before the task starts the next one.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What a load run produced.
pub struct Outcome {
    pub rec: Recorder,
    /// Length of the window the counts belong to.
    pub measured: Duration,
    pub interrupted: bool,
}

/// Shared between the tasks of one run.
struct Run {
    script: Arc<Script>,
    clock: Clock,
    live: Live,
    /// Count mode: sessions handed out so far, and the limit.
    tickets: Option<(AtomicU64, u64)>,
    grace: Duration,
}

impl Run {
    /// Takes the next session, or says the run is over.
    fn next_session(&self) -> bool {
        if self.clock.over() {
            return false;
        }
        match &self.tickets {
            Some((taken, limit)) => taken.fetch_add(1, Ordering::Relaxed) < *limit,
            None => true,
        }
    }
}

/// Runs the closed loop until the window closes or the sessions are done.
pub async fn load(
    script: Arc<Script>,
    connections: usize,
    stop: Stop,
    step_timeout: Duration,
    quiet: bool,
) -> Outcome {
    let (clock, tickets) = match stop {
        Stop::Sessions(n) => (
            Clock::new(Duration::ZERO, None),
            Some((AtomicU64::new(0), n)),
        ),
        Stop::Window { warmup, window } => (Clock::new(warmup, Some(window)), None),
    };
    let run = Arc::new(Run {
        script,
        clock,
        live: Live::default(),
        tickets,
        grace: step_timeout,
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    let signals = tokio::spawn(interrupt(run.clone(), interrupted.clone()));
    let progress = (!quiet).then(|| tokio::spawn(progress(run.clone())));

    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(worker(run.clone()));
    }
    let mut rec = Recorder::default();
    while let Some(done) = tasks.join_next().await {
        // A worker only panics on a broken invariant; surface it.
        rec.merge(done.expect("load worker panicked"));
    }
    let finished = Instant::now();
    signals.abort();
    if let Some(progress) = progress {
        progress.abort();
        print_progress(&run, finished, &mut Snapshot::default(), true);
    }
    Outcome {
        rec,
        measured: run.clock.measured(finished),
        interrupted: interrupted.load(Ordering::Relaxed),
    }
}

async fn worker(run: Arc<Run>) -> Recorder {
    let mut rec = Recorder::default();
    while run.next_session() {
        let session = session::run(&run.script, &mut rec, &run.clock, &run.live);
        let result = match run.clock.end() {
            // Cut off a session still running one grace period after the
            // window: neither a success nor an error.
            Some(end) => {
                let deadline = tokio::time::Instant::from_std(end + run.grace);
                match tokio::time::timeout_at(deadline, session).await {
                    Ok(result) => result,
                    Err(_) => break,
                }
            }
            None => session.await,
        };
        if let Err(failure) = result {
            failure.record(&mut rec, &run.live);
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    rec
}

/// First Ctrl-C: close the window (report what was measured). Second: exit.
async fn interrupt(run: Arc<Run>, interrupted: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return; // no signal handling available: run to the end
    }
    interrupted.store(true, Ordering::Relaxed);
    run.clock.stop_now();
    eprintln!("portcullis-load: interrupted, finishing sessions in flight (Ctrl-C again to quit)");
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

/// Counter values at the previous progress line.
#[derive(Default)]
struct Snapshot {
    at: Option<Instant>,
    sessions: u64,
    messages: u64,
    auths: u64,
}

async fn progress(run: Arc<Run>) {
    let mut last = Snapshot::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await; // the first tick fires at once
    loop {
        tick.tick().await;
        print_progress(&run, Instant::now(), &mut last, false);
    }
}

fn print_progress(run: &Run, now: Instant, last: &mut Snapshot, closing: bool) {
    let live = &run.live;
    let sessions = live.sessions.load(Ordering::Relaxed);
    let messages = live.messages.load(Ordering::Relaxed);
    let auths = live.auths.load(Ordering::Relaxed);
    let errors = live.errors.load(Ordering::Relaxed);
    let since = last.at.unwrap_or(run.clock.origin());
    let secs = now.duration_since(since).as_secs_f64().max(1e-9);
    let phase = if closing {
        "done"
    } else if run.clock.warming_up() {
        "warm-up"
    } else if run.clock.over() {
        "draining"
    } else {
        "measuring"
    };
    let t = now.duration_since(run.clock.origin()).as_secs_f64();
    if closing {
        eprintln!(
            "[{t:6.1}s] {phase:9} sessions {sessions}  messages {messages}  auths {auths}  errors {errors}"
        );
        return;
    }
    eprintln!(
        "[{t:6.1}s] {phase:9} sessions/s {:8.0}  messages/s {:8.0}  auths/s {:8.0}  errors {errors}",
        (sessions - last.sessions) as f64 / secs,
        (messages - last.messages) as f64 / secs,
        (auths - last.auths) as f64 / secs,
    );
    *last = Snapshot {
        at: Some(now),
        sessions,
        messages,
        auths,
    };
}

//! `--hold N`: open N authenticated connections and keep them idle.
//!
//! What it is for: the server's memory per idle connection, the cost that
//! decides how many submission clients one host can keep. At most `-c`
//! connections are set up at once (a burst of N handshakes would measure
//! something else). With `--server-pid` the server's VmRSS is read from
//! `/proc/<pid>/status` before the first connection and again once all are
//! idle, and the difference is divided by the connections held.
//!
//! At the end every held connection is sent QUIT; a connection the server
//! dropped while idle shows up as a `QUIT` error, so "held" is checked, not
//! assumed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::conn::Conn;
use crate::session::{self, Script};
use crate::stats::{Clock, Live, Recorder};

/// How long the connections idle before the "after" memory sample, so the
/// server has finished the work of the last AUTH.
const SETTLE: Duration = Duration::from_millis(500);

/// What a hold run produced.
pub struct HoldOutcome {
    pub requested: usize,
    pub held: usize,
    pub setup: Duration,
    pub held_for: Duration,
    pub quit_ok: usize,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub rec: Recorder,
}

impl HoldOutcome {
    /// Server memory per held connection, in KiB.
    pub fn rss_per_connection_kib(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_kib?, self.rss_after_kib?);
        (self.held > 0).then(|| (after as f64 - before as f64) / self.held as f64)
    }
}

/// Opens, holds, and closes the connections.
pub async fn hold(
    script: Arc<Script>,
    count: usize,
    concurrency: usize,
    duration: Option<Duration>,
    server_pid: Option<u32>,
    quiet: bool,
) -> HoldOutcome {
    let rss_before_kib = server_pid.and_then(vm_rss_kib);
    let started = Instant::now();
    let (conns, mut rec) = open_all(script, count, concurrency, quiet).await;
    let setup = started.elapsed();
    let held = conns.len();
    eprintln!(
        "portcullis-load: holding {held} of {count} connections (set up in {:.1} s); {}",
        setup.as_secs_f64(),
        match duration {
            Some(d) => format!("releasing in {:.0} s", d.as_secs_f64()),
            None => "Ctrl-C to release".to_string(),
        }
    );
    let idle_since = Instant::now();
    tokio::time::sleep(SETTLE).await;
    let rss_after_kib = server_pid.and_then(vm_rss_kib);
    wait(duration.map(|d| d.saturating_sub(SETTLE))).await;
    let held_for = idle_since.elapsed();
    let quit_ok = quit_all(conns, &mut rec).await;
    HoldOutcome {
        requested: count,
        held,
        setup,
        held_for,
        quit_ok,
        rss_before_kib,
        rss_after_kib,
        rec,
    }
}

async fn open_all(
    script: Arc<Script>,
    count: usize,
    concurrency: usize,
    quiet: bool,
) -> (Vec<Conn>, Recorder) {
    let clock = Arc::new(Clock::new(Duration::ZERO, None));
    let live = Arc::new(Live::default());
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let (script, clock, live, permits) =
            (script.clone(), clock.clone(), live.clone(), permits.clone());
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = permits.acquire_owned().await.expect("semaphore is open");
            let mut rec = Recorder::default();
            let result = session::open(&script, &mut rec, &clock, &live).await;
            match result {
                Ok(mut ready) => {
                    ready.conn.shrink();
                    Live::bump(&live.open);
                    (Some(ready.conn), rec)
                }
                Err(failure) => {
                    failure.record(&mut rec, &live);
                    (None, rec)
                }
            }
        });
    }
    let mut conns = Vec::with_capacity(count);
    let mut rec = Recorder::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await; // the first tick fires at once
    loop {
        tokio::select! {
            // A finished setup: keep the connection, merge its numbers.
            done = tasks.join_next() => match done {
                Some(done) => {
                    let (conn, task_rec) = done.expect("hold setup task panicked");
                    conns.extend(conn);
                    rec.merge(task_rec);
                }
                None => break,
            },
            // Once a second: how far the setup is.
            _ = tick.tick(), if !quiet => eprintln!(
                "[{:6.1}s] opening   held {}  errors {}",
                clock.elapsed().as_secs_f64(),
                live.open.load(Ordering::Relaxed),
                live.errors.load(Ordering::Relaxed),
            ),
        }
    }
    (conns, rec)
}

/// Sleeps for `duration`, or until Ctrl-C when there is none (Ctrl-C also
/// ends a timed hold early).
async fn wait(duration: Option<Duration>) {
    let forever = Duration::from_secs(u64::MAX / 4);
    tokio::select! {
        _ = tokio::time::sleep(duration.unwrap_or(forever)) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("portcullis-load: releasing the connections"),
    }
}

/// QUIT on every connection at once; returns how many got `221`.
async fn quit_all(conns: Vec<Conn>, rec: &mut Recorder) -> usize {
    let live = Arc::new(Live::default());
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let live = live.clone();
        tasks.spawn(async move {
            let mut rec = Recorder::default();
            let ok = match session::quit(&mut conn).await {
                Ok(()) => true,
                Err(failure) => {
                    failure.record(&mut rec, &live);
                    false
                }
            };
            (ok, rec)
        });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        let (quit, task_rec) = done.expect("QUIT task panicked");
        ok += usize::from(quit);
        rec.merge(task_rec);
    }
    ok
}

/// VmRSS of a process in KiB (Linux `/proc`); None elsewhere or if it is gone.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_status() {
        let status = "Name:\tportcullis\nVmHWM:\t  9000 kB\nVmRSS:\t  8123 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(8123));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn our_own_rss_is_readable() {
        assert!(vm_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}

//! `--hash-rate`: how many argon2id verifications per second this machine
//! does with the parameters portcullis hashes passwords with.
//!
//! A login whose password is not in the server's verified cache costs one
//! argon2id run, so this rate is the ceiling of cold logins per second on
//! the same cores. Measuring it in the same run as the load (same machine,
//! same neighbours) turns "cold logins/s" into a ratio that means
//! something. The work is the server's own: `scheme::verify_dummy` of
//! portcullis-credentials, which runs argon2id with the parameters of
//! every stored hash, so the two cannot drift apart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_credentials::scheme;
use portcullis_credentials::Secret;
use serde::Serialize;

/// One measurement: `threads` threads hashing back to back for `window`.
#[derive(Debug, Serialize)]
pub struct HashRate {
    pub algorithm: &'static str,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub threads: usize,
    pub seconds: f64,
    pub hashes: u64,
    pub hashes_per_s: f64,
}

impl HashRate {
    pub fn text(&self) -> String {
        format!(
            "argon2id m={} KiB t={} p={} on {} threads: {} hashes in {:.2} s = {:.1} hashes/s\n",
            self.m_cost_kib,
            self.t_cost,
            self.p_cost,
            self.threads,
            self.hashes,
            self.seconds,
            self.hashes_per_s
        )
    }
}

/// Hashes on `threads` threads (0: one per CPU) for `window` after each
/// thread's first hash (which pays the page faults of its memory).
pub fn measure(threads: usize, window: Duration) -> HashRate {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let params = scheme::argon2_params();
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let hashes = Arc::new(AtomicU64::new(0));
    let warm = Arc::new(std::sync::Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let (stop, counting, hashes, warm) =
                (stop.clone(), counting.clone(), hashes.clone(), warm.clone());
            std::thread::spawn(move || {
                let password = Secret::from(format!("hash-rate-{i}"));
                scheme::verify_dummy(&password);
                warm.wait();
                while !stop.load(Ordering::Relaxed) {
                    scheme::verify_dummy(&password);
                    // A hash that ends after the window closed is not counted.
                    if counting.load(Ordering::Relaxed) {
                        hashes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    warm.wait();
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(window);
    counting.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let hashes = hashes.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    HashRate {
        algorithm: "argon2id",
        m_cost_kib: params.m_cost(),
        t_cost: params.t_cost(),
        p_cost: params.p_cost(),
        threads,
        seconds,
        hashes,
        hashes_per_s: hashes as f64 / seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hashes_with_the_server_parameters() {
        let rate = measure(1, Duration::from_millis(300));
        let stored = scheme::hash_password(&Secret::from("x"));
        assert!(stored.contains(&format!(
            "m={},t={},p={}",
            rate.m_cost_kib, rate.t_cost, rate.p_cost
        )));
        assert_eq!(rate.threads, 1);
        assert!(rate.seconds >= 0.3);
        assert_eq!(rate.hashes_per_s, rate.hashes as f64 / rate.seconds);
    }
}

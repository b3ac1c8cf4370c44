//! Group commit for the queue directory's fsync.
//!
//! Every stored message needs a directory fsync after its renames, so that
//! the new names survive a crash. One fsync covers every rename made before
//! it started, so concurrent stores need not each pay for their own: a
//! caller takes a ticket after its renames; if no fsync is running it runs
//! one covering every ticket issued so far, otherwise it waits, and the next
//! fsync (started after its rename) covers it. Under load one fsync serves
//! many messages; alone, a store costs exactly what it did.

use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out so far.
    issued: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    /// The last failed fsync covered tickets up to this one.
    failed_through: u64,
    running: bool,
}

/// Coalesces fsyncs of one directory.
#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    state: Mutex<State>,
    finished: Condvar,
}

impl GroupSync {
    /// Returns once a directory fsync that started after this call has
    /// succeeded, or with the error of the fsync that should have covered it.
    pub(crate) fn sync(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if state.failed_through >= ticket {
                return Err(io::Error::other("directory fsync failed"));
            }
            if state.running {
                state = self
                    .finished
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.running = true;
            let covers = state.issued;
            drop(state);
            let result = std::fs::File::open(dir).and_then(|d| d.sync_all());
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.running = false;
            match &result {
                Ok(()) => state.synced = state.synced.max(covers),
                Err(_) => state.failed_through = state.failed_through.max(covers),
            }
            self.finished.notify_all();
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_caller_returns_after_a_covering_sync() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (group, path) = (group.clone(), dir.path().to_path_buf());
                std::thread::spawn(move || group.sync(&path))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let state = group.state.lock().unwrap();
        assert_eq!(state.synced, 16);
        assert!(!state.running);
    }

    #[test]
    fn a_failed_sync_is_reported() {
        let group = GroupSync::default();
        assert!(group
            .sync(Path::new("/nonexistent/portcullis-spool"))
            .is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(group.sync(dir.path()).is_ok());
    }
}

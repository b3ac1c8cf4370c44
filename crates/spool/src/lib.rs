//! portcullis-spool: the on-disk queue that makes `250` mean "safe".
//!
//! A submission server may answer `250` to the final dot only once the
//! message survives a crash or power loss: after `250` the client deletes its
//! copy, so a message lost afterwards is lost for good. This crate is the one
//! place that promise is kept.
//!
//! # Layout and the durability argument
//!
//! ```text
//! <dir>/tmp/<id>.eml    being written
//! <dir>/tmp/<id>.json
//! <dir>/queue/<id>.eml  complete entries
//! <dir>/queue/<id>.json
//! ```
//!
//! [`Spool::store`] writes both files in `tmp/` and fsyncs each, so their
//! *contents* are on disk. It then renames the `.eml` into `queue/`, then the
//! `.json`, and fsyncs the `queue/` directory, so the *names* are on disk.
//! Only then does it return, and only then does the server say `250`.
//! Renames within one filesystem are atomic, so a crash leaves each file
//! either in `tmp/` or whole in `queue/`, never half-written in `queue/`.
//!
//! Because the `.json` is renamed last, its presence in `queue/` marks a
//! complete entry. [`Spool::open`] relies on that after a crash: it empties
//! `tmp/` and removes any `queue/<id>.eml` without its `.json`. Neither kind
//! of leftover was ever acknowledged with `250`, so the client still holds
//! the message and will retry; removing them loses nothing.
//!
//! If `store` fails it removes whatever it wrote, so the `451` the server
//! sends is honest: the retry will not produce a duplicate.
//!
//! # What this crate does not do
//!
//! # Delivery state
//!
//! The delivery stage keeps a third, optional file per entry,
//! `queue/<id>.state` (its retry state, opaque bytes to this crate), written
//! atomically with [`Spool::write_state`]: `tmp/` → fsync → rename → fsync.
//! [`Spool::remove`] deletes the `.json` first, so an interrupted removal
//! leaves an incomplete entry that `open` cleans up, never a half entry that
//! looks deliverable; [`Spool::remove_orphan_states`] sweeps `.state` files
//! left behind.
//!
//! It does not deliver, relay, expire or lock entries, and it does not parse
//! messages: it stores the bytes it is given (the caller has already
//! prepended `Received:`). All calls block on the filesystem; call them off
//! the async workers (`spawn_blocking`).

mod error;
mod group_sync;
mod id;
mod meta;

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use error::SpoolError;
pub use id::MessageId;
pub use meta::{AuthMeta, ClientCertMeta, MessageMeta, StoredMeta, TlsMeta, XclientMeta};

const TMP: &str = "tmp";
const QUEUE: &str = "queue";
const EML: &str = "eml";
const JSON: &str = "json";
const STATE: &str = "state";

/// A spool directory. Cheap to share: `store` takes `&self` and may be called
/// from several threads at once.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    clock: id::Clock,
    queue_sync: group_sync::GroupSync,
}

impl Spool {
    /// Opens the spool at `dir`, creating `dir`, `dir/tmp` and `dir/queue` if
    /// missing, and recovers from a crash: empties `tmp/` and removes any
    /// `queue/<id>.eml` that has no `<id>.json` beside it. Logs what it removed.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        let spool = Spool {
            root: dir.to_path_buf(),
            clock: id::Clock::default(),
            queue_sync: group_sync::GroupSync::default(),
        };
        for d in [spool.root.clone(), spool.tmp_dir(), spool.queue_dir()] {
            fs::create_dir_all(&d).map_err(SpoolError::io("create directory", &d))?;
        }
        sync_dir(&spool.root)?;
        spool.empty_tmp()?;
        spool.remove_incomplete()?;
        Ok(spool)
    }

    /// Attaches to an existing spool without any recovery, for tools (the
    /// `queue` command) that run beside a live server: `open` would empty
    /// `tmp/` under the server's feet.
    pub fn attach(dir: &Path) -> Result<Spool, SpoolError> {
        let spool = Spool {
            root: dir.to_path_buf(),
            clock: id::Clock::default(),
            queue_sync: group_sync::GroupSync::default(),
        };
        let queue = spool.queue_dir();
        fs::metadata(&queue).map_err(SpoolError::io("open spool", &queue))?;
        Ok(spool)
    }

    /// Writes the message durably and returns its id; see the crate docs for
    /// the steps. When this returns `Ok`, the entry survives a crash.
    /// Blocking.
    pub fn store(&self, meta: &MessageMeta, message: &[u8]) -> Result<MessageId, SpoolError> {
        let id = MessageId::new(self.clock.next_micros());
        match self.store_as(&id, meta, message) {
            Ok(()) => Ok(id),
            Err(e) => {
                tracing::error!(%id, error = %e, "spooling failed; discarding partial entry");
                self.discard(&id);
                Err(e)
            }
        }
    }

    /// Complete entries (those with a `.json` and an `.eml`), oldest first.
    pub fn list(&self) -> Result<Vec<MessageId>, SpoolError> {
        let queue = self.queue_dir();
        let names: HashSet<String> = fs::read_dir(&queue)
            .map_err(SpoolError::io("read directory", &queue))?
            .map(|entry| {
                entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(SpoolError::io("read directory", &queue))
            })
            .collect::<Result<_, _>>()?;
        let mut ids: Vec<MessageId> = names
            .iter()
            .filter_map(|name| name.strip_suffix(".json"))
            .filter(|stem| names.contains(&format!("{stem}.{EML}")))
            .filter_map(|stem| stem.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Reads a complete entry: its metadata and the message bytes.
    pub fn read(&self, id: &MessageId) -> Result<(StoredMeta, Vec<u8>), SpoolError> {
        let read = |path: PathBuf| {
            fs::read(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => SpoolError::NotFound(id.clone()),
                _ => SpoolError::io("read", &path)(e),
            })
        };
        let json = read(self.queued(id, JSON))?;
        let message = read(self.queued(id, EML))?;
        Ok((serde_json::from_slice(&json)?, message))
    }

    /// Removes an entry (delivered or bounced) with its state; `.json`
    /// first, so a crash midway leaves an incomplete entry, which `open`
    /// deletes. Removing an entry that is already gone is not an error.
    pub fn remove(&self, id: &MessageId) -> Result<(), SpoolError> {
        for ext in [JSON, EML, STATE] {
            let path = self.queued(id, ext);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(SpoolError::io("remove", &path)(e))
                }
                _ => {}
            }
        }
        sync_dir(&self.queue_dir())
    }

    /// The delivery state of an entry, if any was written.
    pub fn read_state(&self, id: &MessageId) -> Result<Option<Vec<u8>>, SpoolError> {
        let path = self.queued(id, STATE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SpoolError::io("read", &path)(e)),
        }
    }

    /// Replaces the delivery state of an entry atomically and durably.
    pub fn write_state(&self, id: &MessageId, state: &[u8]) -> Result<(), SpoolError> {
        let random: [u8; 4] = rand::random();
        let staged = self
            .tmp_dir()
            .join(format!("{id}.{STATE}-{}", hex::encode(random)));
        if let Err(e) = write_synced(&staged, state) {
            let _ = fs::remove_file(&staged);
            return Err(e);
        }
        let target = self.queued(id, STATE);
        if let Err(e) = fs::rename(&staged, &target) {
            let _ = fs::remove_file(&staged);
            return Err(SpoolError::io("rename into queue", &staged)(e));
        }
        sync_dir(&self.queue_dir())
    }

    /// Removes `.state` files whose entry is gone (a removal interrupted by
    /// a crash). Returns how many were removed.
    pub fn remove_orphan_states(&self) -> Result<usize, SpoolError> {
        let queue = self.queue_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&queue).map_err(SpoolError::io("read directory", &queue))? {
            let path = entry
                .map_err(SpoolError::io("read directory", &queue))?
                .path();
            let is_state = path.extension().is_some_and(|ext| ext == STATE);
            if is_state && !path.with_extension(JSON).exists() {
                fs::remove_file(&path).map_err(SpoolError::io("remove orphan state", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The directory holding complete entries.
    pub fn queue_dir(&self) -> PathBuf {
        self.root.join(QUEUE)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP)
    }

    fn queued(&self, id: &MessageId, ext: &str) -> PathBuf {
        self.queue_dir().join(format!("{id}.{ext}"))
    }

    fn staged(&self, id: &MessageId, ext: &str) -> PathBuf {
        self.tmp_dir().join(format!("{id}.{ext}"))
    }

    /// The steps of [`Spool::store`]; the order is the durability argument.
    fn store_as(
        &self,
        id: &MessageId,
        meta: &MessageMeta,
        message: &[u8],
    ) -> Result<(), SpoolError> {
        let stored = StoredMeta {
            id: id.to_string(),
            size: message.len() as u64,
            meta: meta.clone(),
        };
        let json = serde_json::to_vec_pretty(&stored)?;
        write_synced(&self.staged(id, EML), message)?;
        write_synced(&self.staged(id, JSON), &json)?;
        for ext in [EML, JSON] {
            let (from, to) = (self.staged(id, ext), self.queued(id, ext));
            fs::rename(&from, &to).map_err(SpoolError::io("rename into queue", &from))?;
        }
        let queue = self.queue_dir();
        self.queue_sync
            .sync(&queue)
            .map_err(SpoolError::io("fsync directory", &queue))
    }

    /// Best effort removal of every file `store` may have made for `id`,
    /// `.json` first so that no instant shows a `.json` without its `.eml`.
    fn discard(&self, id: &MessageId) {
        let paths = [
            self.queued(id, JSON),
            self.queued(id, EML),
            self.staged(id, JSON),
            self.staged(id, EML),
        ];
        for path in paths {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::error!(path = %path.display(), error = %e, "cannot remove partial spool file");
                }
                _ => {}
            }
        }
    }

    /// Removes everything in `tmp/`: files there were never acknowledged.
    fn empty_tmp(&self) -> Result<(), SpoolError> {
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(SpoolError::io("read directory", &tmp))? {
            let path = entry
                .map_err(SpoolError::io("read directory", &tmp))?
                .path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(SpoolError::io("remove leftover", &path))?;
            tracing::warn!(path = %path.display(), "removed leftover from spool tmp/");
        }
        Ok(())
    }

    /// Removes each `queue/<id>.eml` whose `.json` never arrived.
    fn remove_incomplete(&self) -> Result<(), SpoolError> {
        let queue = self.queue_dir();
        let mut removed_any = false;
        for entry in fs::read_dir(&queue).map_err(SpoolError::io("read directory", &queue))? {
            let path = entry
                .map_err(SpoolError::io("read directory", &queue))?
                .path();
            let is_eml = path.extension().is_some_and(|ext| ext == EML);
            if is_eml && !path.with_extension(JSON).exists() {
                fs::remove_file(&path).map_err(SpoolError::io("remove incomplete", &path))?;
                tracing::warn!(path = %path.display(), "removed incomplete spool entry (no .json)");
                removed_any = true;
            }
        }
        if removed_any {
            sync_dir(&queue)?;
        }
        Ok(())
    }
}

/// Creates `path` (which must not exist), writes `data` and fsyncs it.
fn write_synced(path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(SpoolError::io("create", path))?;
    file.write_all(data)
        .map_err(SpoolError::io("write", path))?;
    file.sync_all().map_err(SpoolError::io("fsync", path))
}

/// Fsyncs a directory so that renames and creations in it are durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SpoolError::io("fsync directory", dir))
}

/// Directories cannot be fsynced portably off Unix; renames are still atomic.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), SpoolError> {
    Ok(())
}

#[cfg(test)]
mod tests;

//! portcullis-spool: the on-disk queue that makes `250` mean "safe".
//!
//! A submission server may answer `250` to the final dot only once the
//! message survives a crash or power loss: after `250` the client deletes its
//! copy, so a message lost afterwards is lost for good. This crate is the one
//! place that promise is kept.
//!
//! # Layout
//!
//! ```text
//! <dir>/journal/<n>.log        append-only segments: accepted messages and removals
//! <dir>/queue/<id>.state       delivery state of a message, if any (opaque here)
//! <dir>/requests/<id>.delete   removals asked for by `portcullis queue delete`
//! <dir>/tmp/                   state files being written
//! <dir>/lock                   held (flock) by the process that owns the spool
//! ```
//!
//! # Why a journal, and the durability argument
//!
//! The first spool kept each message as two files and fsynced both plus the
//! directory. Creating, fsyncing and later unlinking small files is what a
//! filesystem does worst: measured here, it cost more CPU per message than
//! the whole SMTP exchange, and fsyncs of separate files do not share work.
//! So messages are appended to a segment file instead, by one writer thread
//! ([`writer`]) that takes every message ready at that moment, appends them
//! with one `write`, and makes them durable with one `fdatasync`. Only then
//! does [`Spool::store`] return, and only then does the server say `250`.
//! A segment is created (file and directory entry fsynced) before anything
//! is appended to it, so `fdatasync` of the file is enough for its records.
//!
//! Each record carries a CRC ([`journal`]). After a crash, [`Spool::open`]
//! reads the segments in order and keeps every record up to the first one
//! that is torn or corrupt: those were never acknowledged, so the client
//! still holds the message and will retry. A write that fails abandons its
//! segment, so nothing acknowledged ever follows a torn record.
//!
//! Delivery, bounces and `queue delete` append a removal record. Segments
//! are deleted oldest first once nothing in them is live, and a mostly dead
//! segment has its live records copied forward first; deleting only the
//! oldest keeps every removal record that still matters on disk.
//!
//! The in-memory index (id → segment and offset) is rebuilt from the
//! segments at open. A spool written by the earlier two-file layout
//! (`queue/<id>.eml` + `.json`) is imported into the journal at open.
//!
//! # Sharing the spool
//!
//! One process owns a spool at a time, through `flock` on `<dir>/lock`.
//! Tools beside a running server ([`Spool::attach`]) read a snapshot of the
//! journal and ask for removals with a request file, which the owner's writer
//! applies within a second.
//!
//! It does not deliver, relay or expire entries, and it does not parse
//! messages: it stores the bytes it is given (the caller has already
//! prepended `Received:`). [`Spool::store_async`] suits async callers; every
//! other call blocks on the filesystem.

mod answer;
mod error;
mod gather;
mod id;
mod index;
mod journal;
mod meta;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::answer::Answered;

pub use error::SpoolError;
pub use gather::Receiving;
pub use id::MessageId;
pub use meta::{
    AuthMeta, ClientCertMeta, CredentialMeta, DsnMeta, MessageMeta, RcptDsnMeta, StoredMeta,
    TlsMeta, XclientMeta,
};

use index::Index;
use journal::Record;
use writer::{Job, Writer};

const TMP: &str = "tmp";
const QUEUE: &str = "queue";
const JOURNAL: &str = "journal";
const REQUESTS: &str = "requests";
const LOCK: &str = "lock";
const STATE: &str = "state";
/// Suffix of a removal request file in `requests/`.
const REQUEST_DELETE: &str = ".delete";

/// How long an attached tool waits for the running server to apply a request.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// Mode of every file the spool creates: queued messages, their senders'
/// identities and delivery state are nobody else's business, whatever the
/// umask.
const FILE_MODE: u32 = 0o600;
/// Mode of every directory the spool creates.
const DIR_MODE: u32 = 0o700;

/// Segments start anew past this size.
const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Tunables of [`Spool::open_with`]; the defaults suit a server.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// A segment is closed and a new one started once it holds this many
    /// bytes. Smaller segments free disk sooner; larger ones mean fewer files.
    pub segment_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// What the writer thread and the readers share.
#[derive(Debug)]
pub(crate) struct Shared {
    index: Mutex<Index>,
    queue: PathBuf,
    /// Bodies being received, which the writer may wait for.
    pub(crate) gather: Arc<gather::Gather>,
}

/// A spool directory. Cheap to share: every method takes `&self` and may be
/// called from several threads at once.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    clock: id::Clock,
    shared: Arc<Shared>,
    /// Jobs for the writer thread; `None` when attached read-only.
    jobs: Option<mpsc::Sender<Job>>,
    /// Held for the spool's lifetime by the owning process.
    _lock: Option<File>,
}

impl Spool {
    /// Opens the spool at `dir` with the default options; see [`Spool::open_with`].
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        Spool::open_with(dir, SpoolOptions::default())
    }

    /// Opens the spool at `dir` as its owner, creating the directories if
    /// missing: takes the lock (failing with [`SpoolError::Locked`] if a
    /// running server has it), empties `tmp/`, rebuilds the index from the
    /// journal, imports entries of the two-file layout, and starts the
    /// writer thread.
    pub fn open_with(dir: &Path, options: SpoolOptions) -> Result<Spool, SpoolError> {
        let root = dir.to_path_buf();
        for d in [QUEUE, TMP, JOURNAL, REQUESTS]
            .map(|d| root.join(d))
            .into_iter()
            .chain([root.clone()])
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&d)
                .map_err(SpoolError::io("create directory", &d))?;
        }
        sync_dir(&root)?;
        let lock_file = take_lock(&root)?;
        let (index, next_number) = load_journal(&root.join(JOURNAL), true)?;
        let shared = Arc::new(Shared {
            index: Mutex::new(index),
            queue: root.join(QUEUE),
            gather: Arc::default(),
        });
        let mut writer = Writer::new(
            shared.clone(),
            root.join(JOURNAL),
            root.join(REQUESTS),
            options.segment_bytes.max(1),
            next_number,
        );
        let spool = Spool {
            root,
            clock: id::Clock::default(),
            shared,
            jobs: None,
            _lock: Some(lock_file),
        };
        spool.empty_tmp()?;
        spool.import_two_file_entries(&mut writer)?;
        let (jobs, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(SpoolError::io("start the writer thread", dir))?;
        Ok(Spool {
            jobs: Some(jobs),
            ..spool
        })
    }

    /// Reads a snapshot of an existing spool without taking it over, for
    /// tools (the `queue` command) that run beside a live server. Such a
    /// spool cannot store; [`Spool::remove`] asks the owner to remove.
    pub fn attach(dir: &Path) -> Result<Spool, SpoolError> {
        let root = dir.to_path_buf();
        let journal = root.join(JOURNAL);
        fs::metadata(&journal).map_err(SpoolError::io("open spool", &journal))?;
        let (index, _) = load_journal(&journal, false)?;
        Ok(Spool {
            shared: Arc::new(Shared {
                index: Mutex::new(index),
                queue: root.join(QUEUE),
                gather: Arc::default(),
            }),
            root,
            clock: id::Clock::default(),
            jobs: None,
            _lock: None,
        })
    }

    /// Opens the spool as its owner if no other process has it, otherwise
    /// attaches beside that process.
    pub fn open_or_attach(dir: &Path) -> Result<Spool, SpoolError> {
        match Spool::open(dir) {
            Err(SpoolError::Locked(_)) => Spool::attach(dir),
            other => other,
        }
    }

    /// Writes the message durably and returns its id. When this returns
    /// `Ok`, the message survives a crash. Blocking: waits for the group
    /// fsync that covers the message.
    pub fn store(&self, meta: &MessageMeta, message: &[u8]) -> Result<MessageId, SpoolError> {
        let (id, done) = self.submit(meta, message.to_vec())?;
        done.wait().map(|_| id)
    }

    /// [`Spool::store`] for async callers: the future resolves once the
    /// message is durable, without holding a thread while it waits. The
    /// message is with the writer once this returns (the future only waits
    /// for the answer): a [`Receiving`] may be let go then.
    ///
    /// Await it to the end or drop it: it may be the one woken for a whole
    /// group commit, and wakes the rest of the group when next polled or
    /// dropped (see `answer.rs`). Kept and left unpolled, it would hold
    /// them up.
    pub fn store_async(
        &self,
        meta: &MessageMeta,
        message: Vec<u8>,
    ) -> impl Future<Output = Result<MessageId, SpoolError>> + Send + 'static {
        let submitted = self.submit(meta, message);
        async move {
            let (id, done) = submitted?;
            done.await.map(|_| id)
        }
    }

    /// To be held while a session receives a message's body and dropped
    /// once [`Spool::store_async`] has returned (or the message is given
    /// up): the writer, taking another message meanwhile, waits a little for
    /// this one so that one fsync covers both (see `gather.rs`).
    pub fn receiving(&self) -> Receiving {
        Receiving::new(self.shared.gather.clone())
    }

    /// Hands a message to the writer; the answer comes once it is durable.
    fn submit(
        &self,
        meta: &MessageMeta,
        message: Vec<u8>,
    ) -> Result<(MessageId, Answered), SpoolError> {
        let jobs = self.jobs.as_ref().ok_or(SpoolError::ReadOnly)?;
        let id = MessageId::new(self.clock.next_micros());
        let json = meta::stored_json(id.as_str(), message.len() as u64, meta)?;
        let (done, receiver) = answer::channel();
        let job = Job::Store {
            id: id.clone(),
            json,
            message,
            done,
        };
        jobs.send(job).map_err(|_| SpoolError::WriterGone)?;
        Ok((id, receiver))
    }

    /// Live entries, oldest first.
    pub fn list(&self) -> Result<Vec<MessageId>, SpoolError> {
        Ok(lock(&self.shared.index).ids())
    }

    /// Reads a live entry: its metadata and the message bytes.
    pub fn read(&self, id: &MessageId) -> Result<(StoredMeta, Vec<u8>), SpoolError> {
        let (at, file) = lock(&self.shared.index)
            .locate(id)
            .ok_or_else(|| SpoolError::NotFound(id.clone()))?;
        let mut frame = vec![0; at.len];
        let segment = self.root.join(JOURNAL);
        file.read_exact_at(&mut frame, at.offset)
            .map_err(SpoolError::io("read journal segment", &segment))?;
        let corrupt = || SpoolError::Io {
            context: format!("read {id} from the journal"),
            source: io::Error::new(io::ErrorKind::InvalidData, "record does not check"),
        };
        let Some((Record::Message { json, message, .. }, _)) = journal::decode(&frame) else {
            return Err(corrupt());
        };
        let meta: StoredMeta = serde_json::from_slice(json)?;
        Ok((meta, message.to_vec()))
    }

    /// Removes an entry (delivered, bounced or deleted) with its state.
    /// Removing an entry that is already gone is not an error. Attached
    /// beside a running server, asks that server and waits until it has.
    pub fn remove(&self, id: &MessageId) -> Result<(), SpoolError> {
        let Some(jobs) = &self.jobs else {
            return self.request_removal(id);
        };
        let (done, receiver) = answer::channel();
        let job = Job::Remove {
            id: id.clone(),
            done,
        };
        jobs.send(job).map_err(|_| SpoolError::WriterGone)?;
        receiver.wait()?;
        remove_state_file(&self.shared.queue, id);
        Ok(())
    }

    /// Leaves `requests/<id>.delete` for the owning process and waits for
    /// it to disappear.
    fn request_removal(&self, id: &MessageId) -> Result<(), SpoolError> {
        let path = self
            .root
            .join(REQUESTS)
            .join(format!("{id}{REQUEST_DELETE}"));
        private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(SpoolError::io("create request", &path))?;
        let asked = Instant::now();
        while path.exists() {
            if asked.elapsed() > REQUEST_WAIT {
                let _ = fs::remove_file(&path);
                return Err(SpoolError::Io {
                    context: format!("remove {id}"),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the process holding the spool did not apply the request",
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The delivery state of an entry, if any was written.
    pub fn read_state(&self, id: &MessageId) -> Result<Option<Vec<u8>>, SpoolError> {
        let path = self.state_path(id);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SpoolError::io("read", &path)(e)),
        }
    }

    /// Replaces the delivery state of an entry atomically and durably:
    /// `tmp/` → fsync → rename → directory fsync.
    pub fn write_state(&self, id: &MessageId, state: &[u8]) -> Result<(), SpoolError> {
        let random: [u8; 4] = rand::random();
        let staged = self
            .root
            .join(TMP)
            .join(format!("{id}.{STATE}-{}", hex::encode(random)));
        if let Err(e) = write_synced(&staged, state) {
            let _ = fs::remove_file(&staged);
            return Err(e);
        }
        let target = self.state_path(id);
        if let Err(e) = fs::rename(&staged, &target) {
            let _ = fs::remove_file(&staged);
            return Err(SpoolError::io("rename into queue", &staged)(e));
        }
        sync_dir(&self.shared.queue)
    }

    /// Removes `.state` files whose entry is gone (a removal interrupted by
    /// a crash). Returns how many were removed.
    pub fn remove_orphan_states(&self) -> Result<usize, SpoolError> {
        let queue = &self.shared.queue;
        let mut removed = 0;
        for entry in fs::read_dir(queue).map_err(SpoolError::io("read directory", queue))? {
            let path = entry
                .map_err(SpoolError::io("read directory", queue))?
                .path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(&format!(".{STATE}")))
                .and_then(|stem| stem.parse::<MessageId>().ok())
            else {
                continue;
            };
            if !lock(&self.shared.index).contains(&id) {
                fs::remove_file(&path).map_err(SpoolError::io("remove orphan state", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The directory holding delivery state files.
    pub fn queue_dir(&self) -> PathBuf {
        self.shared.queue.clone()
    }

    fn state_path(&self, id: &MessageId) -> PathBuf {
        self.shared.queue.join(format!("{id}.{STATE}"))
    }

    /// Removes everything in `tmp/`: files there were never complete.
    fn empty_tmp(&self) -> Result<(), SpoolError> {
        let tmp = self.root.join(TMP);
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

    /// Moves entries of the two-file layout (`queue/<id>.json` beside
    /// `queue/<id>.eml`) into the journal, then deletes their files. An
    /// `.eml` without its `.json` was never acknowledged and is deleted.
    fn import_two_file_entries(&self, writer: &mut Writer) -> Result<(), SpoolError> {
        let queue = &self.shared.queue;
        let mut stems = Vec::new();
        for entry in fs::read_dir(queue).map_err(SpoolError::io("read directory", queue))? {
            let path = entry
                .map_err(SpoolError::io("read directory", queue))?
                .path();
            if path.extension().is_some_and(|ext| ext == "eml") {
                stems.push(path.with_extension(""));
            }
        }
        stems.sort();
        for stem in stems {
            let (eml, json) = (stem.with_extension("eml"), stem.with_extension("json"));
            let id = stem
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<MessageId>().ok());
            match (id, fs::read(&json)) {
                (Some(id), Ok(meta)) if !lock(&self.shared.index).contains(&id) => {
                    let message = fs::read(&eml).map_err(SpoolError::io("read", &eml))?;
                    let (done, result) = answer::channel();
                    writer.commit(vec![Job::Store {
                        id: id.clone(),
                        json: meta,
                        message,
                        done,
                    }]);
                    result.wait()?;
                    tracing::info!(%id, "moved a two-file spool entry into the journal");
                }
                (_, Ok(_)) => {}
                (_, Err(_)) => {
                    tracing::warn!(path = %eml.display(), "removed incomplete spool entry (no .json)")
                }
            }
            for path in [json, eml] {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(SpoolError::io("remove", &path)(e))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// For the fuzz target: reads `body` (a segment after its header) frame by
/// frame the way [`Spool::open`] does, and checks that every frame it
/// trusts lies within the input and encodes back to the same bytes.
/// Returns the trusted length.
#[doc(hidden)]
pub fn check_journal_scan(body: &[u8]) -> usize {
    let mut reader = body;
    let mut frame = Vec::new();
    let mut trusted = 0;
    let left = |trusted: usize| (body.len() - trusted) as u64;
    while let Ok(index::Next::Frame) = index::next_frame(&mut reader, &mut frame, left(trusted)) {
        let Some((record, len)) = journal::decode(&frame) else {
            break;
        };
        assert_eq!(len, frame.len());
        assert_eq!(
            body[trusted..trusted + len],
            frame[..],
            "frame read in place"
        );
        let mut again = Vec::new();
        journal::encode(&record, &mut again);
        assert_eq!(again, frame, "frame re-encodes");
        trusted += len;
    }
    trusted
}

/// Reads every segment in `dir` into a fresh index; returns it with the
/// number the next segment gets.
///
/// Files without a segment header hold nothing acknowledged (see
/// [`Index::load_segment`]). The owner (`clean_up`) removes them, with one
/// log line for all; a reader beside a running server only skips them.
fn load_journal(dir: &Path, clean_up: bool) -> Result<(Index, u64), SpoolError> {
    let mut index = Index::default();
    let mut next = 1;
    let mut removed = 0;
    for (number, path) in index::segment_files(dir)? {
        if index.load_segment(number, &path)? == index::Loaded::Headerless && clean_up {
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove an empty journal segment")
                }
            }
        }
        next = number + 1;
    }
    if removed > 0 {
        sync_dir(dir)?;
        tracing::info!(
            removed,
            "removed journal segments without a header (left by failed writes; they held no message)"
        );
    }
    Ok((index, next))
}

/// Takes `<root>/lock` for this process, or says who has it.
fn take_lock(root: &Path) -> Result<File, SpoolError> {
    let path = root.join(LOCK);
    let mut file = private_file()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(SpoolError::io("open", &path))?;
    // SAFETY: flock takes a valid open descriptor, which `file` owns for
    // the duration of the call; it touches no memory of ours.
    #[allow(unsafe_code)]
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if taken != 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            return Err(SpoolError::Locked(root.display().to_string()));
        }
        return Err(SpoolError::io("lock", &path)(error));
    }
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// Removes the `.state` of a removed entry; a leftover is swept later.
pub(crate) fn remove_state_file(queue: &Path, id: &MessageId) {
    let path = queue.join(format!("{id}.{STATE}"));
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove delivery state");
        }
        _ => {}
    }
}

/// Locks a mutex, carrying on after a panic elsewhere: the index stays
/// consistent because every update is a single insert or remove.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Creates `path` (which must not exist), writes `data` and fsyncs it.
fn write_synced(path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    let mut file = private_file()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(SpoolError::io("create", path))?;
    file.write_all(data)
        .map_err(SpoolError::io("write", path))?;
    file.sync_all().map_err(SpoolError::io("fsync", path))
}

/// Options that create a file readable and writable by its owner only.
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SpoolError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests;

//! The journal writer: one thread that appends and fsyncs in groups.
//!
//! Every store and removal becomes a job on a channel. The thread takes the
//! first job, waits a little if other sessions are still receiving a body
//! (`gather.rs`), then takes every job that queued up meanwhile, encodes
//! them all into one buffer, writes it to the current segment with one
//! `write` and makes it durable with one `fdatasync`, and only then answers
//! each job. So one fsync covers every message that became ready while the
//! previous one ran: alone, a message pays one fsync; under load, fifty
//! sessions share one.
//!
//! Between batches (and once a second when idle) the thread keeps house:
//! it applies removal requests left by the `queue` command, and deletes the
//! oldest segments once nothing in them is live. A segment whose live part
//! has shrunk to a quarter has its live frames copied forward first, so one
//! long-deferred message cannot pin every later segment on disk.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::answer::{self, Answer, Outcome};
use crate::gather::GATHER_LIMIT;
use crate::index::{segment_name, Location, Segment};
use crate::journal::{self, Record, MAGIC};
use crate::{lock, sync_dir, Shared, SpoolError};
use crate::{MessageId, REQUEST_DELETE};

/// How often an idle writer looks for removal requests and garbage.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// A batch stops growing at this many bytes (the rest wait for the next).
const MAX_BATCH_BYTES: usize = 16 << 20;

/// One request to the writer.
pub(crate) enum Job {
    /// Append an accepted message.
    Store {
        id: MessageId,
        json: Vec<u8>,
        message: Vec<u8>,
        done: Answer,
    },
    /// Append a removal.
    Remove { id: MessageId, done: Answer },
}

impl Job {
    fn bytes(&self) -> usize {
        match self {
            Job::Store { json, message, .. } => json.len() + message.len() + 64,
            Job::Remove { .. } => 64,
        }
    }

    fn record(&self) -> Record<'_> {
        match self {
            Job::Store {
                id, json, message, ..
            } => Record::Message {
                id: id.as_str(),
                json,
                message,
            },
            Job::Remove { id, .. } => Record::Removed { id: id.as_str() },
        }
    }

    /// The job's answer slot and what to answer. (The caller may have
    /// given up waiting, its session ended: fine.)
    fn finish(self, result: Result<(), &SpoolError>) -> (Answer, Outcome) {
        let (done, buffer) = match self {
            Job::Store { done, message, .. } => (done, message),
            Job::Remove { done, .. } => (done, Vec::new()),
        };
        (done, result.map(|()| buffer).map_err(SpoolError::again))
    }
}

/// The segment being appended to.
struct Current {
    number: u64,
    file: File,
    size: u64,
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) journal: PathBuf,
    pub(crate) requests: PathBuf,
    pub(crate) segment_bytes: u64,
    pub(crate) next_number: u64,
    current: Option<Current>,
    buf: Vec<u8>,
    /// When `requests/` was last read.
    requests_read: Instant,
    /// The helper thread writing the next segment's zeros, if started.
    spare: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        journal: PathBuf,
        requests: PathBuf,
        segment_bytes: u64,
        next_number: u64,
    ) -> Writer {
        Writer {
            shared,
            journal,
            requests,
            segment_bytes,
            next_number,
            current: None,
            buf: Vec::new(),
            requests_read: Instant::now()
                .checked_sub(HOUSEKEEPING_INTERVAL)
                .unwrap_or_else(Instant::now),
            spare: None,
        }
    }

    /// The thread's body: until every sender is gone.
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        // A spare left by an earlier run may be half written.
        let _ = fs::remove_file(self.journal.join(SPARE));
        self.keep_house();
        self.shared.gather.writer_is(std::thread::current());
        loop {
            let first = match jobs.recv_timeout(HOUSEKEEPING_INTERVAL) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    self.keep_house();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Bodies still coming in join this commit (gather.rs).
            self.shared.gather.wait(GATHER_LIMIT);
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while bytes < MAX_BATCH_BYTES {
                match jobs.try_recv() {
                    Ok(job) => {
                        bytes += job.bytes();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch);
            self.keep_house();
        }
    }

    /// Appends the jobs' records with one write and one fdatasync, updates
    /// the index, then answers every job.
    pub(crate) fn commit(&mut self, batch: Vec<Job>) {
        self.buf.clear();
        let mut placed = Vec::with_capacity(batch.len());
        for job in &batch {
            let at = self.buf.len();
            let len = journal::encode(&job.record(), &mut self.buf);
            placed.push((at as u64, len));
        }
        let buf = std::mem::take(&mut self.buf);
        let appended = self.append(&buf);
        self.buf = buf;
        match appended {
            Ok((segment, base)) => {
                let mut index = lock(&self.shared.index);
                for (job, &(at, len)) in batch.iter().zip(&placed) {
                    match job {
                        Job::Store { id, .. } => {
                            let at = Location {
                                segment,
                                offset: base + at,
                                len,
                            };
                            index.insert(id, at);
                        }
                        Job::Remove { id, .. } => {
                            index.remove(id);
                        }
                    }
                }
                drop(index);
                answer::answer_all(batch.into_iter().map(|job| job.finish(Ok(()))).collect());
            }
            Err(error) => {
                tracing::error!(%error, jobs = batch.len(), "journal append failed");
                answer::answer_all(
                    batch
                        .into_iter()
                        .map(|job| job.finish(Err(&error)))
                        .collect(),
                );
            }
        }
    }

    /// Writes `bytes` at the end of the current segment (starting a new one
    /// when there is none or it is full) and fdatasyncs it. Returns the
    /// segment and the offset the bytes start at. After a failure the
    /// segment is abandoned: nothing is ever appended after bytes whose
    /// write may be torn.
    fn append(&mut self, bytes: &[u8]) -> Result<(u64, u64), SpoolError> {
        let full = self
            .current
            .as_ref()
            .is_none_or(|c| c.size >= self.segment_bytes);
        if full {
            self.start_segment()?;
        }
        let current = self.current.as_mut().expect("a segment was just started");
        let base = current.size;
        let written = current
            .file
            .write_all_at(bytes, base)
            .and_then(|()| current.file.sync_data());
        if let Err(source) = written {
            let number = current.number;
            self.close_current();
            let path = self.journal.join(segment_name(number));
            return Err(SpoolError::io("append to journal", &path)(source));
        }
        current.size += bytes.len() as u64;
        let (number, size) = (current.number, current.size);
        if size >= self.segment_bytes / 2 {
            self.prepare_spare();
        }
        if let Some(segment) = lock(&self.shared.index).segments.get_mut(&number) {
            segment.size = size;
        }
        Ok((number, base))
    }

    /// Creates the next segment durably (file and directory entry) and
    /// makes it current: from the zero-filled spare if one is ready, else
    /// a preallocated new file. Then starts preparing the next spare.
    fn start_segment(&mut self) -> Result<(), SpoolError> {
        self.close_current();
        let number = self.next_number;
        self.next_number += 1;
        let path = self.journal.join(segment_name(number));
        let file = match self.take_spare(&path) {
            Some(file) => file,
            None => {
                let file = crate::private_file()
                    .create_new(true)
                    .write(true)
                    .open(&path)
                    .map_err(SpoolError::io("create journal segment", &path))?;
                preallocate(&file, self.segment_bytes);
                file
            }
        };
        let started = file
            .write_all_at(MAGIC, 0)
            .and_then(|()| file.sync_all())
            .map_err(SpoolError::io("write journal segment", &path))
            .and_then(|()| sync_dir(&self.journal));
        if let Err(error) = started {
            // A full disk: leave no empty file behind for each failed
            // message (it would hold nothing, and pile up by the thousand).
            drop(file);
            let _ = fs::remove_file(&path);
            let _ = sync_dir(&self.journal);
            return Err(error);
        }
        let reader = File::open(&path).map_err(SpoolError::io("open journal segment", &path))?;
        lock(&self.shared.index).segments.insert(
            number,
            Segment {
                file: Arc::new(reader),
                size: MAGIC.len() as u64,
                live: 0,
                live_bytes: 0,
                closed: false,
            },
        );
        self.current = Some(Current {
            number,
            file,
            size: MAGIC.len() as u64,
        });
        Ok(())
    }

    /// Starts writing the next segment's zeros on a helper thread, unless
    /// that is already under way. Called once the current segment is half
    /// full, so a spool that stays small never writes a spare.
    fn prepare_spare(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let (path, bytes) = (self.journal.join(SPARE), self.segment_bytes);
        let preparing = std::thread::Builder::new()
            .name("spool-spare".into())
            .spawn(move || write_zeros(&path, bytes));
        match preparing {
            Ok(handle) => self.spare = Some(handle),
            Err(error) => tracing::warn!(%error, "cannot start preparing a journal segment"),
        }
    }

    /// The spare, renamed to `path`, if its zeros are written and synced.
    fn take_spare(&mut self, path: &Path) -> Option<File> {
        if !self.spare.as_ref()?.is_finished() {
            return None;
        }
        let ready = self.spare.take()?.join().ok()?;
        let spare = self.journal.join(SPARE);
        let file = match ready.and_then(|()| OpenOptions::new().write(true).open(&spare)) {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(%error, "journal segment preparation failed; preallocating instead");
                return None;
            }
        };
        fs::rename(&spare, path).ok()?;
        Some(file)
    }

    fn close_current(&mut self) {
        if let Some(current) = self.current.take() {
            if let Some(segment) = lock(&self.shared.index).segments.get_mut(&current.number) {
                segment.closed = true;
            }
        }
    }

    /// Removal requests (at most once per [`HOUSEKEEPING_INTERVAL`]: they
    /// cost a directory read), then garbage (an in-memory check unless a
    /// segment can go).
    pub(crate) fn keep_house(&mut self) {
        if self.requests_read.elapsed() >= HOUSEKEEPING_INTERVAL {
            self.requests_read = Instant::now();
            self.apply_requests();
        }
        if let Err(error) = self.collect_garbage() {
            tracing::error!(%error, "journal clean-up failed; will retry");
        }
    }

    /// Applies `requests/<id>.delete` files (left by `portcullis queue
    /// delete` while the server runs), then removes each request.
    fn apply_requests(&mut self) {
        let Ok(entries) = fs::read_dir(&self.requests) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(REQUEST_DELETE))
                .and_then(|stem| stem.parse::<MessageId>().ok());
            if let Some(id) = id {
                if lock(&self.shared.index).contains(&id) {
                    let (done, result) = answer::channel();
                    self.commit(vec![Job::Remove {
                        id: id.clone(),
                        done,
                    }]);
                    if result.wait().is_err() {
                        continue;
                    }
                    crate::remove_state_file(&self.shared.queue, &id);
                    tracing::info!(%id, "deleted from the spool on request");
                }
            }
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "cannot remove spool request");
            }
        }
    }

    /// Deletes the oldest closed segments while nothing in them is live,
    /// first copying the live frames of one that is mostly dead to the
    /// current segment.
    fn collect_garbage(&mut self) -> Result<(), SpoolError> {
        loop {
            let oldest = {
                let index = lock(&self.shared.index);
                index
                    .segments
                    .iter()
                    .next()
                    .filter(|(_, s)| s.closed)
                    .map(|(&n, s)| (n, s.live, s.live_bytes, s.size, s.file.clone()))
            };
            let Some((number, live, live_bytes, size, file)) = oldest else {
                return Ok(());
            };
            if live > 0 {
                if live_bytes.saturating_mul(4) > size {
                    return Ok(());
                }
                self.relocate(number, &file)?;
                continue;
            }
            let path = self.journal.join(segment_name(number));
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(SpoolError::io("remove journal segment", &path)(e))
                }
                _ => {}
            }
            lock(&self.shared.index).segments.remove(&number);
        }
    }

    /// Copies the live frames of segment `number` unchanged to the end of
    /// the journal, so that the segment holds nothing live.
    fn relocate(&mut self, number: u64, file: &File) -> Result<(), SpoolError> {
        let live = lock(&self.shared.index).live_in(number);
        let path = self.journal.join(segment_name(number));
        let mut copied = Vec::new();
        let mut frames = Vec::with_capacity(live.len());
        for (id, at) in live {
            let start = copied.len();
            copied.resize(start + at.len, 0);
            file.read_exact_at(&mut copied[start..], at.offset)
                .map_err(SpoolError::io("read journal segment", &path))?;
            frames.push((id, start as u64, at.len));
        }
        let (segment, base) = self.append(&copied)?;
        let mut index = lock(&self.shared.index);
        for (id, at, len) in frames {
            // A removal committed meanwhile wins: only still-live ids move.
            if index.contains(&id) {
                let at = Location {
                    segment,
                    offset: base + at,
                    len,
                };
                index.insert(&id, at);
            }
        }
        tracing::info!(
            segment = number,
            "moved the live messages of an old journal segment forward"
        );
        Ok(())
    }
}

/// Reserves the segment's blocks and sets its length up front, so that the
/// fdatasync after each append need not write a new file size. Best
/// effort: where the filesystem cannot, appends extend the file as usual.
/// The unwritten tail reads as zeros, which no frame decodes from, so a
/// scan stops where the data stops.
/// The next segment while its zeros are written (not a `.log`, so a scan
/// never reads it; `Spool::open` deletes a leftover one).
pub(crate) const SPARE: &str = "spare";

/// Writes `bytes` zeros to a new file at `path` and syncs it. A segment
/// made of written blocks takes appends without the extent conversion
/// that a merely preallocated one needs, so each fdatasync writes the data
/// and nothing else (measured: the inode write was 4 % of the server's
/// time).
fn write_zeros(path: &Path, bytes: u64) -> io::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = crate::private_file()
        .create_new(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let chunk = left.min(zeros.len() as u64) as usize;
        std::io::Write::write_all(&mut file, &zeros[..chunk])?;
        left -= chunk as u64;
    }
    file.sync_all()
}

#[cfg(target_os = "linux")]
fn preallocate(file: &File, bytes: u64) {
    let Ok(len) = libc::off_t::try_from(bytes) else {
        return;
    };
    // SAFETY: fallocate takes a valid open descriptor, which `file` owns
    // for the duration of the call; it touches no memory of ours.
    #[allow(unsafe_code)]
    let done = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if done != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot preallocate journal segment");
    }
}

#[cfg(not(target_os = "linux"))]
fn preallocate(_file: &File, _bytes: u64) {}

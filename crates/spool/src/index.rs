//! The in-memory index of the journal: where each live message is, and how
//! much of each segment is still live (which decides when a segment can go).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::journal::{self, Record, MAGIC};
use crate::{MessageId, SpoolError};

/// Where one message's frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: usize,
}

/// One segment file as the index sees it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// A read handle; reads use positioned I/O, so it is shared freely.
    pub(crate) file: Arc<File>,
    /// Bytes of trustworthy frames (plus the magic).
    pub(crate) size: u64,
    /// Live messages whose frame is in this segment.
    pub(crate) live: usize,
    /// Bytes of those frames.
    pub(crate) live_bytes: u64,
    /// No more appends: the writer has moved to a later segment.
    pub(crate) closed: bool,
}

/// Live messages by id (so listing is in arrival order) and segments by number.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: BTreeMap<MessageId, Location>,
    pub(crate) segments: BTreeMap<u64, Segment>,
}

impl Index {
    /// Records that `id`'s newest frame is at `at`; an older frame of the
    /// same id (a relocated copy) stops counting as live.
    pub(crate) fn insert(&mut self, id: MessageId, at: Location) {
        if let Some(old) = self.entries.insert(id, at) {
            self.forget(old);
        }
        if let Some(segment) = self.segments.get_mut(&at.segment) {
            segment.live += 1;
            segment.live_bytes += at.len as u64;
        }
    }

    /// Drops `id`; returns whether it was live.
    pub(crate) fn remove(&mut self, id: &MessageId) -> bool {
        match self.entries.remove(id) {
            Some(old) => {
                self.forget(old);
                true
            }
            None => false,
        }
    }

    fn forget(&mut self, at: Location) {
        if let Some(segment) = self.segments.get_mut(&at.segment) {
            segment.live -= 1;
            segment.live_bytes -= at.len as u64;
        }
    }

    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        self.entries.contains_key(id)
    }

    /// The frame of `id` and the file holding it.
    pub(crate) fn locate(&self, id: &MessageId) -> Option<(Location, Arc<File>)> {
        let at = *self.entries.get(id)?;
        let file = self.segments.get(&at.segment)?.file.clone();
        Some((at, file))
    }

    /// Live ids, oldest first.
    pub(crate) fn ids(&self) -> Vec<MessageId> {
        self.entries.keys().cloned().collect()
    }

    /// The live messages of one segment.
    pub(crate) fn live_in(&self, number: u64) -> Vec<(MessageId, Location)> {
        self.entries
            .iter()
            .filter(|(_, at)| at.segment == number)
            .map(|(id, at)| (id.clone(), *at))
            .collect()
    }

    /// Reads one segment file and applies its frames, in order. Frames after
    /// the first that does not decode (a torn tail) are ignored. The
    /// segment is registered as closed.
    pub(crate) fn load_segment(&mut self, number: u64, path: &Path) -> Result<(), SpoolError> {
        let bytes = std::fs::read(path).map_err(SpoolError::io("read journal segment", path))?;
        let file = File::open(path).map_err(SpoolError::io("open journal segment", path))?;
        let mut size = MAGIC.len() as u64;
        self.segments.insert(
            number,
            Segment {
                file: Arc::new(file),
                size,
                live: 0,
                live_bytes: 0,
                closed: true,
            },
        );
        let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
            tracing::warn!(path = %path.display(), "journal segment without its header; ignored");
            return Ok(());
        };
        for (offset, len, record) in journal::frames(body) {
            size = offset + len as u64;
            match record {
                Record::Message { id, .. } => {
                    let id: MessageId = id.parse()?;
                    let at = Location {
                        segment: number,
                        offset,
                        len,
                    };
                    self.insert(id, at);
                }
                Record::Removed { id } => {
                    self.remove(&id.parse()?);
                }
            }
        }
        if size < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                ignored = bytes.len() as u64 - size,
                "journal segment ends in an incomplete write; the bytes after it were never acknowledged"
            );
        }
        if let Some(segment) = self.segments.get_mut(&number) {
            segment.size = size;
        }
        Ok(())
    }
}

/// Segment files in `dir` by number, lowest first.
pub(crate) fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(SpoolError::io("read directory", dir))? {
        let path = entry.map_err(SpoolError::io("read directory", dir))?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|stem| stem.len() == 16)
            .and_then(|stem| u64::from_str_radix(stem, 16).ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The file name of segment `number`.
pub(crate) fn segment_name(number: u64) -> String {
    format!("{number:016x}.log")
}

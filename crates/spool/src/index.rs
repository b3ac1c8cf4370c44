//! The in-memory index of the journal: where each live message is, and how
//! much of each segment is still live (which decides when a segment can go).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::id::IdKey;
use crate::journal::{self, Record, FRAME_HEADER, MAGIC};
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

/// Live messages by id (so listing is in arrival order) and segments by
/// number. Ids are kept as integers: a queue of a million messages is held
/// here, so the bytes per entry count.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: BTreeMap<IdKey, Location>,
    pub(crate) segments: BTreeMap<u64, Segment>,
}

impl Index {
    /// Records that `id`'s newest frame is at `at`; an older frame of the
    /// same id (a relocated copy) stops counting as live.
    pub(crate) fn insert(&mut self, id: &MessageId, at: Location) {
        if let Some(old) = self.entries.insert(id.key(), at) {
            self.forget(old);
        }
        if let Some(segment) = self.segments.get_mut(&at.segment) {
            segment.live += 1;
            segment.live_bytes += at.len as u64;
        }
    }

    /// Drops `id`; returns whether it was live.
    pub(crate) fn remove(&mut self, id: &MessageId) -> bool {
        match self.entries.remove(&id.key()) {
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
        self.entries.contains_key(&id.key())
    }

    /// The frame of `id` and the file holding it.
    pub(crate) fn locate(&self, id: &MessageId) -> Option<(Location, Arc<File>)> {
        let at = *self.entries.get(&id.key())?;
        let file = self.segments.get(&at.segment)?.file.clone();
        Some((at, file))
    }

    /// Live ids, oldest first.
    pub(crate) fn ids(&self) -> Vec<MessageId> {
        self.entries
            .keys()
            .copied()
            .map(MessageId::from_key)
            .collect()
    }

    /// The live messages of one segment.
    pub(crate) fn live_in(&self, number: u64) -> Vec<(MessageId, Location)> {
        self.entries
            .iter()
            .filter(|(_, at)| at.segment == number)
            .map(|(&key, at)| (MessageId::from_key(key), *at))
            .collect()
    }

    /// Reads one segment file and applies its frames, in order. Frames after
    /// the first that does not decode (a torn tail) are ignored; a run of
    /// zeros is the preallocated, never written end. The segment is
    /// registered as closed. Reads frame by frame, so neither the
    /// preallocated tail nor the whole file is ever held in memory.
    ///
    /// A file without the segment header is not registered, and
    /// [`Loaded::Headerless`] says so: the header is written and synced
    /// before a segment takes its first record, so such a file (an empty
    /// one left by a write that failed on a full disk) holds nothing that
    /// was ever acknowledged.
    pub(crate) fn load_segment(&mut self, number: u64, path: &Path) -> Result<Loaded, SpoolError> {
        let file =
            Arc::new(File::open(path).map_err(SpoolError::io("open journal segment", path))?);
        // Registered first, so that its frames count as live as they load.
        self.segments.insert(
            number,
            Segment {
                file: file.clone(),
                size: MAGIC.len() as u64,
                live: 0,
                live_bytes: 0,
                closed: true,
            },
        );
        let read_error = |e| SpoolError::io("read journal segment", path)(e);
        let file_len = file
            .metadata()
            .map_err(SpoolError::io("stat journal segment", path))?
            .len();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file.as_ref());
        let mut size = MAGIC.len() as u64;
        let mut magic = [0u8; MAGIC.len()];
        let has_magic = match reader.read_exact(&mut magic) {
            Ok(()) => &magic == MAGIC,
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => false,
            Err(e) => return Err(read_error(e)),
        };
        let mut frame = Vec::new();
        let mut torn = !has_magic;
        while !torn {
            match next_frame(&mut reader, &mut frame, file_len - size).map_err(&read_error)? {
                Next::End => break,
                Next::Torn => {
                    torn = true;
                    break;
                }
                Next::Frame => {}
            }
            let Some((record, _)) = journal::decode(&frame) else {
                torn = true;
                break;
            };
            match record {
                Record::Message { id, .. } => {
                    let at = Location {
                        segment: number,
                        offset: size,
                        len: frame.len(),
                    };
                    self.insert(&id.parse()?, at);
                }
                Record::Removed { id } => {
                    self.remove(&id.parse()?);
                }
            }
            size += frame.len() as u64;
        }
        if !has_magic {
            self.segments.remove(&number);
            return Ok(Loaded::Headerless);
        }
        if torn {
            tracing::warn!(
                path = %path.display(),
                trusted = size,
                "journal segment ends in an incomplete write; the bytes after it were never acknowledged"
            );
        }
        if let Some(segment) = self.segments.get_mut(&number) {
            segment.size = size;
        }
        Ok(Loaded::Segment)
    }
}

/// What [`Index::load_segment`] found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// A segment, registered with its frames.
    Segment,
    /// No segment header: nothing in it was ever acknowledged.
    Headerless,
}

/// What [`next_frame`] found.
pub(crate) enum Next {
    /// `frame` holds one whole frame (not yet checked).
    Frame,
    /// The end of the file, or the zeros of its preallocated tail.
    End,
    /// A frame that the file ends inside of.
    Torn,
}

/// Reads the next frame into `frame`; `left` is how many bytes of the file
/// remain, so a corrupt length cannot make it allocate more than that.
pub(crate) fn next_frame(
    reader: &mut impl Read,
    frame: &mut Vec<u8>,
    left: u64,
) -> std::io::Result<Next> {
    frame.resize(FRAME_HEADER, 0);
    match reader.read_exact(frame) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(Next::End),
        Err(e) => return Err(e),
    }
    if frame.iter().all(|&b| b == 0) {
        return Ok(Next::End);
    }
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if (FRAME_HEADER + len) as u64 > left {
        return Ok(Next::Torn);
    }
    frame.resize(FRAME_HEADER + len, 0);
    match reader.read_exact(&mut frame[FRAME_HEADER..]) {
        Ok(()) => Ok(Next::Frame),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(Next::Torn),
        Err(e) => Err(e),
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

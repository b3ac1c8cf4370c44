//! Receives a message sent in BDAT chunks (RFC 3030): data read by length,
//! with no dot-stuffing and no end marker.
//!
//! [`Chunk`] frames one chunk: it takes exactly the declared number of
//! octets, however the reads split them, so the octets after it are read
//! as the next command (PIPELINING of chunks comes for free). A chunk is
//! always read to its end, also when it will be refused, because its
//! octets are data, never commands. [`ChunkedBody`] collects the chunks of
//! one transaction under the size limit, which is checked when a chunk is
//! declared (a chunk that would pass it is read and dropped, and the
//! transaction fails) and again on the total.
//!
//! The finished body has the same line ends as a DATA body of the same
//! message: a bare CR or LF becomes CRLF and a last line gets its CRLF
//! (see [`crate::data`]), so what is spooled does not depend on how the
//! client sent it, and every stored line can be dot-stuffed safely when a
//! next hop takes it with DATA.

use crate::data::DataOutcome;

/// One chunk being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    remaining: u64,
}

impl Chunk {
    /// A chunk of `size` octets.
    pub fn new(size: u64) -> Chunk {
        Chunk { remaining: size }
    }

    /// Takes the part of `input` that belongs to this chunk; returns it and
    /// whether the chunk is now complete.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> (&'a [u8], bool) {
        let take = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        self.remaining -= take as u64;
        (&input[..take], self.remaining == 0)
    }

    /// Octets still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// Why a chunk was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message would exceed {max} octets")]
pub struct TooBig {
    pub max: usize,
}

/// The body of one transaction, chunk by chunk, within a size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBody {
    max_size: usize,
    body: Vec<u8>,
}

impl ChunkedBody {
    pub fn new(max_size: usize) -> ChunkedBody {
        ChunkedBody {
            max_size,
            body: Vec::new(),
        }
    }

    /// Whether a chunk of `size` octets still fits. Checked before the
    /// chunk is read, so an oversized one is never buffered.
    pub fn admit(&self, size: u64) -> Result<(), TooBig> {
        let total = (self.body.len() as u64).saturating_add(size);
        match total <= self.max_size as u64 {
            true => Ok(()),
            false => Err(TooBig { max: self.max_size }),
        }
    }

    /// Appends octets of an admitted chunk.
    pub fn extend(&mut self, octets: &[u8]) {
        // Invariant: `admit` accepted the chunk these octets belong to, so
        // the body stays within `max_size`.
        debug_assert!(self.body.len() + octets.len() <= self.max_size);
        self.body.extend_from_slice(octets);
    }

    /// Octets received so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The message, line ends made CRLF as in a DATA body. Normalising can
    /// lengthen it (a bare LF becomes two octets): the limit applies to the
    /// result, as it does to a DATA body.
    pub fn finish(self) -> DataOutcome {
        let body = crlf_line_ends(&self.body);
        if body.len() > self.max_size {
            return DataOutcome::TooBig {
                size: body.len() as u64,
            };
        }
        DataOutcome::Complete(body)
    }
}

/// Every bare CR and bare LF as CRLF, and a CRLF after a last line that
/// has none; an empty body stays empty.
fn crlf_line_ends(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 2);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            other => out.push(other),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DataProgress, DataReceiver};

    #[test]
    fn a_chunk_takes_exactly_its_size_across_reads() {
        let mut chunk = Chunk::new(5);
        assert_eq!(chunk.feed(b"ab"), (&b"ab"[..], false));
        assert_eq!(chunk.feed(b"cdeBDAT 1"), (&b"cde"[..], true));
        assert_eq!(Chunk::new(0).feed(b"x"), (&b""[..], true));
    }

    #[test]
    fn the_limit_is_checked_per_chunk_and_in_total() {
        let mut body = ChunkedBody::new(10);
        assert_eq!(body.admit(11), Err(TooBig { max: 10 }));
        body.admit(6).unwrap();
        body.extend(b"abc\r\nd");
        assert_eq!(body.admit(5), Err(TooBig { max: 10 }));
        assert_eq!(body.admit(u64::MAX), Err(TooBig { max: 10 }));
        body.admit(4).unwrap();
    }

    /// The same message through DATA (dot-stuffed, end marker) and through
    /// BDAT (raw) is stored byte for byte the same.
    #[test]
    fn same_bytes_as_the_data_form() {
        let messages: &[&[u8]] = &[
            b"Subject: x\r\n\r\nhello\r\n",
            b"Subject: x\r\n\r\n.leading dot\r\n..\r\n",
            b"a\nb\rc\r\n",
            b"no final line end",
            b"",
            "Subject: gr\u{fc}\u{df}e\r\n\r\n\u{fc}\r\n".as_bytes(),
        ];
        for message in messages {
            let mut stuffed = Vec::new();
            for line in message.split_inclusive(|&b| b == b'\n') {
                if line.starts_with(b".") {
                    stuffed.push(b'.');
                }
                stuffed.extend_from_slice(line);
            }
            if !stuffed.is_empty() && !stuffed.ends_with(b"\r\n") {
                stuffed.extend_from_slice(b"\r\n");
            }
            stuffed.extend_from_slice(b".\r\n");
            let DataProgress::Done {
                outcome: via_data, ..
            } = DataReceiver::new(1000).feed(&stuffed)
            else {
                panic!("no end marker in {stuffed:?}");
            };
            let mut body = ChunkedBody::new(1000);
            for piece in message.chunks(3) {
                body.admit(piece.len() as u64).unwrap();
                body.extend(piece);
            }
            assert_eq!(body.finish(), via_data, "{message:?}");
        }
    }

    #[test]
    fn normalising_past_the_limit_is_too_big() {
        let mut body = ChunkedBody::new(4);
        body.admit(4).unwrap();
        body.extend(b"a\nb\n");
        assert_eq!(body.finish(), DataOutcome::TooBig { size: 6 });
    }
}

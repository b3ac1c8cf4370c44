//! Cutting a byte stream into LF-terminated lines, bounded.
//!
//! Dovecot's protocol has no line limit of its own ("expected to fit into
//! 16384 bytes"); an auth server that buffered whatever a client sent would
//! let one connection take any amount of memory, so a line longer than the
//! bound is an error and the connection is closed.

use thiserror::Error;

/// A line was longer than the bound.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line longer than {0} bytes")]
pub struct FramerError(pub usize);

/// Accumulates bytes and yields whole lines (without the LF; a CR before it
/// is kept, the parser rejects it as part of a value where it matters).
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    max_line: usize,
    /// Bytes of `buf` already searched for a LF.
    scanned: usize,
}

impl Framer {
    pub fn new(max_line: usize) -> Self {
        Framer {
            buf: Vec::new(),
            max_line,
            scanned: 0,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole line, `Ok(None)` when more bytes are needed, or an
    /// error once a line has grown past the bound (with or without its LF).
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, FramerError> {
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(at) => {
                let end = self.scanned + at;
                if end > self.max_line {
                    return Err(FramerError(self.max_line));
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                Ok(Some(line))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line {
                    Err(FramerError(self.max_line))
                } else {
                    Ok(None)
                }
            }
        }
    }
}

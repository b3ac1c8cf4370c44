//! Receives a DATA body: dot-unstuffing, a size limit, and the end marker.
//!
//! Only `CRLF . CRLF` ends the body. A bare LF before or after the dot does
//! not: accepting `LF . LF` is what makes SMTP smuggling possible, because
//! the next hop may disagree on where the message ended. A body over the
//! limit is read to its end and dropped, so the session can answer `552` in
//! step with the client instead of parsing message lines as commands.

/// Progress through a DATA body.
#[derive(Debug, PartialEq, Eq)]
pub enum DataProgress {
    /// `consumed` bytes taken; the end has not come yet.
    More { consumed: usize },
    /// The end marker was seen; `consumed` includes it.
    Done {
        consumed: usize,
        outcome: DataOutcome,
    },
}

/// How the body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// The unstuffed body, within the limit, ending in CRLF.
    Complete(Vec<u8>),
    /// Over the limit: nothing was kept. `size` is how much was seen.
    TooBig { size: u64 },
}

/// Where we are relative to line starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the start of a line (after CRLF, or at the very beginning).
    LineStart,
    /// Saw `.` at a line start.
    Dot,
    /// Saw `.` `CR` at a line start.
    DotCr,
    /// Inside a line.
    Middle,
    /// Saw `CR` inside a line.
    Cr,
}

/// A DATA receiver with a fixed size limit.
#[derive(Debug)]
pub struct DataReceiver {
    max_size: usize,
    body: Vec<u8>,
    seen: u64,
    too_big: bool,
    at: At,
}

impl DataReceiver {
    pub fn new(max_size: usize) -> Self {
        DataReceiver {
            max_size,
            body: Vec::new(),
            seen: 0,
            too_big: false,
            at: At::LineStart,
        }
    }

    /// Takes as much of `input` as belongs to the body.
    pub fn feed(&mut self, input: &[u8]) -> DataProgress {
        for (i, &b) in input.iter().enumerate() {
            self.at = match (self.at, b) {
                (At::LineStart, b'.') => At::Dot,
                (At::Dot, b'\r') => At::DotCr,
                (At::DotCr, b'\n') => {
                    return DataProgress::Done {
                        consumed: i + 1,
                        outcome: self.finish(),
                    }
                }
                // A leading dot is dropped (RFC 5321 §4.5.2: senders stuff,
                // receivers unstuff); what follows it is kept as is.
                (At::DotCr, next) => {
                    self.keep(b"\r");
                    self.keep(&[next]);
                    if next == b'\r' {
                        At::Cr
                    } else {
                        At::Middle
                    }
                }
                (_, b'\r') => {
                    self.keep(b"\r");
                    At::Cr
                }
                (At::Cr, b'\n') => {
                    self.keep(b"\n");
                    At::LineStart
                }
                (_, other) => {
                    self.keep(&[other]);
                    At::Middle
                }
            };
        }
        DataProgress::More {
            consumed: input.len(),
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.seen += bytes.len() as u64;
        if self.too_big {
            return;
        }
        if self.body.len() + bytes.len() > self.max_size {
            self.too_big = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(bytes);
    }

    fn finish(&mut self) -> DataOutcome {
        if self.too_big {
            return DataOutcome::TooBig { size: self.seen };
        }
        let mut body = std::mem::take(&mut self.body);
        // The CRLF before the final dot belongs to the last line; an empty
        // body stays empty.
        if !body.is_empty() && !body.ends_with(b"\r\n") {
            body.extend_from_slice(b"\r\n");
        }
        DataOutcome::Complete(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(chunks: &[&[u8]], max: usize) -> (DataOutcome, usize) {
        let mut r = DataReceiver::new(max);
        let mut total = 0;
        for chunk in chunks {
            match r.feed(chunk) {
                DataProgress::More { consumed } => total += consumed,
                DataProgress::Done { consumed, outcome } => return (outcome, total + consumed),
            }
        }
        panic!("no end marker");
    }

    #[test]
    fn plain_body() {
        let (out, n) = receive(&[b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n"], 1000);
        assert_eq!(
            out,
            DataOutcome::Complete(b"Subject: x\r\n\r\nhello\r\n".to_vec())
        );
        assert_eq!(n, 24);
    }

    #[test]
    fn empty_body() {
        assert_eq!(receive(&[b".\r\n"], 10).0, DataOutcome::Complete(vec![]));
    }

    #[test]
    fn dot_unstuffing() {
        let (out, _) = receive(&[b"..leading\r\n...\r\na.b\r\n.\r\n"], 1000);
        assert_eq!(
            out,
            DataOutcome::Complete(b".leading\r\n..\r\na.b\r\n".to_vec())
        );
    }

    #[test]
    fn end_marker_split_across_reads() {
        let (out, _) = receive(&[b"hi\r", b"\n.", b"\r", b"\n"], 1000);
        assert_eq!(out, DataOutcome::Complete(b"hi\r\n".to_vec()));
    }

    #[test]
    fn bare_lf_dot_does_not_end_the_body() {
        let (out, _) = receive(&[b"a\n.\nb\r\n.\r\n"], 1000);
        assert_eq!(out, DataOutcome::Complete(b"a\n.\nb\r\n".to_vec()));
        let (out, _) = receive(&[b"a\r\n.\nMAIL FROM:<x>\r\n.\r\n"], 1000);
        assert_eq!(
            out,
            DataOutcome::Complete(b"a\r\n\nMAIL FROM:<x>\r\n".to_vec())
        );
    }

    #[test]
    fn over_the_limit_is_read_to_the_end_and_dropped() {
        let (out, n) = receive(&[b"0123456789\r\n", b"more\r\n.\r\n"], 5);
        assert_eq!(out, DataOutcome::TooBig { size: 18 });
        assert_eq!(n, 21);
    }

    #[test]
    fn exactly_the_limit_is_kept() {
        let (out, _) = receive(&[b"abc\r\n.\r\n"], 5);
        assert_eq!(out, DataOutcome::Complete(b"abc\r\n".to_vec()));
    }
}

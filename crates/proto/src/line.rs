//! Cuts lines out of an input buffer, bounded.
//!
//! The framer borrows from the caller's buffer and reports how many bytes it
//! used, so bytes after the line stay in the buffer for the next command
//! (PIPELINING costs nothing). A line over the limit is reported once, as
//! soon as the limit is passed, and the rest of it is swallowed up to its
//! end: the session answers `500 5.5.6` and goes on with the next line.

/// What the framer found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole line, without its CRLF (a bare LF is accepted too);
    /// `consumed` counts the terminator.
    Line { line: &'a [u8], consumed: usize },
    /// The line passed the limit: answer it now. `consumed` bytes were
    /// dropped; the framer keeps dropping until the line ends.
    TooLong { consumed: usize },
    /// `consumed` bytes of an overlong line were dropped; more to come.
    Discarded { consumed: usize },
    /// No complete line yet: read more.
    Incomplete,
}

/// A line framer with a fixed limit.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_len: usize,
    discarding: bool,
}

impl LineFramer {
    pub fn new(max_len: usize) -> Self {
        LineFramer {
            max_len,
            discarding: false,
        }
    }

    /// Whether the rest of an over-long line is being thrown away: bytes
    /// are consumed, but no line has ended.
    pub fn discarding(&self) -> bool {
        self.discarding
    }

    /// Looks at the front of `input`.
    pub fn next_frame<'a>(&mut self, input: &'a [u8]) -> Frame<'a> {
        let newline = input.iter().position(|&b| b == b'\n');
        if self.discarding {
            return match newline {
                Some(i) => {
                    self.discarding = false;
                    Frame::Discarded { consumed: i + 1 }
                }
                None if input.is_empty() => Frame::Incomplete,
                None => Frame::Discarded {
                    consumed: input.len(),
                },
            };
        }
        match newline {
            Some(i) => {
                let line = input[..i].strip_suffix(b"\r").unwrap_or(&input[..i]);
                if line.len() > self.max_len {
                    Frame::TooLong { consumed: i + 1 }
                } else {
                    Frame::Line {
                        line,
                        consumed: i + 1,
                    }
                }
            }
            // +1: a CR at the very end may belong to a CRLF still in flight.
            None if input.len() > self.max_len + 1 => {
                self.discarding = true;
                Frame::TooLong {
                    consumed: input.len(),
                }
            }
            None => Frame::Incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_crlf_or_lf() {
        let mut f = LineFramer::new(100);
        assert_eq!(
            f.next_frame(b"NOOP\r\nQUIT\n"),
            Frame::Line {
                line: b"NOOP",
                consumed: 6
            }
        );
        assert_eq!(
            f.next_frame(b"QUIT\n"),
            Frame::Line {
                line: b"QUIT",
                consumed: 5
            }
        );
        assert_eq!(f.next_frame(b"QU"), Frame::Incomplete);
    }

    #[test]
    fn a_complete_overlong_line_is_reported_once() {
        let mut f = LineFramer::new(4);
        assert_eq!(
            f.next_frame(b"abcdef\r\nok\r\n"),
            Frame::TooLong { consumed: 8 }
        );
        assert!(matches!(
            f.next_frame(b"ok\r\n"),
            Frame::Line { line: b"ok", .. }
        ));
    }

    #[test]
    fn a_never_ending_line_is_reported_then_swallowed() {
        let mut f = LineFramer::new(4);
        assert_eq!(f.next_frame(b"abcdefgh"), Frame::TooLong { consumed: 8 });
        assert_eq!(f.next_frame(b"ijkl"), Frame::Discarded { consumed: 4 });
        assert_eq!(f.next_frame(b""), Frame::Incomplete);
        assert_eq!(
            f.next_frame(b"mn\r\nNOOP\r\n"),
            Frame::Discarded { consumed: 4 }
        );
        assert!(matches!(
            f.next_frame(b"NOOP\r\n"),
            Frame::Line { line: b"NOOP", .. }
        ));
    }

    #[test]
    fn exactly_the_limit_is_fine() {
        let mut f = LineFramer::new(4);
        assert_eq!(f.next_frame(b"abcd\r"), Frame::Incomplete);
        assert!(matches!(
            f.next_frame(b"abcd\r\n"),
            Frame::Line { line: b"abcd", .. }
        ));
    }
}

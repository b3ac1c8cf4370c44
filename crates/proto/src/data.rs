//! Receives a DATA body: dot-unstuffing, a size limit, the end marker, and
//! line ends made CRLF.
//!
//! Only `CRLF . CRLF` ends the body. A bare LF before or after the dot does
//! not: accepting `LF . LF` is what makes SMTP smuggling possible, because
//! the next hop may disagree on where the message ended. A body over the
//! limit is read to its end and dropped, so the session can answer `552` in
//! step with the client instead of parsing message lines as commands.
//!
//! A bare CR or a bare LF inside the body is stored as CRLF (normalised,
//! not refused). Refusing would break the sloppy but honest clients that
//! write LF line ends (scripts, web applications: Postfix normalises too,
//! `smtpd_forbid_bare_newline = normalize`), while normalising closes the
//! hole just as well: what we store has one kind of line end, so the
//! delivery code's dot-stuffing covers every line, and a `<LF>.<LF>` or
//! `<CR>.<CR><LF>` the client slipped in reaches the next hop as an
//! ordinary, stuffed `..` line that no reader, lenient or strict, takes
//! for the end of the message. Such a line of one dot is kept as text
//! (it is not the unstuffing of a `..`), and a line end we made never
//! starts a line for the end marker or for unstuffing: only the client's
//! own CRLF does, so where the body ends is decided by the bytes the
//! client sent, exactly as before.

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
    /// At the start of a line (after the client's CRLF, or at the very
    /// beginning).
    LineStart,
    /// Saw `.` at a line start (not kept yet).
    Dot,
    /// Saw `.` `CR` at a line start (neither kept yet).
    DotCr,
    /// Inside a line, or after a line end we made from a bare CR or LF.
    Middle,
    /// Saw `CR` (kept) inside a line.
    Cr,
}

/// What a message's buffer starts with.
const FIRST_RESERVE: usize = 8 * 1024;

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

    /// Whether the body has passed the size limit: it is read to its end,
    /// then refused, never stored.
    pub fn is_too_big(&self) -> bool {
        self.too_big
    }

    /// Takes as much of `input` as belongs to the body.
    pub fn feed(&mut self, input: &[u8]) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            // Fast path: inside a line (or at a line start that is not a
            // dot), everything up to the next CR or LF is kept as is, in
            // one copy instead of one state step per byte.
            if self.at == At::Middle || (self.at == At::LineStart && input[i] != b'.') {
                let rest = &input[i..];
                let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                if rest.get(run..run + 2) == Some(b"\r\n") {
                    // The line and its CRLF, as they are: the next byte is
                    // at a line start (where a dot is looked at).
                    self.keep(&rest[..run + 2]);
                    self.at = At::LineStart;
                    i += run + 2;
                    continue;
                }
                if run > 0 {
                    self.keep(&rest[..run]);
                    self.at = At::Middle;
                    i += run;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            self.at = match (self.at, b) {
                (At::LineStart, b'.') => At::Dot,
                (At::Dot, b'\r') => At::DotCr,
                (At::DotCr, b'\n') => {
                    return DataProgress::Done {
                        consumed: i,
                        outcome: self.finish(),
                    }
                }
                // A line of one dot ended by a bare CR or LF is text, not
                // an end marker: it is kept, with a CRLF.
                (At::DotCr, next) => {
                    self.keep(b".\r\n");
                    self.inside_line(next)
                }
                (At::Dot, b'\n') => {
                    self.keep(b".\r\n");
                    At::Middle
                }
                // A leading dot is dropped (RFC 5321 §4.5.2: senders stuff,
                // receivers unstuff); what follows it is kept as is.
                (At::Dot, next) => self.inside_line(next),
                (At::Cr, b'\n') => {
                    self.keep(b"\n");
                    At::LineStart
                }
                // The CR before `next` was bare: complete it to CRLF.
                (At::Cr, next) => {
                    self.keep(b"\n");
                    self.inside_line(next)
                }
                (At::LineStart | At::Middle, next) => self.inside_line(next),
            };
        }
        DataProgress::More {
            consumed: input.len(),
        }
    }

    /// Keeps `b`, which is not the end of a CRLF: a bare LF becomes CRLF.
    fn inside_line(&mut self, b: u8) -> At {
        match b {
            b'\r' => {
                self.keep(b"\r");
                At::Cr
            }
            b'\n' => {
                self.keep(b"\r\n");
                At::Middle
            }
            other => {
                self.keep(&[other]);
                At::Middle
            }
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
        if self.body.capacity() == 0 {
            // One allocation for most messages instead of a doubling
            // series from a few bytes.
            self.body
                .reserve(bytes.len().max(FIRST_RESERVE).min(self.max_size));
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
        assert_eq!(out, DataOutcome::Complete(b"a\r\n.\r\nb\r\n".to_vec()));
        let (out, _) = receive(&[b"a\r\n.\nMAIL FROM:<x>\r\n.\r\n"], 1000);
        assert_eq!(
            out,
            DataOutcome::Complete(b"a\r\n.\r\nMAIL FROM:<x>\r\n".to_vec())
        );
    }

    /// Every smuggling shape, whole and split at every byte: the body ends
    /// only at the client's CRLF . CRLF, and is stored with CRLF only.
    #[test]
    fn bare_cr_and_bare_lf_are_stored_as_crlf() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"one\rtwo\r\n.\r\n", b"one\r\ntwo\r\n"),
            (b"one\ntwo\n.\r\n.\r\n", b"one\r\ntwo\r\n.\r\n"),
            (b"a\n.\nMAIL\r\n.\r\n", b"a\r\n.\r\nMAIL\r\n"),
            (b"a\r.\r\nMAIL\r\n.\r\n", b"a\r\n.\r\nMAIL\r\n"),
            (b"a\r\n.\rMAIL\r\n.\r\n", b"a\r\n.\r\nMAIL\r\n"),
            (b"a\r\n.\r\rb\r\n.\r\n", b"a\r\n.\r\n\r\nb\r\n"),
            (b"a\r\r\n.\r\n", b"a\r\n\r\n"),
            (b"a\n\r\n.\r\n", b"a\r\n\r\n"),
            (b"a\r\n..\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
            (b"\n.\r\n.\r\n", b"\r\n.\r\n"),
        ];
        for (input, stored) in cases {
            for split in 0..=input.len() {
                let (head, tail) = input.split_at(split);
                let (out, n) = receive(&[head, tail], 1000);
                assert_eq!(
                    out,
                    DataOutcome::Complete(stored.to_vec()),
                    "{:?} split at {split}",
                    String::from_utf8_lossy(input)
                );
                assert_eq!(n, input.len(), "{:?}", String::from_utf8_lossy(input));
            }
        }
    }

    /// Every body of up to 8 bytes from `\r \n . a`, then the end
    /// marker: the body ends no earlier than the client's first CRLF . CRLF
    /// and never holds a bare CR or LF.
    #[test]
    fn no_short_body_stores_a_bare_cr_or_lf() {
        const ALPHABET: &[u8] = b"\r\n.a";
        for len in 0..=8u32 {
            for mut code in 0..4usize.pow(len) {
                let mut input = Vec::new();
                for _ in 0..len {
                    input.push(ALPHABET[code % 4]);
                    code /= 4;
                }
                let first_end = [b"\r\n".as_slice(), &input, b"\r\n.\r\n"]
                    .concat()
                    .windows(5)
                    .position(|w| w == b"\r\n.\r\n")
                    .map(|at| at + 5 - 2);
                input.extend_from_slice(b"\r\n.\r\n");
                let (out, consumed) = receive(&[&input], 1000);
                assert_eq!(Some(consumed), first_end, "{input:?}");
                // Byte by byte no run is longer than one byte: the state
                // machine alone, which the runs must agree with.
                let bytes: Vec<&[u8]> = input.chunks(1).collect();
                let (one_by_one, _) = receive(&bytes, 1000);
                assert_eq!(one_by_one, out, "{input:?} byte by byte");
                let DataOutcome::Complete(body) = out else {
                    panic!("{input:?}: not complete");
                };
                for (i, &b) in body.iter().enumerate() {
                    let bare_cr = b == b'\r' && body.get(i + 1) != Some(&b'\n');
                    let bare_lf = b == b'\n' && (i == 0 || body[i - 1] != b'\r');
                    assert!(!bare_cr && !bare_lf, "{input:?} stored as {body:?}");
                }
            }
        }
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

    /// Runs of ordinary bytes are kept in one copy: the result and the
    /// consumed count must not depend on how the input is split, and what
    /// follows the end marker is never consumed.
    #[test]
    fn any_split_gives_the_same_body_and_stops_at_the_marker() {
        let inputs: &[&[u8]] = &[
            b"Subject: x\r\n\r\nbody line\r\n..stuffed\r\n.\r\nMAIL FROM:<a@b>\r\n",
            b"bare\rcr and bare\nlf\r\n.\nnot end\r\n.\r\nQUIT\r\n",
            b".\r\n",
            b"\r\n.\r\n",
            b"a.b\r\n.x\r\r\n.\r\n.\r\n",
        ];
        for input in inputs {
            let whole = receive(&[input], 1000);
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(receive(&bytes, 1000), whole, "{input:?} byte by byte");
            for cut in 0..input.len() {
                let (a, b) = input.split_at(cut);
                assert_eq!(receive(&[a, b], 1000), whole, "{input:?} cut at {cut}");
            }
            for max in 0..input.len() {
                assert_eq!(
                    receive(&bytes, max),
                    receive(&[input], max),
                    "{input:?} max {max}"
                );
            }
        }
        assert_eq!(
            receive(&[inputs[0]], 1000).1,
            inputs[0].len() - b"MAIL FROM:<a@b>\r\n".len()
        );
    }
}

//! The test message: exactly `-s` bytes, headers included, CRLF line ends.
//!
//! Body lines are 76 printable characters that never start with `.`, so
//! nothing needs dot-stuffing and the bytes on the wire are exactly the
//! message plus the final `.` line. A size smaller than the headers gives
//! just the headers (the report shows the real size).

/// Longest body line, without CRLF (RFC 5322 recommends at most 78).
const LINE: usize = 76;

/// The message, without the terminating `.` line.
pub fn build(size: usize, from: &str, to: &str) -> Vec<u8> {
    let mut out = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: portcullis-load\r\n\
         Message-ID: <load@portcullis.test>\r\n\r\n"
    )
    .into_bytes();
    let headers = out.len();
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut next = 0usize;
    while out.len() < size {
        let room = size - out.len();
        // A line needs at least one character plus CRLF; a remainder of one
        // or two bytes is folded into the previous line by shortening it.
        let take = match room {
            0..=2 => break,
            _ => (room - 2).min(LINE),
        };
        for _ in 0..take {
            out.push(alphabet[next % alphabet.len()]);
            next += 1;
        }
        out.extend_from_slice(b"\r\n");
    }
    if out.len() > headers {
        pad_last_line(&mut out, size);
    }
    out
}

/// Grows the last body line by the one or two bytes the loop left over.
fn pad_last_line(out: &mut Vec<u8>, size: usize) {
    if out.len() >= size {
        return;
    }
    let missing = size - out.len();
    let at = out.len() - 2;
    out.splice(at..at, std::iter::repeat_n(b'x', missing));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_is_exact_and_needs_no_dot_stuffing() {
        let headers = build(0, "a@b", "c@d").len();
        for size in headers..headers + 400 {
            let m = build(size, "a@b", "c@d");
            // One or two bytes of body cannot make a line: headers only.
            let expected = if size - headers < 3 { headers } else { size };
            assert_eq!(m.len(), expected, "size {size}");
            assert!(m.ends_with(b"\r\n"));
            assert!(!m.windows(2).any(|w| w == b"\n."), "dot line");
            let longest = m.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap();
            assert!(longest <= 80, "line of {longest} at size {size}");
        }
    }

    #[test]
    fn one_kib_is_one_kib() {
        assert_eq!(
            build(1024, "load@portcullis.test", "sink@portcullis.test").len(),
            1024
        );
    }
}

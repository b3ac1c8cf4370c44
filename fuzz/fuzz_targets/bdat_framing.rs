//! BDAT framing: arbitrary data cut into chunks of fuzzer-chosen sizes and
//! fed in fuzzer-chosen pieces. Each chunk takes exactly its size, the
//! limit holds per chunk and in total, the stored body has only CRLF line
//! ends, and a body whose line ends were all CRLF is stored exactly as the
//! DATA receiver stores the dot-stuffed form of the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::bdat::{Chunk, ChunkedBody};
use portcullis_proto::data::{DataOutcome, DataProgress, DataReceiver};

const MAX: usize = 2048;

fuzz_target!(|input: &[u8]| {
    let Some((&sizes, data)) = input.split_first() else {
        return;
    };
    // Chunk sizes cycle through 1..=16 times a factor from the first byte.
    let step = usize::from(sizes % 16) + 1;
    let mut body = ChunkedBody::new(MAX);
    let mut rest = data;
    let mut kept = 0usize;
    let mut refused = false;
    while !rest.is_empty() {
        let size = step.min(rest.len()) * (usize::from(sizes >> 4) + 1);
        let size = size.min(rest.len());
        let admitted = body.admit(size as u64).is_ok();
        assert_eq!(admitted, kept + size <= MAX);
        let mut chunk = Chunk::new(size as u64);
        // Feed in two pieces, the second with trailing bytes after the chunk.
        let half = size / 2;
        let (first, done) = chunk.feed(&rest[..half]);
        assert_eq!(first.len(), half);
        assert_eq!(done, size == half);
        let (second, done) = chunk.feed(&rest[half..]);
        assert_eq!(second.len(), size - half);
        assert!(done && chunk.remaining() == 0);
        if admitted {
            body.extend(first);
            body.extend(second);
            kept += size;
        } else {
            refused = true;
            break;
        }
        rest = &rest[size..];
    }
    if refused {
        return;
    }
    assert_eq!(body.len(), data.len());
    let outcome = body.finish();
    let DataOutcome::Complete(stored) = &outcome else {
        return;
    };
    for (i, &b) in stored.iter().enumerate() {
        let bare_cr = b == b'\r' && stored.get(i + 1) != Some(&b'\n');
        let bare_lf = b == b'\n' && (i == 0 || stored[i - 1] != b'\r');
        assert!(!bare_cr && !bare_lf, "bare line end stored");
    }
    let crlf_only = data.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => data.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && data[i - 1] == b'\r',
        _ => true,
    });
    if !crlf_only {
        return;
    }
    let mut stuffed = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    if !stuffed.is_empty() && !stuffed.ends_with(b"\r\n") {
        stuffed.extend_from_slice(b"\r\n");
    }
    stuffed.extend_from_slice(b".\r\n");
    match DataReceiver::new(MAX).feed(&stuffed) {
        DataProgress::Done { outcome: via_data, consumed } => {
            assert_eq!(consumed, stuffed.len());
            assert_eq!(via_data, outcome, "BDAT and DATA forms differ");
        }
        DataProgress::More { .. } => panic!("the DATA form has its end marker"),
    }
});

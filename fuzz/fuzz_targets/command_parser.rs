//! Any bytes through the line framer, the command parser and the DATA
//! receiver: no panic, and every consumed count stays within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::data::{DataProgress, DataReceiver};
use portcullis_proto::line::{Frame, LineFramer};

fuzz_target!(|input: &[u8]| {
    let mut framer = LineFramer::new(portcullis_proto::MAX_LINE_LEN);
    let mut rest = input;
    loop {
        match framer.next_frame(rest) {
            Frame::Line { line, consumed } => {
                assert!(consumed <= rest.len());
                let _ = portcullis_proto::command::parse(line);
                rest = &rest[consumed..];
            }
            Frame::TooLong { consumed } | Frame::Discarded { consumed } => {
                assert!(consumed > 0 && consumed <= rest.len());
                rest = &rest[consumed..];
            }
            Frame::Incomplete => break,
        }
    }
    let mut receiver = DataReceiver::new(1024);
    match receiver.feed(input) {
        DataProgress::More { consumed } | DataProgress::Done { consumed, .. } => {
            assert!(consumed <= input.len())
        }
    }
    let _ = portcullis_sasl::framing::decode_continuation(input);
});

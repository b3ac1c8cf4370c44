//! The spool journal's frame decoder on arbitrary segment contents (a torn
//! or corrupted file after a crash): it must not panic, must trust only
//! whole frames inside the input, and each trusted frame must encode back
//! to the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_spool::check_journal_scan(data);
});

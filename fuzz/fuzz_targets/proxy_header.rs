//! The PROXY protocol parser on arbitrary input: it must not panic, never
//! claim more bytes than it was given, and always ask for at least one more
//! when the input is incomplete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::proxy::{parse, ProxyParse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(ProxyParse::Done { consumed, .. }) => assert!(consumed <= data.len()),
        Ok(ProxyParse::Incomplete { needed }) => assert!(needed > 0),
        Err(_) => {}
    }
});

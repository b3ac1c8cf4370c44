//! The Dovecot auth protocol server on arbitrary client bytes: it must not
//! panic, never yield a line over the bound, and never hold more requests
//! in flight than its limit, whatever order the lines come in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_dovecot_auth::{Connection, Failure, Framer, Limits, Request};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_in_flight: 4,
        max_response: 256,
    };
    let mut framer = Framer::new(512);
    let mut conn = Connection::new(limits);
    framer.push(data);
    while let Ok(Some(line)) = framer.next_line() {
        assert!(line.len() <= 512);
        match conn.feed(&line) {
            Ok(Request::Auth(r)) => {
                // Answer every other request at once, challenge the rest.
                if r.id % 2 == 0 {
                    conn.fail(r.id, &Failure::default());
                } else {
                    conn.cont(r.id, b"?");
                }
            }
            Ok(Request::Continue { id, response }) => {
                assert!(response.len() <= 256);
                conn.ok(id, "u");
            }
            Ok(_) => {}
            Err(e) => {
                if e.failed_request().is_none() {
                    break;
                }
            }
        }
        assert!(conn.in_flight() <= 4);
    }
});

//! The ESMTP parameters of MAIL and RCPT (SMTPUTF8, BODY, SIZE, AUTH, RET,
//! ENVID, NOTIFY, ORCPT) and the BDAT command line: any text after the
//! verb parses or is refused without a panic, and what parses is bounded
//! and decoded: no control character in ENVID or ORCPT, ENVID at most 100
//! octets, ORCPT at most 500, NOTIFY and xtext round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::command::{self, encode_xtext, Command, MAX_ENVID_LEN, MAX_ORCPT_LEN};
use portcullis_proto::Notify;

fuzz_target!(|input: &[u8]| {
    let Ok(params) = std::str::from_utf8(input) else {
        return;
    };
    if params.contains(['\r', '\n']) {
        return;
    }
    if let Ok(Command::Mail(_, p)) = command::parse(format!("MAIL FROM:<a@b> {params}").as_bytes())
    {
        if let Some(envid) = &p.envid {
            assert!(!envid.is_empty() && envid.len() <= MAX_ENVID_LEN);
            assert!(!envid.chars().any(char::is_control));
            let again = format!("MAIL FROM:<a@b> ENVID={}", encode_xtext(envid));
            match command::parse(again.as_bytes()) {
                Ok(Command::Mail(_, q)) => assert_eq!(q.envid, p.envid),
                other => panic!("re-encoded ENVID does not parse: {other:?}"),
            }
        }
    }
    if let Ok(Command::Rcpt(_, p)) = command::parse(format!("RCPT TO:<c@d> {params}").as_bytes()) {
        if let Some(notify) = p.notify {
            assert_eq!(Notify::parse(&notify.to_value()), Some(notify));
        }
        if let Some(orcpt) = &p.orcpt {
            assert!(orcpt.len() <= MAX_ORCPT_LEN && orcpt.contains(';'));
            assert!(!orcpt.chars().any(char::is_control));
        }
    }
    if let Ok(Command::Bdat { size, .. }) = command::parse(format!("BDAT {params}").as_bytes()) {
        assert!(params.trim_start().starts_with(|c: char| c.is_ascii_digit()));
        let _ = size;
    }
});

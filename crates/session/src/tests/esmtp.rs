//! SMTPUTF8, CHUNKING (BDAT) and DSN in the session.

use portcullis_proto::{Notify, Ret};

use super::*;

fn ready(max_message_size: usize) -> Harness {
    let mut config = SessionConfig::new("mx.test");
    config.max_message_size = max_message_size;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("u");
    h
}

fn spooled(effect: Option<Effect>) -> Box<Message> {
    match effect {
        Some(Effect::Spool(message)) => message,
        other => panic!("expected a spool effect, got {other:?}"),
    }
}

#[test]
fn ehlo_after_auth_lists_smtputf8_chunking_and_dsn() {
    let mut h = ready(1000);
    let ehlo = h.replies("EHLO c\r\n");
    for keyword in ["250-SMTPUTF8\r\n", "250-CHUNKING\r\n", "250-DSN\r\n"] {
        assert!(ehlo.contains(keyword), "{keyword:?} missing from {ehlo}");
    }
    assert!(!ehlo.contains("BINARYMIME"), "not carried end to end");
}

#[test]
fn utf8_envelope_needs_smtputf8() {
    let mut h = ready(1000);
    assert_eq!(
        h.codes("MAIL FROM:<j\u{fc}rgen@b\u{fc}cher.example>\r\n"),
        ["553 5.6.7"]
    );
    assert_eq!(
        h.codes("MAIL FROM:<a@b>\r\nRCPT TO:<\u{7528}\u{6237}@\u{4f8b}.example>\r\nRSET\r\n"),
        ["250 2.1.0", "553 5.6.7", "250 2.0.0"]
    );
    assert_eq!(
        h.codes("MAIL FROM:<a\u{85}b@x> SMTPUTF8\r\n"),
        ["501 5.1.3"]
    );
    let codes = h.codes(
        "MAIL FROM:<j\u{fc}rgen@b\u{fc}cher.example> SMTPUTF8\r\n\
         RCPT TO:<\u{7528}\u{6237}@\u{4f8b}.example>\r\nDATA\r\n",
    );
    assert_eq!(codes, ["250 2.1.0", "250 2.1.5", "354"]);
    let message = spooled(h.send("Subject: gr\u{fc}\u{df}e\r\n\r\nhi\r\n.\r\n").1);
    assert!(message.envelope.params.smtputf8);
    assert_eq!(message.protocol, "UTF8SMTPSA", "RFC 6531 §3.7.3");
    assert_eq!(
        message.envelope.mail_from.as_str(),
        "j\u{fc}rgen@b\u{fc}cher.example"
    );
    assert_eq!(
        message.data,
        "Subject: gr\u{fc}\u{df}e\r\n\r\nhi\r\n".as_bytes()
    );
}

/// A sender rule owning `jürgen@bücher.example` (composed) matches the
/// address sent decomposed and in another case: NFC, case-folded.
#[test]
fn sender_rule_compares_in_nfc() {
    let mut h = ready(1000);
    h.session
        .restrict_senders(SenderRule::new(["j\u{fc}rgen@b\u{fc}cher.example"]));
    assert_eq!(
        h.codes("MAIL FROM:<JU\u{308}RGEN@bu\u{308}cher.example> SMTPUTF8\r\nRSET\r\n"),
        ["250 2.1.0", "250 2.0.0"]
    );
    assert_eq!(
        h.codes("MAIL FROM:<juergen@buecher.example> SMTPUTF8\r\n"),
        ["553 5.7.1"]
    );
}

#[test]
fn bdat_chunks_pipelined_make_one_message() {
    let mut h = ready(1000);
    let input = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 14\r\nSubject: x\r\n\r\nBDAT 7 LAST\r\n.hi\r\n\r\n";
    let progress = h.session.feed(input.as_bytes(), &mut h.out);
    assert_eq!(progress.consumed, input.len());
    let message = spooled(progress.effect);
    assert_eq!(
        h.codes(""),
        ["250 2.1.0", "250 2.1.5", "250 2.0.0"],
        "no reply to the last chunk before the spool"
    );
    assert_eq!(message.data, b"Subject: x\r\n\r\n.hi\r\n\r\n");
    h.session
        .spool_finished(SpoolOutcome::Stored { id: "q1".into() }, &mut h.out);
    assert_eq!(h.take(), "250 2.0.0 OK queued as q1\r\n");
}

/// Chunk octets are data however the reads split them; a command inside
/// a chunk is never executed.
#[test]
fn bdat_reads_by_length_across_reads() {
    let mut h = ready(1000);
    h.replies("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    let input = b"BDAT 16 LAST\r\nQUIT\r\nRSET\r\nab\r\n";
    let (mut pending, mut effect) = (Vec::new(), None);
    for &byte in input {
        pending.push(byte);
        let progress = h.session.feed(&pending, &mut h.out);
        pending.drain(..progress.consumed);
        effect = effect.or(progress.effect);
    }
    assert!(pending.is_empty());
    let message = spooled(effect);
    assert_eq!(message.data, b"QUIT\r\nRSET\r\nab\r\n");
    assert!(!h.session.is_closed());
}

#[test]
fn bdat_without_transaction_or_after_a_failure_is_read_and_refused() {
    let mut h = ready(10);
    assert_eq!(
        h.codes("BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        ["503 5.5.1", "250 2.0.0"]
    );
    assert_eq!(
        h.codes("MAIL FROM:<a@b>\r\nBDAT 2\r\nxxNOOP\r\n"),
        ["250 2.1.0", "503 5.5.1", "250 2.0.0"]
    );
    // Over the limit in total: 552, then the pipelined rest is read and
    // answered 503 (the transaction failed), never run as commands.
    assert_eq!(
        h.codes("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 6\r\n123456BDAT 6\r\nQUIT\r\nBDAT 2 LAST\r\nxxNOOP\r\n"),
        ["250 2.1.0", "250 2.1.5", "250 2.0.0", "552 5.3.4", "503 5.5.1", "250 2.0.0"]
    );
    assert_eq!(
        h.codes("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1\r\nxDATA\r\n"),
        ["250 2.1.0", "250 2.1.5", "250 2.0.0", "503 5.5.1"]
    );
    // The refused DATA left the transaction as it was.
    let message = spooled(h.send("BDAT 1 LAST\r\ny").1);
    assert_eq!(message.data, b"xy\r\n");
}

#[test]
fn bdat_zero_last_ends_the_message() {
    let mut h = ready(100);
    h.replies("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3\r\nab\n");
    let message = spooled(h.send("BDAT 0 LAST\r\n").1);
    assert_eq!(message.data, b"ab\r\n");
}

#[test]
fn dsn_parameters_are_recorded_per_recipient() {
    let mut h = ready(1000);
    h.replies(
        "MAIL FROM:<a@b> RET=HDRS ENVID=x+2By\r\n\
         RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+40d\r\n\
         RCPT TO:<e@f> NOTIFY=NEVER\r\nRCPT TO:<g@h>\r\nDATA\r\n",
    );
    let message = spooled(h.send(".\r\n").1);
    let envelope = &message.envelope;
    assert_eq!(envelope.params.ret, Some(Ret::Hdrs));
    assert_eq!(envelope.params.envid.as_deref(), Some("x+y"));
    assert_eq!(envelope.rcpt_to, ["c@d", "e@f", "g@h"]);
    let notify: Vec<Option<Notify>> = envelope.rcpt_params.iter().map(|p| p.notify).collect();
    assert_eq!(
        notify,
        [
            Some(Notify {
                success: true,
                failure: true,
                delay: false
            }),
            Some(Notify::NEVER),
            None
        ]
    );
    assert_eq!(envelope.rcpt_params[0].orcpt.as_deref(), Some("rfc822;c@d"));
}

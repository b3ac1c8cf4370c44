//! Delivery status notifications (bounces): RFC 3464 `multipart/report`.
//!
//! A bounce is an ordinary message: it is built here as bytes, spooled with
//! the null sender and the original sender as its only recipient, and
//! delivered by the same workers and routes as everything else. Spooling it
//! before the original entry is updated means a crash between the two can
//! produce a second bounce, never none. Because its sender is `<>`, a bounce
//! that cannot be delivered is dropped with a log line, never bounced again.
//!
//! The report returns the original's header section only
//! (`text/rfc822-headers`), which is enough to identify the message and
//! keeps bounces small. Pure: the time and boundary come in as arguments.

use portcullis_spool::MessageMeta;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::OffsetDateTime;

use crate::message::headers;
use crate::outcome::Failure;

/// What goes into one bounce.
#[derive(Debug)]
pub struct Bounce<'a> {
    /// Our host name (Reporting-MTA, From, Message-ID).
    pub hostname: &'a str,
    /// The spool id of the original.
    pub original_id: &'a str,
    /// The original's envelope sender: the bounce's recipient.
    pub sender: &'a str,
    /// When the original arrived.
    pub arrival: OffsetDateTime,
    /// The recipients that failed, each with why.
    pub failures: &'a [(String, Failure)],
    /// The original message bytes.
    pub original: &'a [u8],
    pub now: OffsetDateTime,
    /// MIME boundary; must not occur in the original's headers.
    pub boundary: &'a str,
}

impl Bounce<'_> {
    /// The complete RFC 5322 message.
    pub fn render(&self) -> Vec<u8> {
        let date = self.now.format(&Rfc2822).unwrap_or_default();
        let arrival = self.arrival.format(&Rfc2822).unwrap_or_default();
        let b = self.boundary;
        let mut out = format!(
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
             To: <{to}>\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             Date: {date}\r\n\
             Message-ID: <{id}.dsn.{stamp}@{host}>\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"{b}\"\r\n\
             \r\n\
             This is a MIME-encapsulated delivery status notification.\r\n\
             \r\n--{b}\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             Your message could not be delivered to one or more recipients.\r\n\
             It was received by {host} on {arrival}.\r\n\r\n",
            host = self.hostname,
            to = self.sender,
            id = self.original_id,
            stamp = self.now.unix_timestamp(),
        );
        for (rcpt, failure) in self.failures {
            out.push_str(&format!("<{rcpt}>: {}\r\n", ascii(&failure.diagnostic)));
        }
        out.push_str(&format!(
            "\r\n--{b}\r\nContent-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; {host}\r\n\
             X-Portcullis-Queue-ID: {id}\r\n\
             Arrival-Date: {arrival}\r\n",
            host = self.hostname,
            id = self.original_id,
        ));
        for (rcpt, failure) in self.failures {
            out.push_str(&format!(
                "\r\nFinal-Recipient: rfc822; {rcpt}\r\n\
                 Action: failed\r\n\
                 Status: {}\r\n\
                 Diagnostic-Code: {}\r\n\
                 Last-Attempt-Date: {date}\r\n",
                failure.status,
                ascii(&failure.diagnostic),
            ));
        }
        out.push_str(&format!(
            "\r\n--{b}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(headers(self.original));
        if !bytes.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        bytes
    }

    /// The spool metadata of the bounce: from `<>` to the original sender.
    pub fn meta(&self, hostname: &str) -> MessageMeta {
        MessageMeta {
            received_at: self.now.format(&Rfc3339).unwrap_or_default(),
            mail_from: String::new(),
            rcpt_to: vec![self.sender.to_string()],
            body: "7bit".into(),
            declared_size: None,
            helo: Some(hostname.to_string()),
            client_addr: String::new(),
            server_addr: String::new(),
            listener: "bounce".into(),
            tls: None,
            auth: None,
            mail_auth_param: None,
            xclient: None,
            meta: Default::default(),
            held: None,
        }
    }
}

/// Keeps a header-field value 7-bit and on one line.
fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_proto::EnhancedCode;

    #[test]
    fn renders_a_multipart_report() {
        let failures = vec![(
            "nobody@example.test".to_string(),
            Failure {
                permanent: true,
                status: EnhancedCode(5, 1, 1),
                diagnostic: "smtp; 550 5.1.1 No such user\r\nInjected: x".into(),
                remote: true,
            },
        )];
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let bounce = Bounce {
            hostname: "mx.test",
            original_id: "00062f1c3a9b2e10-9f03a1c7",
            sender: "alice@example.test",
            arrival: now,
            failures: &failures,
            original: b"Subject: hello\r\nMessage-ID: <m@x>\r\n\r\nsecret body\r\n",
            now,
            boundary: "b0und",
        };
        let text = String::from_utf8(bounce.render()).unwrap();
        assert!(text.contains(
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"b0und\""
        ));
        assert!(text.contains("To: <alice@example.test>"));
        assert!(text.contains(
            "Final-Recipient: rfc822; nobody@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(
            text.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user??Injected: x\r\n"),
            "no header injection: {text}"
        );
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nMessage-ID: <m@x>\r\n\r\n--b0und--\r\n"));
        assert!(!text.contains("secret body"), "only headers are returned");
        assert!(text.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000"));
        let meta = bounce.meta("mx.test");
        assert_eq!(meta.mail_from, "");
        assert_eq!(meta.rcpt_to, vec!["alice@example.test"]);
    }
}

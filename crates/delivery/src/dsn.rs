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
//! keeps bounces small, unless the sender asked for the whole message with
//! `RET=FULL` (RFC 3461 §4.3). The sender's other DSN requests are honoured
//! here too: `NOTIFY` decides which recipients are reported at all (no
//! failure report for `NOTIFY=NEVER`; a success report for
//! `NOTIFY=SUCCESS` when no next hop took the request over), and `ENVID`
//! and `ORCPT` come back in the report fields (RFC 3464 §2.2.1, §2.3.1).
//! An internationalised original is returned as `message/global-headers`
//! or `message/global` (RFC 6533). Pure: the time and boundary come in as
//! arguments.

use portcullis_proto::{EnhancedCode, Notify, Ret};
use portcullis_spool::{DsnMeta, MessageMeta};
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::OffsetDateTime;

use crate::message::headers;
use crate::outcome::Failure;

/// What happened to a reported recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    /// Delivered here (a Maildir).
    Delivered,
    /// Handed to a next hop that does not offer DSN.
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// The NOTIFY the sender gave `rcpt`, if any.
fn notify_of(meta: &MessageMeta, rcpt: &str) -> Option<Notify> {
    let params = meta.dsn.as_ref()?.recipient(rcpt)?;
    Notify::parse(params.notify.as_deref()?)
}

/// RFC 3461 §4.1: without NOTIFY a failure is reported; with it, only
/// when it names FAILURE (never for NEVER).
pub fn wants_failure_report(meta: &MessageMeta, rcpt: &str) -> bool {
    notify_of(meta, rcpt).is_none_or(|n| n.failure)
}

/// A success is reported only when the sender asked (NOTIFY=SUCCESS).
pub fn wants_success_report(meta: &MessageMeta, rcpt: &str) -> bool {
    notify_of(meta, rcpt).is_some_and(|n| n.success)
}

/// The status line of a success report entry.
pub fn success_status(action: Action) -> Failure {
    let diagnostic = match action {
        Action::Relayed => "x-portcullis; relayed to a next hop without DSN",
        _ => "x-portcullis; delivered",
    };
    Failure {
        permanent: false,
        status: EnhancedCode(2, 0, 0),
        diagnostic: diagnostic.into(),
        remote: false,
    }
}

/// What goes into one report (a bounce, or a success notification).
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
    /// The recipients reported: what happened, and the status (why, for
    /// a failure).
    pub recipients: &'a [(String, Action, Failure)],
    /// The original message bytes.
    pub original: &'a [u8],
    pub now: OffsetDateTime,
    /// MIME boundary; must not occur in the original's headers.
    pub boundary: &'a str,
    /// The sender's DSN requests (RET, ENVID, ORCPT), if any.
    pub dsn: Option<&'a DsnMeta>,
}

impl Bounce<'_> {
    /// The complete RFC 5322 message.
    pub fn render(&self) -> Vec<u8> {
        let date = self.now.format(&Rfc2822).unwrap_or_default();
        let arrival = self.arrival.format(&Rfc2822).unwrap_or_default();
        let b = self.boundary;
        let failed = self.recipients.iter().any(|(_, a, _)| *a == Action::Failed);
        let (subject, summary) = match failed {
            true => (
                "Undelivered Mail Returned to Sender",
                "Your message could not be delivered to one or more recipients.",
            ),
            false => (
                "Successful Mail Delivery Report",
                "Your message was delivered (or passed on) as you asked to be told.",
            ),
        };
        let mut out = format!(
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
             To: <{to}>\r\n\
             Subject: {subject}\r\n\
             Date: {date}\r\n\
             Message-ID: <{id}.dsn.{stamp}@{host}>\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"{b}\"\r\n\
             \r\n\
             This is a MIME-encapsulated delivery status notification.\r\n\
             \r\n--{b}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             \r\n\
             {summary}\r\n\
             It was received by {host} on {arrival}.\r\n\r\n",
            host = self.hostname,
            to = self.sender,
            id = self.original_id,
            stamp = self.now.unix_timestamp(),
        );
        for (rcpt, _, failure) in self.recipients {
            out.push_str(&format!("<{rcpt}>: {}\r\n", ascii(&failure.diagnostic)));
        }
        out.push_str(&format!(
            "\r\n--{b}\r\nContent-Type: message/{}delivery-status\r\n\r\n\
             Reporting-MTA: dns; {host}\r\n",
            if self.international() { "global-" } else { "" },
            host = self.hostname,
        ));
        if let Some(envid) = self.dsn.and_then(|d| d.envid.as_deref()) {
            out.push_str(&format!("Original-Envelope-Id: {}\r\n", one_line(envid)));
        }
        out.push_str(&format!(
            "X-Portcullis-Queue-ID: {id}\r\nArrival-Date: {arrival}\r\n",
            id = self.original_id,
        ));
        for (rcpt, action, failure) in self.recipients {
            let orcpt = self.dsn.and_then(|d| d.recipient(rcpt)?.orcpt.as_deref());
            if let Some(orcpt) = orcpt {
                out.push_str(&format!("\r\nOriginal-Recipient: {}", one_line(orcpt)));
            }
            let kind = if rcpt.is_ascii() { "rfc822" } else { "utf-8" };
            out.push_str(&format!(
                "\r\nFinal-Recipient: {kind}; {rcpt}\r\n\
                 Action: {}\r\n\
                 Status: {}\r\n",
                action.as_str(),
                failure.status,
            ));
            if *action == Action::Failed || failure.remote {
                out.push_str(&format!(
                    "Diagnostic-Code: {}\r\n",
                    ascii(&failure.diagnostic)
                ));
            }
            out.push_str(&format!("Last-Attempt-Date: {date}\r\n"));
        }
        let full = failed
            && self.dsn.and_then(|d| d.ret.as_deref()).and_then(Ret::parse) == Some(Ret::Full);
        let original = match full {
            true => self.original,
            false => headers(self.original),
        };
        let kind = match (full, original.is_ascii()) {
            (true, true) => "message/rfc822",
            (true, false) => "message/global",
            (false, true) => "text/rfc822-headers",
            (false, false) => "message/global-headers",
        };
        out.push_str(&format!("\r\n--{b}\r\nContent-Type: {kind}\r\n\r\n"));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(original);
        if !bytes.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        bytes
    }

    /// Whether a recipient is internationalised (RFC 6533 report type).
    fn international(&self) -> bool {
        self.recipients.iter().any(|(r, _, _)| !r.is_ascii())
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
            smtputf8: !self.sender.is_ascii(),
            dsn: None,
        }
    }
}

/// Keeps a decoded value (ENVID, ORCPT) on one line; they were refused at
/// submission if they held a control character, so this only guards.
fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
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
            Action::Failed,
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
            recipients: &failures,
            original: b"Subject: hello\r\nMessage-ID: <m@x>\r\n\r\nsecret body\r\n",
            now,
            boundary: "b0und",
            dsn: None,
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

    /// ENVID and ORCPT come back in the report fields; RET=FULL returns
    /// the whole message; a success report says so.
    #[test]
    fn honours_envid_orcpt_ret_and_success() {
        let dsn = DsnMeta {
            ret: Some("FULL".into()),
            envid: Some("QQ314159".into()),
            recipients: vec![portcullis_spool::RcptDsnMeta {
                rcpt: "bob@example.test".into(),
                notify: Some("SUCCESS,FAILURE".into()),
                orcpt: Some("rfc822;bob@example.test".into()),
            }],
        };
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let failure = Failure {
            permanent: true,
            status: EnhancedCode(5, 6, 7),
            diagnostic: "x-portcullis; no SMTPUTF8".into(),
            remote: false,
        };
        let reported = vec![("bob@example.test".to_string(), Action::Failed, failure)];
        let mut bounce = Bounce {
            hostname: "mx.test",
            original_id: "id",
            sender: "alice@example.test",
            arrival: now,
            recipients: &reported,
            original: b"Subject: hello\r\n\r\nthe body\r\n",
            now,
            boundary: "b0und",
            dsn: Some(&dsn),
        };
        let text = String::from_utf8(bounce.render()).unwrap();
        assert!(
            text.contains("Original-Envelope-Id: QQ314159\r\n"),
            "{text}"
        );
        assert!(text.contains("Original-Recipient: rfc822;bob@example.test\r\nFinal-Recipient: rfc822; bob@example.test\r\nAction: failed\r\nStatus: 5.6.7\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: message/rfc822\r\n\r\nSubject: hello\r\n\r\nthe body\r\n"),
            "{text}"
        );
        let delivered = vec![(
            "bob@example.test".to_string(),
            Action::Relayed,
            success_status(Action::Relayed),
        )];
        bounce.recipients = &delivered;
        let text = String::from_utf8(bounce.render()).unwrap();
        assert!(text.contains("Subject: Successful Mail Delivery Report\r\n"));
        assert!(
            text.contains("Action: relayed\r\nStatus: 2.0.0\r\n"),
            "{text}"
        );
        assert!(!text.contains("the body"), "RET applies to failure reports");
    }

    #[test]
    fn notify_decides_what_is_reported() {
        let mut meta = Bounce {
            hostname: "h",
            original_id: "i",
            sender: "s@x",
            arrival: OffsetDateTime::UNIX_EPOCH,
            recipients: &[],
            original: b"",
            now: OffsetDateTime::UNIX_EPOCH,
            boundary: "b",
            dsn: None,
        }
        .meta("h");
        let rcpt = |r: &str, n: &str| portcullis_spool::RcptDsnMeta {
            rcpt: r.into(),
            notify: Some(n.into()),
            orcpt: None,
        };
        meta.dsn = Some(DsnMeta {
            recipients: vec![
                rcpt("never@x", "NEVER"),
                rcpt("ok@x", "SUCCESS"),
                rcpt("all@x", "SUCCESS,FAILURE,DELAY"),
            ],
            ..DsnMeta::default()
        });
        assert!(!wants_failure_report(&meta, "never@x") && !wants_success_report(&meta, "never@x"));
        assert!(!wants_failure_report(&meta, "ok@x") && wants_success_report(&meta, "ok@x"));
        assert!(wants_failure_report(&meta, "all@x") && wants_success_report(&meta, "all@x"));
        assert!(wants_failure_report(&meta, "plain@x") && !wants_success_report(&meta, "plain@x"));
    }
}

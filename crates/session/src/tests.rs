//! Session scenarios in memory: bytes in, replies and effects out.

use std::sync::Arc;

use portcullis_sasl::{Credentials, Mechanism};

use crate::*;

mod clients;
mod esmtp;
mod external;
mod oauth;
mod scram;
mod script;
mod xclient;

struct Harness {
    session: Session,
    out: Vec<u8>,
}

fn tls() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        channel_binding: portcullis_sasl::ChannelBinding {
            tls_exporter: Some(vec![1; 32]),
            tls_server_end_point: Some(vec![2; 32]),
        },
        client_certificate: None,
    }
}

impl Harness {
    fn with(config: SessionConfig, tls: Option<TlsInfo>) -> Self {
        let mut out = Vec::new();
        let conn = ConnectionInfo {
            client_ip: "192.0.2.7".into(),
            session_id: "s1".into(),
            xclient_trusted: false,
        };
        let session = Session::new(Arc::new(config), conn, tls, &mut out);
        Harness { session, out }
    }

    fn plain() -> Self {
        Self::with(SessionConfig::new("mx.test"), None)
    }

    fn over_tls() -> Self {
        Self::with(SessionConfig::new("mx.test"), Some(tls()))
    }

    fn take(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }

    /// Feeds everything; returns the replies and the effect, if any.
    fn send(&mut self, input: &str) -> (String, Option<Effect>) {
        let progress = self.session.feed(input.as_bytes(), &mut self.out);
        (self.take(), progress.effect)
    }

    fn replies(&mut self, input: &str) -> String {
        let (replies, effect) = self.send(input);
        assert!(
            effect.is_none(),
            "unexpected effect {effect:?} after {input:?}"
        );
        replies
    }

    fn codes(&mut self, input: &str) -> Vec<String> {
        self.replies(input)
            .lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| {
                let mut words = l.split(' ');
                let code = words.next().unwrap_or_default();
                match words.next() {
                    Some(w)
                        if w.split('.').count() == 3
                            && w.starts_with(|c: char| c.is_ascii_digit()) =>
                    {
                        format!("{code} {w}")
                    }
                    _ => code.to_string(),
                }
            })
            .collect()
    }

    fn authenticate(&mut self, user: &str) {
        let (_, effect) = self.send("AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
        assert!(matches!(effect, Some(Effect::Authenticate { .. })));
        let _ = self.session.auth_finished(
            AuthOutcome::Accepted {
                authn_id: user.into(),
                authz_id: user.into(),
                credential: None,
            },
            &mut self.out,
        );
        assert!(self.take().starts_with("235 2.7.0"));
    }
}

#[test]
fn greeting_then_ehlo_without_tls_offers_starttls_but_no_auth() {
    let mut h = Harness::plain();
    assert!(h.take().starts_with("220 mx.test ESMTP"));
    let ehlo = h.replies("EHLO client\r\n");
    assert!(ehlo.contains("250-STARTTLS\r\n"));
    assert!(ehlo.contains("250-PIPELINING\r\n"));
    assert!(ehlo.contains("250-ENHANCEDSTATUSCODES\r\n"));
    assert!(!ehlo.contains("AUTH"));
}

/// The whole EHLO reply, byte for byte: before TLS, and after (when
/// STARTTLS goes and AUTH comes).
#[test]
fn the_whole_ehlo_reply() {
    let mut h = Harness::plain();
    h.take();
    assert_eq!(
        h.replies("EHLO client\r\n"),
        "250-mx.test greets client\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n\
         250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
         250-DSN\r\n250-STARTTLS\r\n250 HELP\r\n"
    );
    let mut h = Harness::with(SessionConfig::new("mx.test"), Some(tls()));
    h.take();
    assert_eq!(
        h.replies("EHLO client\r\n"),
        "250-mx.test greets client\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n\
         250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
         250-DSN\r\n250-AUTH PLAIN LOGIN\r\n250 HELP\r\n"
    );
}

#[test]
fn auth_before_tls_is_refused_with_538_and_nothing_decoded() {
    let mut h = Harness::plain();
    h.take();
    assert_eq!(
        h.codes("EHLO c\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\n"),
        ["250", "538 5.7.11"]
    );
}

#[test]
fn insecure_auth_when_allowed() {
    let mut config = SessionConfig::new("mx.test");
    config.allow_insecure_auth = true;
    let mut h = Harness::with(config, None);
    h.take();
    assert!(h.replies("EHLO c\r\n").contains("250-AUTH PLAIN LOGIN\r\n"));
}

#[test]
fn mail_before_auth_needs_tls_then_auth() {
    let mut h = Harness::plain();
    h.take();
    assert_eq!(
        h.codes("EHLO c\r\nMAIL FROM:<a@b>\r\n"),
        ["250", "530 5.7.0"]
    );
    let mut h = Harness::over_tls();
    h.take();
    let replies = h.replies("EHLO c\r\nMAIL FROM:<a@b>\r\n");
    assert!(
        replies.ends_with("530 5.7.0 Authentication required\r\n"),
        "{replies}"
    );
}

#[test]
fn starttls_discards_pipelined_input_and_forgets_ehlo() {
    let mut h = Harness::plain();
    h.take();
    h.replies("EHLO c\r\n");
    let input = "STARTTLS\r\nMAIL FROM:<injected@x>\r\n";
    let progress = h.session.feed(input.as_bytes(), &mut h.out);
    assert_eq!(progress.consumed, input.len());
    assert!(matches!(progress.effect, Some(Effect::StartTls)));
    assert_eq!(h.take(), "220 2.0.0 Ready to start TLS\r\n");
    h.session.tls_established(tls());
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["503 5.5.1"]);
    let ehlo = h.replies("EHLO c\r\n");
    assert!(!ehlo.contains("STARTTLS"));
    assert!(ehlo.contains("AUTH PLAIN LOGIN"));
    assert_eq!(h.codes("STARTTLS\r\n"), ["503 5.5.1"]);
}

#[test]
fn starttls_forgets_an_identity_proved_in_clear() {
    let mut config = SessionConfig::new("mx.test");
    config.allow_insecure_auth = true;
    let mut h = Harness::with(config, None);
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("alice");
    h.session
        .restrict_senders(crate::SenderRule::new(["alice@example.com"]));
    let (_, effect) = h.send("STARTTLS\r\n");
    assert!(matches!(effect, Some(Effect::StartTls)));
    h.take();
    h.session.tls_established(tls());
    assert!(h.session.identity().is_none(), "RFC 3207 §4.2");
    h.replies("EHLO c\r\n");
    assert_eq!(h.codes("MAIL FROM:<alice@example.com>\r\n"), ["530 5.7.0"]);
    h.authenticate("bob");
    assert_eq!(
        h.codes("MAIL FROM:<bob@example.com>\r\n"),
        ["250 2.1.0"],
        "alice's sender rule is gone with her identity"
    );
}

/// The name the driver is asked to check, for `AUTH PLAIN` as `user`.
fn authcid_sent(config: SessionConfig, user: &str) -> String {
    use base64::Engine;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    let response = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0secret"));
    let (_, effect) = h.send(&format!("AUTH PLAIN {response}\r\n"));
    let Some(Effect::Authenticate { credentials, .. }) = effect else {
        panic!("{effect:?}");
    };
    credentials.authcid().to_string()
}

#[test]
fn user_names_are_canonical_before_the_driver_sees_them() {
    for spelt in ["alice", "Alice", "ALICE", "ａｌｉｃｅ"] {
        assert_eq!(authcid_sent(SessionConfig::new("mx.test"), spelt), "alice");
    }
    let mut exact = SessionConfig::new("mx.test");
    exact.username_profile = portcullis_sasl::UsernameProfile::Exact;
    assert_eq!(authcid_sent(exact, "ALICE"), "ALICE");
    // A name the profile refuses goes on as sent (it names no account).
    assert_eq!(authcid_sent(SessionConfig::new("mx.test"), "a b"), "a b");
}

#[test]
fn an_app_password_narrows_the_senders_to_its_own() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    let (_, effect) = h.send("AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    assert!(matches!(effect, Some(Effect::Authenticate { .. })));
    let credential = crate::CredentialTag {
        id: "abc".into(),
        label: "script".into(),
        senders: vec!["alice@example.com".into(), "@example.org".into()],
    };
    let _ = h.session.auth_finished(
        AuthOutcome::Accepted {
            authn_id: "alice".into(),
            authz_id: "alice".into(),
            credential: Some(credential.clone()),
        },
        &mut h.out,
    );
    h.take();
    assert_eq!(
        h.session.identity().and_then(|i| i.credential.as_ref()),
        Some(&credential)
    );
    assert_eq!(h.codes("MAIL FROM:<bob@example.com>\r\n"), ["553 5.7.1"]);
    assert_eq!(h.codes("MAIL FROM:<any@example.org>\r\n"), ["250 2.1.0"]);
    h.codes("RSET\r\n");
    assert_eq!(h.codes("MAIL FROM:<alice@example.com>\r\n"), ["250 2.1.0"]);
}

#[test]
fn plain_with_initial_response_and_pipelined_transaction() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    let input =
        "AUTH PLAIN AHVzZXIAcGFzcw==\r\nMAIL FROM:<u@x> AUTH=<>\r\nRCPT TO:<r@y>\r\nDATA\r\n";
    let progress = h.session.feed(input.as_bytes(), &mut h.out);
    let Some(Effect::Authenticate {
        mechanism,
        credentials,
    }) = progress.effect
    else {
        panic!("{progress:?}")
    };
    assert_eq!(mechanism, Mechanism::Plain);
    assert_eq!(credentials.authcid(), "user");
    let _ = h.session.auth_finished(
        AuthOutcome::Accepted {
            authn_id: "user".into(),
            authz_id: "user".into(),
            credential: None,
        },
        &mut h.out,
    );
    let rest = &input[progress.consumed..];
    let codes = h.codes(rest);
    assert_eq!(codes, ["235 2.7.0", "250 2.1.0", "250 2.1.5", "354"]);
    let (_, effect) = h.send("Subject: hi\r\n\r\nbody\r\n.\r\n");
    let Some(Effect::Spool(message)) = effect else {
        panic!()
    };
    assert_eq!(message.protocol, "ESMTPSA");
    assert_eq!(message.data, b"Subject: hi\r\n\r\nbody\r\n");
    assert_eq!(message.envelope.rcpt_to, ["r@y"]);
    assert_eq!(message.envelope.params.auth.as_deref(), Some("<>"));
    assert_eq!(message.identity.as_ref().unwrap().authn_id, "user");
    h.session
        .spool_finished(SpoolOutcome::Stored { id: "abc".into() }, &mut h.out);
    assert_eq!(h.take(), "250 2.0.0 OK queued as abc\r\n");
}

#[test]
fn login_continuation_path() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    assert_eq!(h.replies("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.replies("dXNlcg==\r\n"), "334 UGFzc3dvcmQ6\r\n");
    let (_, effect) = h.send("cGFzcw==\r\n");
    match effect {
        Some(Effect::Authenticate {
            credentials: Credentials::Password {
                authcid, password, ..
            },
            ..
        }) => {
            assert_eq!(authcid, "user");
            assert!(password.ct_eq(b"pass"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn plain_empty_initial_response_then_continuation() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    // `=` is an empty initial response: malformed for PLAIN.
    assert_eq!(h.codes("AUTH PLAIN =\r\n"), ["501 5.5.2"]);
    assert_eq!(h.replies("AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(h.codes("*\r\n"), ["501 5.7.0"]);
    assert_eq!(h.replies("AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(h.codes("!!!\r\n"), ["501 5.5.2"]);
}

#[test]
fn auth_error_replies() {
    let mut h = Harness::over_tls();
    h.take();
    assert_eq!(h.codes("AUTH PLAIN\r\n"), ["503 5.5.1"]);
    h.replies("EHLO c\r\n");
    assert_eq!(h.codes("AUTH GSSAPI\r\n"), ["504 5.5.4"]);
    assert_eq!(h.codes("AUTH CRAM-MD5\r\n"), ["504 5.5.4"]);
    assert_eq!(h.codes("AUTH PLAIN not-base64!\r\n"), ["501 5.5.2"]);
}

#[test]
fn auth_twice_and_inside_a_transaction() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("user");
    assert_eq!(h.codes("AUTH PLAIN\r\n"), ["503 5.5.1"]);
    let mut config = SessionConfig::new("mx.test");
    config.auth = AuthPolicy::Required;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("u");
    h.replies("MAIL FROM:<a@b>\r\n");
    h.session.identity = None;
    assert_eq!(h.codes("AUTH PLAIN\r\n"), ["503 5.5.1"]);
}

#[test]
fn rejected_and_deferred_auth() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    h.send("AUTH PLAIN AHUAcA==\r\n");
    assert_eq!(
        h.session.auth_finished(
            AuthOutcome::Rejected {
                reply: None,
                challenge: None
            },
            &mut h.out
        ),
        Flow::Continue
    );
    assert_eq!(h.take(), "535 5.7.8 Authentication credentials invalid\r\n");
    h.send("AUTH PLAIN AHUAcA==\r\n");
    let _ = h
        .session
        .auth_finished(AuthOutcome::TemporaryFailure { reply: None }, &mut h.out);
    assert!(h.take().starts_with("454 4.7.0"));
    assert!(h.session.identity().is_none());
}

#[test]
fn third_auth_failure_closes_with_421() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    for _ in 0..2 {
        h.send("AUTH PLAIN AHUAcA==\r\n");
        assert_eq!(
            h.session.auth_finished(
                AuthOutcome::Rejected {
                    reply: None,
                    challenge: None
                },
                &mut h.out
            ),
            Flow::Continue
        );
    }
    h.send("AUTH PLAIN AHUAcA==\r\n");
    let effect = h.session.auth_finished(
        AuthOutcome::Rejected {
            reply: None,
            challenge: None,
        },
        &mut h.out,
    );
    assert_eq!(effect, Flow::Close);
    assert!(h
        .take()
        .ends_with("421 4.7.0 Too many failed authentication attempts, closing connection\r\n"));
    assert!(h.session.is_closed());
}

#[test]
fn cram_md5_challenge_is_a_unique_msg_id_and_refuses_initial_response() {
    let mut config = SessionConfig::new("mx.test");
    config.mechanisms.push(Mechanism::CramMd5);
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    assert_eq!(h.codes("AUTH CRAM-MD5 dGlt\r\n"), ["501 5.5.4"]);
    let challenge = h.replies("AUTH CRAM-MD5\r\n");
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(challenge.trim_end().strip_prefix("334 ").unwrap())
        .unwrap();
    assert_eq!(decoded, b"<s1.2@mx.test>");
}

#[test]
fn unauthenticated_command_limit() {
    let mut h = Harness::over_tls();
    h.take();
    let replies = h.replies(&"NOOP\r\n".repeat(10));
    assert_eq!(replies.lines().count(), 10);
    let (replies, effect) = h.send("NOOP\r\n");
    assert!(replies.starts_with("421 4.7.0"));
    assert!(matches!(effect, Some(Effect::Close)));
}

#[test]
fn auth_disabled_listener_takes_mail_without_auth() {
    let mut config = SessionConfig::new("mx.test");
    config.auth = AuthPolicy::Disabled;
    config.starttls = false;
    let mut h = Harness::with(config, None);
    h.take();
    let ehlo = h.replies("EHLO c\r\n");
    assert!(!ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"));
    assert_eq!(h.codes("AUTH PLAIN\r\n"), ["502 5.5.1"]);
    assert_eq!(h.codes("STARTTLS\r\n"), ["454 4.7.0"]);
    assert_eq!(
        h.codes("MAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n"),
        ["250 2.1.0", "250 2.1.5", "354"]
    );
    let (_, effect) = h.send(".\r\n");
    let Some(Effect::Spool(message)) = effect else {
        panic!()
    };
    assert_eq!(message.protocol, "ESMTP");
}

#[test]
fn transaction_sequence_errors() {
    let mut h = Harness::over_tls();
    h.take();
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["503 5.5.1"]);
    h.replies("EHLO c\r\n");
    h.authenticate("u");
    assert_eq!(h.codes("RCPT TO:<a@b>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes("DATA\r\n"), ["503 5.5.1"]);
    assert_eq!(
        h.codes("MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n"),
        ["250 2.1.0", "503 5.5.1"]
    );
    assert_eq!(h.codes("DATA\r\n"), ["503 5.5.1"]);
    assert_eq!(
        h.codes("RSET\r\nRCPT TO:<a@b>\r\n"),
        ["250 2.0.0", "503 5.5.1"]
    );
}

/// A session over TLS, logged in, that takes messages of at most 10 bytes.
fn logged_in_with_ten_byte_limit() -> Harness {
    let mut config = SessionConfig::new("mx.test");
    config.max_message_size = 10;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("u");
    h
}

#[test]
fn size_limits() {
    let mut h = logged_in_with_ten_byte_limit();
    assert_eq!(h.codes("MAIL FROM:<a@b> SIZE=11\r\n"), ["552 5.3.4"]);
    assert_eq!(
        h.codes("MAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        ["250 2.1.0", "250 2.1.5", "354"]
    );
    assert_eq!(
        h.codes("0123456789abcdef\r\n.\r\nNOOP\r\n"),
        ["552 5.3.4", "250 2.0.0"]
    );
}

/// What the driver tells the spool's writer to wait for: a DATA body to
/// be stored, not one read only to be refused, nor a BDAT chunk.
#[test]
fn only_a_body_to_be_stored_is_a_message_coming_in() {
    let mut h = logged_in_with_ten_byte_limit();
    assert!(!h.session.receiving_message());
    h.codes("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    assert!(h.session.receiving_message());
    h.send("0123");
    assert!(h.session.receiving_message(), "under the limit so far");
    h.send("456789abcdef");
    assert!(h.session.receiving_data(), "still read to its end");
    assert!(!h.session.receiving_message(), "too large: never stored");
    assert_eq!(h.codes("\r\n.\r\n"), ["552 5.3.4"]);
    assert!(!h.session.receiving_message());
    h.codes("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 8\r\n");
    assert!(h.session.receiving_data());
    assert!(!h.session.receiving_message(), "a chunk");
}

#[test]
fn overlong_lines_get_500_and_the_session_goes_on() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    let long = "X".repeat(70_000);
    assert_eq!(
        h.codes(&format!("{long}\r\nNOOP\r\n")),
        ["500 5.5.6", "250 2.0.0"]
    );
    // A never-ending line: answered once, then swallowed.
    assert_eq!(h.codes(&long), ["500 5.5.6"]);
    assert!(h.codes(&long).is_empty());
    assert_eq!(h.codes("tail\r\nNOOP\r\n"), ["250 2.0.0"]);
    let noop = format!("NOOP {}\r\n", "x".repeat(5000));
    assert_eq!(h.codes(&noop), ["500 5.5.6"]);
}

#[test]
fn long_auth_initial_response_up_to_12288_octets() {
    let mut h = Harness::over_tls();
    h.take();
    h.replies("EHLO c\r\n");
    use base64::Engine;
    let msg = format!("\0{}\0{}", "u".repeat(255), "p".repeat(255));
    let ir = base64::engine::general_purpose::STANDARD.encode(msg);
    let (_, effect) = h.send(&format!("AUTH PLAIN {ir}\r\n"));
    assert!(matches!(effect, Some(Effect::Authenticate { .. })));
}

#[test]
fn misc_commands() {
    let mut h = Harness::over_tls();
    h.take();
    assert_eq!(h.codes("HELO c\r\n"), ["250"]);
    assert_eq!(h.codes("VRFY x\r\n"), ["252 2.5.0"]);
    assert_eq!(h.codes("HELP\r\n"), ["214 2.0.0"]);
    assert_eq!(h.codes("EXPN x\r\n"), ["502 5.5.1"]);
    assert_eq!(h.codes("BOGUS\r\n"), ["500 5.5.1"]);
    assert_eq!(h.codes("MAIL FROM:<a@b> FOO=1\r\n"), ["555 5.5.4"]);
    let (replies, effect) = h.send("QUIT\r\nNOOP\r\n");
    assert_eq!(replies, "221 2.0.0 Bye\r\n");
    assert!(matches!(effect, Some(Effect::Close)));
}

#[test]
fn protocol_names() {
    let mut h = Harness::plain();
    h.replies("HELO c\r\n");
    assert_eq!(h.session.protocol(), "SMTP");
    let mut h = Harness::over_tls();
    h.replies("EHLO c\r\n");
    assert_eq!(h.session.protocol(), "ESMTPS");
    h.authenticate("u");
    assert_eq!(h.session.protocol(), "ESMTPSA");
}

mod limits;
mod optional_auth;
mod senders;

#[test]
fn mail_and_each_rcpt_wait_for_the_sending_check_when_asked() {
    let mut config = SessionConfig::new("mx.test");
    config.check_sending = true;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    h.authenticate("alice");
    // Pipelined: MAIL stops the group; nothing after it is read yet.
    let input = "MAIL FROM:<a@x> SIZE=100\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\n";
    let progress = h.session.feed(input.as_bytes(), &mut h.out);
    assert!(matches!(
        progress.effect,
        Some(Effect::CheckSending(SendingCheck::Mail { size: Some(100) }))
    ));
    assert!(h.session.in_transaction());
    h.session.sending_checked(None, &mut h.out);
    assert!(h.take().starts_with("250 2.1.0"));
    let rest = &input[progress.consumed..];
    let progress = h.session.feed(rest.as_bytes(), &mut h.out);
    assert!(matches!(
        progress.effect,
        Some(Effect::CheckSending(SendingCheck::Rcpt { n: 1 }))
    ));
    h.session.sending_checked(None, &mut h.out);
    let rest = &rest[progress.consumed..];
    let progress = h.session.feed(rest.as_bytes(), &mut h.out);
    assert!(matches!(
        progress.effect,
        Some(Effect::CheckSending(SendingCheck::Rcpt { n: 2 }))
    ));
    let limit = portcullis_proto::Reply::sending_limit_reached("user alice recipients 1/h");
    h.session.sending_checked(Some(limit), &mut h.out);
    let replies = h.take();
    assert!(replies.starts_with("250 2.1.5"), "{replies}");
    assert!(
        replies.contains("451 4.7.1 Sending limit reached (user alice recipients 1/h)"),
        "{replies}"
    );
    // A refused MAIL leaves no transaction.
    h.replies("RSET\r\n");
    let (_, effect) = h.send("MAIL FROM:<a@x>\r\n");
    assert!(matches!(effect, Some(Effect::CheckSending(_))));
    h.session.sending_checked(
        Some(portcullis_proto::Reply::sending_deferred()),
        &mut h.out,
    );
    assert!(h.take().starts_with("451 4.7.1"));
    assert!(!h.session.in_transaction());
    assert_eq!(h.codes("RCPT TO:<b@x>\r\n"), ["503 5.5.1"]);
}

#[test]
fn an_unauthenticated_client_is_never_asked_about() {
    let mut config = SessionConfig::new("mx.test");
    config.check_sending = true;
    config.auth = AuthPolicy::Optional;
    let mut h = Harness::with(config, Some(tls()));
    h.take();
    h.replies("EHLO c\r\n");
    assert_eq!(h.codes("MAIL FROM:<a@x>\r\n"), ["250 2.1.0"]);
}

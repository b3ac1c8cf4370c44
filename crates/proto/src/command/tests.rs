use super::*;

fn ok(line: &str) -> Command {
    parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn err(line: &str) -> CommandError {
    parse(line.as_bytes()).expect_err(line)
}

fn mailbox(s: &str) -> Path {
    Path::Mailbox(s.to_string())
}

#[test]
fn verbs_are_case_insensitive() {
    assert_eq!(
        ok("ehlo client.example"),
        Command::Ehlo("client.example".into())
    );
    assert_eq!(ok("HeLo x"), Command::Helo("x".into()));
    assert_eq!(ok("starttls"), Command::StartTls);
    assert_eq!(ok("quit"), Command::Quit);
    assert_eq!(ok("NOOP anything"), Command::Noop);
}

#[test]
fn simple_commands_refuse_arguments() {
    assert_eq!(err("DATA now"), CommandError::Syntax("DATA"));
    assert_eq!(err("STARTTLS x"), CommandError::Syntax("STARTTLS"));
    assert_eq!(err("EHLO"), CommandError::Syntax("EHLO domain"));
}

#[test]
fn unknown_and_unimplemented() {
    assert_eq!(err("FOO"), CommandError::UnknownCommand);
    assert_eq!(err(""), CommandError::UnknownCommand);
    assert_eq!(err("\u{ff}"), CommandError::UnknownCommand);
    assert_eq!(ok("EXPN list"), Command::NotImplemented);
}

/// The verb is matched as the whole first word, whatever its length: a
/// known verb with letters added, or a word longer than any verb, is not
/// taken for one.
#[test]
fn a_verb_is_its_whole_first_word() {
    assert!(matches!(ok("xClient NAME=x"), Command::Xclient(_)));
    assert_eq!(err("STARTTLSX"), CommandError::UnknownCommand);
    assert_eq!(err("STARTTLSX x"), CommandError::UnknownCommand);
    assert_eq!(err("QUITQUITQUIT"), CommandError::UnknownCommand);
    assert_eq!(err("MAILFROM:<a@b>"), CommandError::UnknownCommand);
    assert_eq!(err("DAT"), CommandError::UnknownCommand);
    assert_eq!(err("dätä"), CommandError::UnknownCommand);
    assert_eq!(err(" QUIT"), CommandError::UnknownCommand);
}

#[test]
fn auth_with_and_without_initial_response() {
    assert_eq!(
        ok("AUTH plain AHUAcA=="),
        Command::Auth {
            mechanism: "PLAIN".into(),
            initial_response: Some(b"AHUAcA==".to_vec())
        }
    );
    assert_eq!(
        ok("AUTH LOGIN"),
        Command::Auth {
            mechanism: "LOGIN".into(),
            initial_response: None
        }
    );
    assert_eq!(
        err("AUTH"),
        CommandError::Syntax("AUTH mechanism [initial-response]")
    );
    assert!(matches!(err("AUTH PLAIN a b"), CommandError::Syntax(_)));
}

#[test]
fn long_auth_lines_are_allowed_but_not_other_commands() {
    let ir = "A".repeat(10_000);
    assert!(matches!(
        ok(&format!("AUTH PLAIN {ir}")),
        Command::Auth { .. }
    ));
    assert_eq!(err(&format!("NOOP {ir}")), CommandError::TooLong);
}

#[test]
fn mail_from_forms() {
    assert_eq!(
        ok("MAIL FROM:<a@b.example>"),
        Command::Mail(mailbox("a@b.example"), MailParams::default())
    );
    assert_eq!(
        ok("mail from: <a@b>"),
        Command::Mail(mailbox("a@b"), MailParams::default())
    );
    assert_eq!(
        ok("MAIL FROM:<>"),
        Command::Mail(Path::Null, MailParams::default())
    );
    assert_eq!(
        ok("MAIL FROM:<@relay,@r2:u@d>"),
        Command::Mail(mailbox("u@d"), MailParams::default())
    );
}

#[test]
fn mail_parameters() {
    let Command::Mail(_, p) = ok("MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME AUTH=<>") else {
        panic!()
    };
    assert_eq!(
        p,
        MailParams {
            size: Some(1000),
            body: Body::EightBitMime,
            auth: Some("<>".into()),
            ..MailParams::default()
        }
    );
    let Command::Mail(_, p) = ok("MAIL FROM:<a@b> auth=user+40example.com") else {
        panic!()
    };
    assert_eq!(p.auth.as_deref(), Some("user@example.com"));
    assert_eq!(
        err("MAIL FROM:<a@b> SIZE=x"),
        CommandError::Syntax("SIZE=<octets>")
    );
    assert_eq!(
        err("MAIL FROM:<a@b> BODY=BINARYMIME"),
        CommandError::UnsupportedParameter("BODY".into())
    );
}

#[test]
fn bad_paths() {
    assert!(matches!(err("MAIL FROM:a@b"), CommandError::Syntax(_)));
    assert!(matches!(err("MAIL TO:<a@b>"), CommandError::Syntax(_)));
    assert_eq!(err("MAIL FROM:<a b@c>"), CommandError::InvalidAddress);
    assert_eq!(err("MAIL FROM:<@b>"), CommandError::InvalidAddress);
    assert_eq!(err("RCPT TO:<>"), CommandError::InvalidAddress);
    assert_eq!(err("RCPT TO:<a@>"), CommandError::InvalidAddress);
    let long = format!("RCPT TO:<{}@b>", "x".repeat(300));
    assert_eq!(err(&long), CommandError::InvalidAddress);
}

#[test]
fn rcpt_to() {
    assert_eq!(
        ok("RCPT TO:<postmaster>"),
        Command::Rcpt(mailbox("postmaster"), RcptParams::default())
    );
    assert_eq!(
        ok("rcpt to: <x@y>"),
        Command::Rcpt(mailbox("x@y"), RcptParams::default())
    );
    assert_eq!(
        err("RCPT TO:<x@y> FOO=1"),
        CommandError::UnsupportedParameter("FOO".into())
    );
}

#[test]
fn smtputf8_and_utf8_addresses() {
    let Command::Mail(from, p) = ok("MAIL FROM:<j\u{fc}rgen@b\u{fc}cher.example> SMTPUTF8") else {
        panic!()
    };
    assert!(p.smtputf8);
    assert_eq!(from, mailbox("j\u{fc}rgen@b\u{fc}cher.example"));
    assert_eq!(
        ok("RCPT TO:<\u{7528}\u{6237}@\u{4f8b}\u{5b50}.example>"),
        Command::Rcpt(
            mailbox("\u{7528}\u{6237}@\u{4f8b}\u{5b50}.example"),
            RcptParams::default()
        )
    );
    assert!(matches!(
        err("MAIL FROM:<a@b> SMTPUTF8=yes"),
        CommandError::Syntax(_)
    ));
    assert!(matches!(
        err("MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8"),
        CommandError::Syntax(_)
    ));
}

#[test]
fn dsn_parameters() {
    let Command::Mail(_, p) = ok("MAIL FROM:<a@b> RET=hdrs ENVID=QQ+2B314") else {
        panic!()
    };
    assert_eq!(p.ret, Some(Ret::Hdrs));
    assert_eq!(p.envid.as_deref(), Some("QQ+314"));
    let Command::Rcpt(_, p) = ok("RCPT TO:<x@y> NOTIFY=SUCCESS,failure ORCPT=rfc822;x+40y") else {
        panic!()
    };
    assert_eq!(
        p.notify,
        Some(Notify {
            success: true,
            failure: true,
            delay: false
        })
    );
    assert_eq!(p.orcpt.as_deref(), Some("rfc822;x@y"));
    let Command::Rcpt(_, p) = ok("RCPT TO:<x@y> NOTIFY=NEVER") else {
        panic!()
    };
    assert_eq!(p.notify, Some(Notify::NEVER));
    assert_eq!(Notify::NEVER.to_value(), "NEVER");
    for bad in [
        "RCPT TO:<x@y> NOTIFY=NEVER,SUCCESS",
        "RCPT TO:<x@y> NOTIFY=SUCCESS,SUCCESS",
        "RCPT TO:<x@y> NOTIFY=",
        "RCPT TO:<x@y> NOTIFY=DELAY NOTIFY=DELAY",
        "RCPT TO:<x@y> ORCPT=x@y",
        "RCPT TO:<x@y> ORCPT=rfc822;",
        "RCPT TO:<x@y> ORCPT=rfc822;a+0Db",
        "RCPT TO:<x@y> ORCPT=rfc822;a+zz",
        "MAIL FROM:<a@b> RET=BODY",
        "MAIL FROM:<a@b> RET=FULL RET=HDRS",
        "MAIL FROM:<a@b> ENVID=a+0A",
        "MAIL FROM:<a@b> ENVID=",
    ] {
        assert!(matches!(err(bad), CommandError::Syntax(_)), "{bad}");
    }
    let long = format!("MAIL FROM:<a@b> ENVID={}", "e".repeat(MAX_ENVID_LEN + 1));
    assert!(matches!(err(&long), CommandError::Syntax(_)));
    let orcpt = format!("RCPT TO:<x@y> ORCPT=rfc822;{}", "o".repeat(MAX_ORCPT_LEN));
    assert!(matches!(err(&orcpt), CommandError::Syntax(_)));
}

#[test]
fn bdat() {
    assert_eq!(
        ok("BDAT 0 LAST"),
        Command::Bdat {
            size: 0,
            last: true
        }
    );
    assert_eq!(
        ok("bdat 1000"),
        Command::Bdat {
            size: 1000,
            last: false
        }
    );
    assert_eq!(
        ok("BDAT 12 last"),
        Command::Bdat {
            size: 12,
            last: true
        }
    );
    for bad in [
        "BDAT",
        "BDAT -1",
        "BDAT 1 FIRST",
        "BDAT x",
        "BDAT 1 LAST x",
        "BDAT 99999999999999999999999",
    ] {
        assert!(matches!(err(bad), CommandError::Syntax(_)), "{bad}");
    }
}

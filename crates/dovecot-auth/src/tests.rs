use super::*;

fn ready() -> Connection {
    let mut c = Connection::new(Limits::default());
    assert_eq!(c.feed(b"VERSION\t1\t0"), Ok(Request::Handshake));
    assert_eq!(c.feed(b"CPID\t4242"), Ok(Request::Handshake));
    c
}

fn auth(c: &mut Connection, line: &str) -> AuthRequest {
    match c.feed(line.as_bytes()) {
        Ok(Request::Auth(r)) => r,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn greeting_lists_mechanisms_with_flags_and_ends_with_done() {
    let mechs = [
        Mechanism {
            name: "PLAIN".into(),
            flags: MechanismFlags {
                plaintext: true,
                ..Default::default()
            },
        },
        Mechanism {
            name: "CRAM-MD5".into(),
            flags: MechanismFlags {
                dictionary: true,
                active: true,
                ..Default::default()
            },
        },
    ];
    let ids = ServerIds {
        pid: 7,
        connection: 3,
        cookie: [0xab; 16],
    };
    let g = Connection::greeting(&mechs, &ids);
    assert_eq!(
        g,
        "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tCRAM-MD5\tdictionary\tactive\n\
         SPID\t7\nCUID\t3\nCOOKIE\tabababababababababababababababab\nDONE\n"
    );
}

#[test]
fn postfix_request_is_parsed_with_its_connection_facts() {
    let mut c = ready();
    assert_eq!(c.client_pid(), Some(4242));
    // As Postfix's xsasl_dovecot_server sends it.
    let r = auth(
        &mut c,
        "AUTH\t1\tplain\tservice=smtp\tnologin\tlip=192.0.2.1\trip=2001:db8::5\tsecured\tresp=AGFsaWNlAHB3",
    );
    assert_eq!(r.id, 1);
    assert_eq!(r.mechanism, "PLAIN");
    assert_eq!(r.service, "smtp");
    assert_eq!(r.local_ip, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(r.remote_ip, Some("2001:db8::5".parse().unwrap()));
    assert!(r.secured);
    assert!(!r.valid_client_cert);
    assert_eq!(r.initial_response.as_deref(), Some(&b"\0alice\0pw"[..]));
    assert_eq!(c.in_flight(), 1);
    assert_eq!(c.ok(1, "alice"), "OK\t1\tuser=alice\n");
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn empty_resp_is_an_empty_initial_response_and_no_resp_is_none() {
    let mut c = ready();
    let r = auth(&mut c, "AUTH\t1\tPLAIN\tservice=smtp\tresp=");
    assert_eq!(r.initial_response, Some(vec![]));
    let r = auth(&mut c, "AUTH\t2\tLOGIN\tservice=smtp");
    assert_eq!(r.initial_response, None);
}

#[test]
fn challenge_and_continuation_round_trip() {
    let mut c = ready();
    auth(&mut c, "AUTH\t5\tLOGIN\tservice=smtp");
    assert_eq!(c.cont(5, b"Username:"), "CONT\t5\tVXNlcm5hbWU6\n");
    assert_eq!(
        c.feed(b"CONT\t5\tYWxpY2U="),
        Ok(Request::Continue {
            id: 5,
            response: b"alice".to_vec()
        })
    );
    // A second CONT before we asked again is out of turn.
    assert_eq!(
        c.feed(b"CONT\t5\tYWxpY2U="),
        Err(ProtocolError::UnexpectedContinue(5))
    );
}

#[test]
fn requests_are_multiplexed_and_answered_in_any_order() {
    let mut c = ready();
    auth(&mut c, "AUTH\t1\tPLAIN\tservice=smtp\tresp=AGEAYg==");
    auth(&mut c, "AUTH\t2\tPLAIN\tservice=smtp\tresp=AGEAYg==");
    assert_eq!(c.in_flight(), 2);
    assert_eq!(
        c.fail(
            2,
            &Failure {
                reason: Some("bad\tpass\nword".into()),
                temporary: false,
                user: Some("a".into())
            }
        ),
        "FAIL\t2\tuser=a\treason=bad\u{1}tpass\u{1}nword\n"
    );
    assert_eq!(c.ok(1, "a"), "OK\t1\tuser=a\n");
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn an_id_in_flight_cannot_be_reused() {
    let mut c = ready();
    auth(&mut c, "AUTH\t1\tPLAIN\tservice=smtp");
    assert_eq!(
        c.feed(b"AUTH\t1\tPLAIN\tservice=smtp"),
        Err(ProtocolError::IdInUse(1))
    );
}

#[test]
fn temporary_failure_says_temp() {
    let mut c = ready();
    auth(&mut c, "AUTH\t9\tPLAIN\tservice=smtp");
    let line = c.fail(
        9,
        &Failure {
            temporary: true,
            ..Default::default()
        },
    );
    assert_eq!(line, "FAIL\t9\ttemp\n");
}

#[test]
fn nothing_before_version_and_only_major_1() {
    let mut c = Connection::new(Limits::default());
    assert_eq!(
        c.feed(b"AUTH\t1\tPLAIN\tservice=smtp"),
        Err(ProtocolError::NoVersion)
    );
    let mut c = Connection::new(Limits::default());
    assert_eq!(
        c.feed(b"VERSION\t2\t0"),
        Err(ProtocolError::UnsupportedVersion(2))
    );
}

#[test]
fn per_request_errors_name_the_id_and_keep_the_connection() {
    let mut c = ready();
    for (line, reason) in [
        ("AUTH\t3\tPLAIN\tservice=smtp\trip=not-an-ip", "bad rip"),
        (
            "AUTH\t3\tPLAIN\tservice=smtp\tresp=***",
            "response is not base64",
        ),
        ("AUTH\t3\tPLAIN", "no service"),
        ("AUTH\t3\tPL AIN\tservice=smtp", "bad mechanism name"),
    ] {
        let err = c.feed(line.as_bytes()).unwrap_err();
        assert_eq!(err, ProtocolError::BadRequest { id: 3, reason }, "{line}");
        assert_eq!(err.failed_request(), Some(3));
    }
    assert_eq!(c.in_flight(), 0);
    // The connection still works.
    auth(&mut c, "AUTH\t3\tPLAIN\tservice=smtp");
}

#[test]
fn the_number_of_requests_in_flight_is_bounded() {
    let mut c = Connection::new(Limits {
        max_in_flight: 2,
        max_response: 100,
    });
    c.feed(b"VERSION\t1\t0").unwrap();
    auth(&mut c, "AUTH\t1\tPLAIN\tservice=smtp");
    auth(&mut c, "AUTH\t2\tPLAIN\tservice=smtp");
    assert_eq!(
        c.feed(b"AUTH\t3\tPLAIN\tservice=smtp"),
        Err(ProtocolError::BadRequest {
            id: 3,
            reason: "too many requests in flight"
        })
    );
    let long = format!("AUTH\t4\tPLAIN\tservice=smtp\tresp={}", "A".repeat(200));
    c.ok(1, "x");
    assert_eq!(
        c.feed(long.as_bytes()),
        Err(ProtocolError::BadRequest {
            id: 4,
            reason: "response too long"
        })
    );
}

#[test]
fn cancel_ends_a_request_and_unknown_commands_are_errors() {
    let mut c = ready();
    auth(&mut c, "AUTH\t1\tLOGIN\tservice=smtp");
    assert_eq!(c.feed(b"CANCEL\t1"), Ok(Request::Cancel { id: 1 }));
    assert_eq!(c.in_flight(), 0);
    assert!(matches!(
        c.feed(b"BOGUS\t1"),
        Err(ProtocolError::UnknownCommand(_))
    ));
    assert_eq!(
        c.feed(b"CONT\tx\tAA=="),
        Err(ProtocolError::Malformed("CONT"))
    );
}

#[test]
fn values_are_unescaped_on_the_way_in() {
    let mut c = ready();
    let r = auth(&mut c, "AUTH\t1\tPLAIN\tservice=sm\u{1}ttp");
    assert_eq!(r.service, "sm\ttp");
    assert_eq!(
        unescape(escape("a\0b\u{1}c\r\n").as_bytes()),
        b"a\0b\x01c\r\n"
    );
}

#[test]
fn framer_cuts_lines_and_bounds_them() {
    let mut f = Framer::new(16);
    f.push(b"VERSION\t1\t0\nCPI");
    assert_eq!(f.next_line(), Ok(Some(b"VERSION\t1\t0".to_vec())));
    assert_eq!(f.next_line(), Ok(None));
    f.push(b"D\t1\n");
    assert_eq!(f.next_line(), Ok(Some(b"CPID\t1".to_vec())));
    f.push(&[b'x'; 17]);
    assert_eq!(f.next_line(), Err(FramerError(16)));
    let mut f = Framer::new(4);
    f.push(b"12345\n");
    assert_eq!(f.next_line(), Err(FramerError(4)));
}

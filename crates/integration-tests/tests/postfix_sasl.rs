//! portcullis as Postfix's SASL back end: a private Postfix with
//! `smtpd_sasl_type = dovecot` pointed at an `[[auth_listener]]`, and
//! swaks and gsasl authenticating through Postfix. What the SMTP client
//! sees is Postfix's answer to our decision; the client address we count
//! is the one Postfix names (`rip=`).
//!
//! Skipped (with a note) where Postfix cannot run: not installed, or not
//! root (its master starts as root).

use portcullis_integration_tests::{
    gsasl, python, swaks, PostfixServer, TestServer, ToolOutput, ALICE, FROM, TO,
};

/// A portcullis with a Dovecot-protocol listener on TCP, and a Postfix
/// that asks it; `None` when Postfix cannot run here.
fn pair(extra: &str) -> Option<(TestServer, PostfixServer)> {
    if !PostfixServer::available() {
        eprintln!("skipped: postfix is not installed or the tests do not run as root");
        return None;
    }
    let server = TestServer::builder()
        .config(&format!(
            "{extra}\n[[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{{port:mta}}\"\n"
        ))
        .start();
    let postfix = PostfixServer::builder()
        .dovecot_sasl(&format!("inet:127.0.0.1:{}", server.port("mta")))
        .start()?;
    Some((server, postfix))
}

/// swaks through Postfix with `mechanism`, from `source` (a loopback
/// address: Postfix names it to us as `rip`).
fn swaks_via(postfix: &PostfixServer, source: &str, mechanism: &str, password: &str) -> ToolOutput {
    let address = format!("127.0.0.1:{}", postfix.port());
    swaks(&[
        "--server",
        &address,
        "--local-interface",
        source,
        "--auth",
        mechanism,
        "--auth-user",
        ALICE.0,
        "--auth-password",
        password,
        "--from",
        FROM,
        "--to",
        TO,
        "--body",
        "through postfix",
    ])
}

#[test]
fn postfix_advertises_our_mechanisms_without_plus() {
    let Some((_server, postfix)) = pair("") else {
        return;
    };
    let address = format!("127.0.0.1:{}", postfix.port());
    swaks(&["--server", &address, "--quit-after", "EHLO"])
        .assert_contains("AUTH ")
        .assert_contains(" PLAIN")
        .assert_contains(" LOGIN")
        .assert_contains(" CRAM-MD5")
        .assert_contains(" SCRAM-SHA-256")
        .assert_lacks("-PLUS");
}

#[test]
fn swaks_plain_login_cram_md5_through_postfix() {
    let Some((server, postfix)) = pair("") else {
        return;
    };
    for mechanism in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        swaks_via(&postfix, "127.0.0.1", mechanism, ALICE.1)
            .assert_contains("235 2.7.0 Authentication successful")
            .assert_contains("250 2.0.0 Ok: queued");
    }
    let log = server.log();
    assert!(log.contains("CRAM-MD5"), "{log}");
    assert!(log.contains("accepted"), "{log}");
}

#[test]
fn gsasl_scram_sha_256_through_postfix() {
    let Some((_server, postfix)) = pair("") else {
        return;
    };
    let connect = format!("--connect=127.0.0.1:{}", postfix.port());
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
        gsasl(&[
            "--smtp",
            "--no-starttls",
            &connect,
            "--verbose",
            "-m",
            mechanism,
            "--no-cb",
            "-a",
            ALICE.0,
            "-p",
            ALICE.1,
        ])
        .assert_contains(&format!("AUTH {mechanism}"))
        .assert_contains("235 2.7.0");
    }
}

#[test]
fn bad_passwords_are_535_from_postfix_and_counted_under_the_smtp_client() {
    let limits = "[limits.auth]\nallow = []\nban_after = 2\n\
                  delay_initial = \"0ms\"\ndelay_max = \"0ms\"\n";
    let Some((server, postfix)) = pair(limits) else {
        return;
    };
    // Distinct wrong passwords: a repeated one is not counted again.
    for password in ["wrong horse", "wronger horse"] {
        swaks_via(&postfix, "127.0.0.4", "PLAIN", password)
            .assert_contains("535 5.7.8")
            .assert_lacks("235 ");
    }
    // The SMTP client's address is banned, not Postfix's: the right
    // password from it is refused, from another client it is not.
    swaks_via(&postfix, "127.0.0.4", "PLAIN", ALICE.1)
        .assert_contains("Too many failed logins from your address")
        .assert_lacks("235 ");
    swaks_via(&postfix, "127.0.0.1", "PLAIN", ALICE.1).assert_contains("235 2.7.0");
    let log = server.log();
    assert!(log.contains("rejected"), "{log}");
    assert!(!log.contains("wrong horse"), "password in the log");
}

#[test]
fn a_banned_address_is_refused_through_postfix() {
    // Loopback is on the default allow-list; this test needs it banned.
    let limits = "[limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n";
    let Some((server, postfix)) = pair(limits) else {
        return;
    };
    let added = server
        .cli(&["ban", "add", "127.0.0.6", "--duration", "1h"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    // The server reloads the ban file within a second of the change.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = swaks_via(&postfix, "127.0.0.6", "PLAIN", ALICE.1);
        // Postfix shows the ban's text after its own code (it reads no
        // temporary flag from a FAIL).
        if out
            .stdout
            .contains("Too many failed logins from your address")
        {
            out.assert_lacks("235 ");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refused\n{}\n{}",
            out.transcript(),
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Another client of the same Postfix is not affected.
    swaks_via(&postfix, "127.0.0.1", "PLAIN", ALICE.1).assert_contains("235 2.7.0");
}

#[test]
fn unix_socket_listener_with_its_mode() {
    if !PostfixServer::available() {
        eprintln!("skipped: postfix is not installed or the tests do not run as root");
        return;
    }
    // Postfix's smtpd runs as `postfix`: the socket's directory must be
    // searchable, and the socket writable by its group, which we give it.
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = dir.path().join("auth");
    let server = TestServer::builder()
        .config(&format!(
            "[[auth_listener]]\nname = \"mta\"\npath = {:?}\nmode = \"0660\"\n\
             group = \"postfix\"\n",
            socket.display().to_string()
        ))
        .start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
    }
    let postfix = PostfixServer::builder()
        .dovecot_sasl(&socket.display().to_string())
        .start()
        .expect("postfix starts");
    swaks_via(&postfix, "127.0.0.1", "PLAIN", ALICE.1).assert_contains("235 2.7.0");
}

/// Two requests on one connection, the first a wrong password (its FAIL is
/// delayed a second) and the second right: the second is answered first,
/// each by its id.
#[test]
fn multiplexed_requests_are_answered_independently() {
    let server = TestServer::builder()
        .config(
            "[limits.auth]\ndelay_initial = \"1s\"\ndelay_max = \"1s\"\n\n\
             [[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{port:mta}\"\n",
        )
        .start();
    let out = python(
        r#"
        import socket
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
        f = s.makefile("rb")
        while True:
            line = f.readline().decode().rstrip("\n")
            say("hs: " + line)
            if line == "DONE":
                break
        bad = base64.b64encode(b"\0alice\0wrong horse").decode()
        good = base64.b64encode(b"\0alice\0correct horse").decode()
        s.sendall(("VERSION\t1\t2\nCPID\t42\n"
                   f"AUTH\t1\tPLAIN\tservice=smtp\trip=127.0.0.9\trport=1234\tresp={bad}\n"
                   f"AUTH\t2\tPLAIN\tservice=smtp\trip=127.0.0.10\tsecured\tresp={good}\n").encode())
        say("first: " + f.readline().decode().rstrip("\n"))
        say("second: " + f.readline().decode().rstrip("\n"))
        "#,
        &[server.port("mta")],
    );
    let labelled = out.labelled();
    let first = labelled.get("first").cloned().unwrap_or_default();
    let second = labelled.get("second").cloned().unwrap_or_default();
    assert_eq!(first, "OK\t2\tuser=alice", "{}", out.transcript());
    assert!(second.starts_with("FAIL\t1\t"), "{}", out.transcript());
    assert!(second.contains("user=alice"), "{}", out.transcript());
    assert!(
        out.stdout.contains("hs: MECH\tPLAIN\tplaintext"),
        "{}",
        out.transcript()
    );
}

/// A TCP auth listener takes only its trusted networks (loopback by
/// default), since the peer names the client we count.
#[test]
fn tcp_listener_closes_untrusted_peers() {
    let server = TestServer::builder()
        .config(
            "[[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{port:mta}\"\n\
             trusted = [\"127.0.0.2/32\"]\n",
        )
        .start();
    let out = python(
        r#"
        import socket
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
        data = s.recv(4096)
        say("got: " + repr(data))
        "#,
        &[server.port("mta")],
    );
    assert_eq!(out.reply("got"), "b''", "{}", out.transcript());
}

/// A one-time-code mechanism written in Lua, kept between rounds in
/// `conn.meta` (which lives as long as the exchange here).
const OTP: &str = r#"
local codes = { dora = '424242' }
portcullis.mechanism('X-OTP', function(auth, conn)
  if auth.step == 1 then
    return portcullis.reply('Username:')
  elseif auth.step == 2 then
    conn.meta:set_meta('otp_user', auth.response)
    return portcullis.reply('Code:')
  end
  local user = conn.meta:get_meta('otp_user')
  if codes[user] ~= nil and codes[user] == auth.response then
    return portcullis.accept{ user = user }
  end
  return portcullis.reject{ message = 'Wrong code' }
end)
"#;

#[test]
fn a_policy_script_mechanism_through_postfix() {
    if !PostfixServer::available() {
        eprintln!("skipped: postfix is not installed or the tests do not run as root");
        return;
    }
    let server = TestServer::builder()
        .config(
            "policy = \"policy.lua\"\n\n\
             [[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{port:mta}\"\n",
        )
        .file("policy.lua", OTP)
        .start();
    let postfix = PostfixServer::builder()
        .dovecot_sasl(&format!("inet:127.0.0.1:{}", server.port("mta")))
        .start()
        .expect("postfix starts");
    let out = python(
        r#"
        s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=30)
        s.ehlo()
        show("ehlo", (250, s.esmtp_features.get("auth", "")))
        def rounds(label, code):
            c, m = s.docmd("AUTH", "X-OTP")
            show(label + ".1", (c, base64.b64decode(m).decode()))
            c, m = s.docmd(b64("dora"))
            show(label + ".2", (c, base64.b64decode(m).decode()))
            show(label + ".3", s.docmd(b64(code)))
        rounds("wrong", "000000")
        rounds("right", "424242")
        s.quit()
        "#,
        &[postfix.port()],
    );
    assert!(out.reply("ehlo").contains("X-OTP"), "{}", out.transcript());
    out.assert_reply("wrong.1", "334 Username:")
        .assert_reply("wrong.2", "334 Code:")
        .assert_reply("wrong.3", "535 5.7.8")
        .assert_reply("right.1", "334 Username:")
        .assert_reply("right.2", "334 Code:")
        .assert_reply("right.3", "235 2.7.0");
}

/// A PLAIN authorization identity the user may act as: Postfix is told
/// that identity (`user=`, its `sasl_username`); one the user may not act
/// as is refused.
#[test]
fn plain_authzid_through_postfix_is_the_sasl_username() {
    if !PostfixServer::available() {
        eprintln!("skipped: postfix is not installed or the tests do not run as root");
        return;
    }
    let users = "[[user]]\nname = \"alice\"\npassword = \"{PLAIN}correct horse\"\n\
                 may_act_as = [\"boss\"]\n\n\
                 [[user]]\nname = \"bob\"\npassword = \"{PLAIN}battery staple\"\n";
    let server = TestServer::builder()
        .config(
            "[users]\nbackend = \"file\"\npath = \"users.toml\"\n\n\
             [[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{port:mta}\"\n",
        )
        .file("users.toml", users)
        .users(&[])
        .start();
    let postfix = PostfixServer::builder()
        .dovecot_sasl(&format!("inet:127.0.0.1:{}", server.port("mta")))
        .start()
        .expect("postfix starts");
    let out = python(
        r#"
        for label, creds in [("alice-as-boss", "boss\0alice\0correct horse"),
                             ("bob-as-boss", "boss\0bob\0battery staple")]:
            s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=30)
            s.ehlo()
            reply = s.docmd("AUTH", "PLAIN " + b64(creds))
            show(label, reply)
            if reply[0] == 235:
                # Postfix logs sasl_username when it creates the queue file.
                submit(label + ".msg", s)
            s.quit()
        "#,
        &[postfix.port()],
    );
    out.assert_reply("alice-as-boss", "235 2.7.0")
        .assert_reply("alice-as-boss.msg.data", "250")
        .assert_reply("bob-as-boss", "535 5.7.8");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !postfix.log().contains("sasl_username=boss") {
        assert!(
            std::time::Instant::now() < deadline,
            "postfix log:\n{}",
            postfix.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The protocol's edges on one connection, as a raw client: LOGIN over
/// `CONT` rounds, an unknown mechanism and bad base64 answered with `FAIL`
/// for their ids only, `CANCEL` in the middle of an exchange (the id may
/// be used again), and a line over the bound closing the connection.
#[test]
fn protocol_edges_on_one_connection() {
    let server = TestServer::builder()
        .config(
            "[[auth_listener]]\nname = \"mta\"\naddress = \"127.0.0.1:{port:mta}\"\n\
             max_line = 1024\n",
        )
        .start();
    let out = python(
        r#"
        import socket
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
        f = s.makefile("rb")
        while f.readline().decode().rstrip("\n") != "DONE":
            pass
        def send(line):
            s.sendall((line + "\n").encode())
        def answer():
            return f.readline().decode().rstrip("\n")
        send("VERSION\t1\t2")
        send("AUTH\t1\tLOGIN\tservice=smtp\trip=127.0.0.20")
        say("login.1: " + answer())
        send("CONT\t1\t" + b64("alice"))
        say("login.2: " + answer())
        send("CONT\t1\t" + b64("correct horse"))
        say("login.3: " + answer())
        send("AUTH\t2\tX-NOPE\tservice=smtp")
        say("unknown: " + answer())
        send("AUTH\t3\tPLAIN\tservice=smtp\tresp=!!!")
        say("base64: " + answer())
        send("AUTH\t4\tLOGIN\tservice=smtp")
        say("cancel.1: " + answer())
        send("CANCEL\t4")
        send("AUTH\t4\tPLAIN\tservice=smtp\tresp=" + b64("\0alice\0correct horse"))
        say("reused: " + answer())
        send("AUTH\t5\tPLAIN\tservice=smtp\tresp=" + "A" * 2000)
        say("long: " + repr(f.readline()))
        "#,
        &[server.port("mta")],
    );
    let got = out.labelled();
    let line = |label: &str| got.get(label).cloned().unwrap_or_default();
    let decoded = |label: &str| {
        let cont = line(label);
        let data = cont.rsplit('\t').next().unwrap_or_default().to_string();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert!(
        line("login.1").starts_with("CONT\t1\t"),
        "{}",
        out.transcript()
    );
    assert_eq!(decoded("login.1"), "Username:", "{}", out.transcript());
    assert_eq!(decoded("login.2"), "Password:", "{}", out.transcript());
    assert_eq!(line("login.3"), "OK\t1\tuser=alice", "{}", out.transcript());
    assert!(
        line("unknown").starts_with("FAIL\t2"),
        "{}",
        out.transcript()
    );
    assert!(
        line("base64").starts_with("FAIL\t3"),
        "{}",
        out.transcript()
    );
    assert!(
        line("cancel.1").starts_with("CONT\t4\t"),
        "{}",
        out.transcript()
    );
    assert_eq!(line("reused"), "OK\t4\tuser=alice", "{}", out.transcript());
    assert_eq!(line("long"), "b''", "{}", out.transcript());
}

//! SCRAM-SHA-1/-256 and their -PLUS variants against real clients: GNU
//! SASL's `gsasl` (tls-exporter on TLS 1.3, tls-unique on TLS 1.2) and
//! Python's `scramp` driving `smtplib` (tls-server-end-point), plus the
//! refusals: wrong password, downgrade, forged binding, unknown binding
//! type; and where SCRAM secrets come from (`user add`, a user file written
//! with `gsasl --mkpasswd`, a PLAIN login of a user who had none).

use portcullis_integration_tests::{gsasl, python, TestServer, ToolOutput, ALICE};

/// Every mechanism, the -PLUS variants included: no listener offers those
/// unless its `mechanisms` list names them.
const WITH_PLUS: &[&str] = &[
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-1",
    "CRAM-MD5",
    "PLAIN",
    "LOGIN",
];

/// A server whose listeners offer -PLUS.
fn plus_server() -> TestServer {
    TestServer::builder().mechanisms(WITH_PLUS).start()
}

/// `gsasl` authenticating to the STARTTLS listener.
fn gsasl_auth(server: &TestServer, mechanism: &str, password: &str, extra: &[&str]) -> ToolOutput {
    let connect = format!("--connect=127.0.0.1:{}", server.submission_port());
    let ca = server.data_dir().join("tls/cert.pem");
    let ca = format!("--x509-ca-file={}", ca.display());
    let mut args = vec![
        "--smtp",
        &connect,
        &ca,
        "--verbose",
        "-a",
        ALICE.0,
        "-p",
        password,
    ];
    args.extend_from_slice(&["-m", mechanism]);
    args.extend_from_slice(extra);
    gsasl(&args)
}

#[test]
fn gsasl_every_scram_mechanism_with_and_without_binding() {
    let server = plus_server();
    let cases: [(&str, &[&str]); 4] = [
        ("SCRAM-SHA-256-PLUS", &[]),
        ("SCRAM-SHA-256", &["--no-cb"]),
        ("SCRAM-SHA-1-PLUS", &[]),
        ("SCRAM-SHA-1", &["--no-cb"]),
    ];
    for (mechanism, extra) in cases {
        let out = gsasl_auth(&server, mechanism, ALICE.1, extra);
        out.assert_contains(&format!("AUTH {mechanism}\n"))
            .assert_contains("235 2.7.0");
        if mechanism.ends_with("-PLUS") {
            // gsasl on TLS 1.3 binds with tls-exporter: "p=tls-exporter,,".
            out.assert_contains("cD10bHMtZXhwb3J0ZXIsL");
        }
    }
    let log = server.log();
    assert!(
        log.contains("mechanism=SCRAM-SHA-256-PLUS user=alice authz=alice result=\"accepted\""),
        "{log}"
    );
}

#[test]
fn gsasl_wrong_password_gets_535() {
    let server = plus_server();
    gsasl_auth(&server, "SCRAM-SHA-256-PLUS", "wrong", &[])
        .assert_contains("535 5.7.8")
        .assert_lacks("235 ");
    let log = server.log();
    assert!(log.contains("reason=wrong password"), "{log}");
    assert!(
        !log.contains("wrong\""),
        "the password must not be logged: {log}"
    );
}

/// On TLS 1.2 gsasl binds with `tls-unique`, which rustls cannot serve:
/// -PLUS is not advertised there, so gsasl's own choice is plain SCRAM and
/// it gets in (it used to pick -PLUS and get
/// `e=unsupported-channel-binding-type`).
#[test]
fn gsasl_on_tls_1_2_is_not_offered_plus_and_gets_in() {
    let server = plus_server();
    let tls12 = ["--priority", "NORMAL:-VERS-TLS1.3"];
    let forced = gsasl_auth(&server, "SCRAM-SHA-256-PLUS", ALICE.1, &tls12);
    forced
        .assert_contains("AUTH SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN")
        .assert_contains("504 5.5.4");
    let connect = format!("--connect=127.0.0.1:{}", server.submission_port());
    let ca = format!(
        "--x509-ca-file={}",
        server.data_dir().join("tls/cert.pem").display()
    );
    // GNU SASL choosing by itself, without binding, as mutt calls it.
    let mut args = vec![
        "--smtp",
        &connect,
        &ca,
        "--verbose",
        "--no-cb",
        "-a",
        ALICE.0,
    ];
    args.extend_from_slice(&["-p", ALICE.1]);
    args.extend_from_slice(&tls12);
    gsasl(&args)
        .assert_contains("AUTH SCRAM-SHA-256")
        .assert_contains("235 2.7.0");
}

/// A `scramp` client over smtplib: `login(label, s, user, password, mech,
/// cb)` with `cb` a `(name, data)` pair for scramp, or `None`.
const SCRAMP: &str = r#"
import scramp

def scram_login(label, s, user, password, mech, cb=None):
    client = scramp.ScramClient([mech], user, password, channel_binding=cb)
    code, resp = s.docmd("AUTH", mech + " " + b64(client.get_client_first()))
    if code != 334:
        return show(label, (code, resp))
    server_first = base64.b64decode(resp).decode()
    print(f"{label}.server_first: {server_first}", flush=True)
    if server_first.startswith("e="):
        return show(label, s.docmd(""))
    client.set_server_first(server_first)
    code, resp = s.docmd(b64(client.get_client_final()))
    if code != 334:
        return show(label, (code, resp))
    client.set_server_final(base64.b64decode(resp).decode())  # checks v=
    print(f"{label}.server_signature: verified", flush=True)
    show(label, s.docmd(""))

def end_point(s):
    return ("tls-server-end-point", s.sock)
"#;

fn scramp(script: &str, ports: &[u16]) -> ToolOutput {
    // `python` removes the indentation common to all lines; the prelude has
    // none, so take the script's off first.
    let indent = script
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let script: Vec<&str> = script
        .lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect();
    python(&format!("{SCRAMP}\n{}", script.join("\n")), ports)
}

#[test]
fn scramp_plus_with_tls_server_end_point_submits_a_message() {
    let server = plus_server();
    let out = scramp(
        r#"
        s = connect()
        scram_login("auth", s, "alice", "correct horse", "SCRAM-SHA-256-PLUS", end_point(s))
        submit("msg", s)
        s.quit()
        s = connect_tls(PORTS[1])
        scram_login("implicit", s, "alice", "correct horse", "SCRAM-SHA-256-PLUS", end_point(s))
        s.quit()
        "#,
        &[server.submission_port(), server.implicit_port()],
    );
    out.assert_reply("auth.server_signature", "verified")
        .assert_reply("auth", "235 2.7.0 Authentication successful")
        .assert_reply("msg.data", "250")
        .assert_reply("implicit", "235 2.7.0 Authentication successful");
    server
        .single_message()
        .assert_submitted_by("alice", "SCRAM-SHA-256-PLUS");
}

#[test]
fn scramp_refusals_downgrade_forged_binding_wrong_type() {
    let server = plus_server();
    let out = scramp(
        r#"
        s = connect()
        # scramp with binding data but a non-PLUS mechanism says "y": since
        # we offer -PLUS, that is a downgrade.
        scram_login("downgrade", s, "alice", "correct horse", "SCRAM-SHA-256", end_point(s))
        scram_login("forged", s, "alice", "correct horse", "SCRAM-SHA-256-PLUS",
                    ("tls-server-end-point", b"\0" * 32))
        scram_login("type", s, "alice", "correct horse", "SCRAM-SHA-256-PLUS",
                    ("tls-unique", b"\1" * 12))
        s.quit()
        s = connect()
        scram_login("plain_scram", s, "alice", "correct horse", "SCRAM-SHA-256")
        "#,
        &[server.submission_port()],
    );
    out.assert_reply(
        "downgrade.server_first",
        "e=server-does-support-channel-binding",
    )
    .assert_reply("downgrade", "535 5.7.8 Authentication credentials invalid")
    .assert_reply("forged", "535 5.7.8 Authentication credentials invalid")
    .assert_reply("type.server_first", "e=unsupported-channel-binding-type")
    .assert_reply("type", "535 5.7.8 Authentication credentials invalid")
    .assert_reply("plain_scram", "235 2.7.0 Authentication successful");
    let log = server.log();
    assert!(
        log.contains("reason=channel binding does not match"),
        "{log}"
    );
}

#[test]
fn unknown_users_get_a_stable_salt_and_535() {
    let server = plus_server();
    let out = scramp(
        r#"
        for i in range(2):
            s = connect()
            scram_login(f"ghost{i}", s, "ghost", "x", "SCRAM-SHA-256")
            scram_login(f"alice{i}", s, "alice", "x", "SCRAM-SHA-256")
            s.quit()
        "#,
        &[server.submission_port()],
    );
    let salt = |label: &str| {
        let first = out.reply(&format!("{label}.server_first"));
        let salt = first
            .split(',')
            .find(|f| f.starts_with("s="))
            .map(str::to_string);
        salt.unwrap_or_else(|| panic!("no salt in {first:?}\n{}", out.transcript()))
    };
    assert_eq!(
        salt("ghost0"),
        salt("ghost1"),
        "a fake salt must not change"
    );
    assert_eq!(salt("alice0"), salt("alice1"));
    assert_ne!(salt("ghost0"), salt("alice0"));
    for label in ["ghost0", "ghost1", "alice0", "alice1"] {
        out.assert_reply(label, "535 5.7.8 Authentication credentials invalid");
    }
}

#[test]
fn file_store_scram_secrets_made_by_gsasl_mkpasswd() {
    let mkpasswd = gsasl(&["--mkpasswd", "-m", "SCRAM-SHA-256", "--password", "pencil"]);
    let stored = mkpasswd.stdout.trim().to_string();
    assert!(
        stored.starts_with("{SCRAM-SHA-256}"),
        "{}",
        mkpasswd.transcript()
    );
    let users = format!(
        "[[user]]\nname = \"alice\"\nscram_sha256 = \"{stored}\"\n\
         [[user]]\nname = \"bob\"\npassword = \"{{PLAIN}}x\"\n"
    );
    let server = TestServer::builder()
        .users(&[])
        .mechanisms(WITH_PLUS)
        .config("[users]\nbackend = \"file\"\npath = \"users.toml\"\n")
        .file("users.toml", &users)
        .start();
    gsasl_auth(&server, "SCRAM-SHA-256-PLUS", "pencil", &[]).assert_contains("235 2.7.0");
    // SHA-1 secrets are not in the file: that mechanism cannot succeed.
    gsasl_auth(&server, "SCRAM-SHA-1", "pencil", &["--no-cb"]).assert_contains("535 5.7.8");
}

#[test]
fn no_scram_secrets_anywhere_means_no_scram_advertised() {
    let server = TestServer::builder()
        .users(&[])
        .config("[users]\nbackend = \"file\"\npath = \"users.toml\"\n")
        .file(
            "users.toml",
            "[[user]]\nname = \"bob\"\npassword = \"{PLAIN}x\"\n",
        )
        .start();
    let out = python(
        r#"
        s = connect()
        print("ehlo: " + s.ehlo_resp.decode().replace("\n", " | "), flush=True)
        "#,
        &[server.submission_port()],
    );
    let ehlo = out.reply("ehlo");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("SCRAM"), "{ehlo}");
}

#[test]
fn a_plain_login_gives_an_imported_user_scram_secrets() {
    let mut server = plus_server();
    let db = server.data_dir().join("users.sqlite");
    let cleared = python(
        &format!(
            r#"
            import sqlite3
            db = sqlite3.connect({:?})
            db.execute("UPDATE users SET scram_sha1 = NULL, scram_sha256 = NULL")
            db.commit()
            print("cleared: ok", flush=True)
            "#,
            db.display().to_string()
        ),
        &[],
    );
    cleared.assert_reply("cleared", "ok");
    server.restart();
    let out = python(
        r#"
        s = connect()
        print("ehlo: " + s.ehlo_resp.decode().replace("\n", " | "), flush=True)
        login("plain", s, "alice", "correct horse", "PLAIN")
        "#,
        &[server.submission_port()],
    );
    assert!(!out.reply("ehlo").contains("SCRAM"), "{}", out.transcript());
    out.assert_reply("plain", "235 2.7.0 Authentication successful");
    let log = server.log();
    assert!(log.contains("derived and stored SCRAM secrets"), "{log}");
    server.restart();
    gsasl_auth(&server, "SCRAM-SHA-256-PLUS", ALICE.1, &[]).assert_contains("235 2.7.0");
}

//! Refusals take the same time whoever the user is, and an imported
//! user's weak hash becomes argon2id at their next login, seen from a real
//! client (Python smtplib) against the real server. The imported user's
//! stored form is written straight into the user database, as an import
//! from another server would leave it.

use portcullis_integration_tests::{python, TestServer};

/// `refuse(user, password)` times one AUTH PLAIN (connection set-up not
/// included) on a fresh connection; the fastest of five per kind is shown
/// in milliseconds. Kinds alternate so load hits both alike.
const TIMING: &str = r#"
import time
def refuse(user, password):
    s = connect()
    s.user, s.password = user, password
    started = time.monotonic()
    try:
        s.auth("PLAIN", s.auth_plain)
        code = 235
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    took = time.monotonic() - started
    try:
        s.quit()
    except Exception:
        pass
    assert code == 535, code
    return took
plain, unknown = [], []
for _ in range(5):
    plain.append(refuse("imported", "wrong"))
    unknown.append(refuse("nobody", "wrong"))
print(f"plain-wrong: {min(plain) * 1000:.1f}")
print(f"unknown-user: {min(unknown) * 1000:.1f}")
"#;

fn set_stored_password(server: &TestServer, user: &str, stored: &str) {
    let db = server.data_dir().join("users.sqlite");
    let script = format!(
        "import sqlite3\nc = sqlite3.connect({db:?})\n\
         c.execute(\"UPDATE users SET password = ?, scram_sha1 = NULL, scram_sha256 = NULL \
         WHERE name = ?\", ({stored:?}, {user:?}))\nc.commit()\n",
        db = db.display().to_string(),
    );
    python(&script, &[]).assert_success(true);
}

fn stored_password(server: &TestServer, user: &str) -> String {
    let db = server.data_dir().join("users.sqlite");
    let script = format!(
        "import sqlite3\nc = sqlite3.connect({db:?})\n\
         print('stored: ' + c.execute('SELECT password FROM users WHERE name = ?', ({user:?},)).fetchone()[0])\n",
        db = db.display().to_string(),
    );
    python(&script, &[]).reply("stored")
}

#[test]
fn a_plain_users_wrong_password_is_refused_as_slowly_as_an_unknown_user() {
    let mut server = TestServer::builder()
        .users(&[("imported", "unused")])
        .start();
    set_stored_password(&server, "imported", "{PLAIN}s3cret");
    server.restart();
    let out = python(TIMING, &[server.submission_port()]);
    let ms = |label: &str| -> f64 { out.reply(label).parse().expect("milliseconds") };
    let (plain, unknown) = (ms("plain-wrong"), ms("unknown-user"));
    println!("fastest refusal: {{PLAIN}} wrong password {plain} ms, unknown user {unknown} ms");
    assert!(
        plain * 2.0 >= unknown && plain <= unknown * 2.0 + 50.0,
        "{{PLAIN}} wrong password {plain} ms, unknown user {unknown} ms"
    );
}

#[test]
fn an_imported_sha512_crypt_user_is_rehashed_with_argon2id_and_still_logs_in() {
    // Drepper's SHA-crypt test vector, for "Hello world!".
    const SHA512_CRYPT: &str = "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
    let mut server = TestServer::builder()
        .users(&[("imported", "unused")])
        .start();
    set_stored_password(&server, "imported", SHA512_CRYPT);
    server.restart();
    let login = r#"
        for label in ["first", "second"]:
            s = connect()
            login(label, s, "imported", "Hello world!", "PLAIN")
            s.quit()
        "#;
    let out = python(login, &[server.submission_port()]);
    assert!(
        out.reply("first").starts_with("235"),
        "{}",
        out.transcript()
    );
    assert!(
        out.reply("second").starts_with("235"),
        "{}",
        out.transcript()
    );
    let stored = stored_password(&server, "imported");
    assert!(stored.starts_with("$argon2id$"), "still {stored}");
    server.restart();
    let out = python(login, &[server.submission_port()]);
    assert!(
        out.reply("first").starts_with("235"),
        "{}",
        out.transcript()
    );
}

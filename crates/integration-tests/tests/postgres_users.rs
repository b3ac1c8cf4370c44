//! Users in PostgreSQL (a real cluster from Debian's packages, started by
//! the test): `portcullis user add` writes there, logins read there, and
//! with the database stopped a login gets `454 4.7.0`, never `235`.

use portcullis_integration_tests::{python, PostgresServer, TestServer};

#[test]
fn users_in_postgres_log_in_and_a_dead_database_means_454() {
    let mut pg = PostgresServer::start()
        .expect("PostgreSQL is not installed: apt-get install -y postgresql");
    let server = TestServer::builder()
        .config(&format!(
            "[users]\nbackend = \"postgres\"\nurl = \"{}\"\n",
            pg.url()
        ))
        .start();
    let list = server.cli(&["user", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listed.contains("alice") && listed.contains("bob"),
        "{list:?}"
    );
    let login = r#"
        s = connect()
        login("right", s, "alice", "correct horse", "PLAIN")
        s2 = connect()
        login("wrong", s2, "bob", "not bob's", "LOGIN")
        "#;
    let out = python(login, &[server.submission_port()]);
    out.assert_reply("right", "235 2.7.0")
        .assert_reply("wrong", "535 5.7.8");

    pg.stop();
    let out = python(login, &[server.submission_port()]);
    out.assert_reply("right", "454 4.7.0")
        .assert_reply("wrong", "454 4.7.0");
    assert!(
        server.log().contains("store unavailable"),
        "{}",
        server.log()
    );
}

//! One canonical user name at the edge (PRECIS UsernameCaseMapped by
//! default): `Alice`, `ALICE` and `alice` are one user to the store, the
//! verified cache, the failure counters and cool-down, the log and the
//! spool; `username_profile = "exact"` keeps names as sent.

use portcullis_integration_tests::{python, swaks_plain, TestServer, ALICE};

const DEFENCE: &str = r#"
[limits]
max_connection_rate = 1000
[limits.auth]
allow = []
delay_initial = "10ms"
delay_max = "20ms"
user_max_failures = 3
user_cooldown = "1h"
ban_after = 50
ban_duration = "1h"
"#;

#[test]
fn case_variants_log_in_as_one_user_in_store_log_and_spool() {
    let server = TestServer::start("");
    swaks_plain(&server, "ALICE", ALICE.1)
        .assert_contains("235 2.7.0")
        .assert_success(true);
    let message = server.single_message();
    assert_eq!(message.auth_field("authn_id").as_deref(), Some("alice"));
    assert_eq!(message.auth_field("authz_id").as_deref(), Some("alice"));
    let log = server.log();
    assert!(log.contains("user=alice"), "{log}");
    assert!(!log.contains("user=ALICE"), "{log}");
    // Fullwidth letters are the same name too (width mapping).
    swaks_plain(&server, "ａｌｉｃｅ", ALICE.1).assert_contains("235 2.7.0");
}

#[test]
fn failures_under_case_variants_count_for_one_user() {
    let server = TestServer::builder().config(DEFENCE).start();
    // Three failures, each spelt differently, from three addresses: one
    // user's count reaches the cool-down, which a fourth spelling meets.
    let out = python(
        r#"
def attempt(label, source, user, password):
    s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="client.test", timeout=15,
                     source_address=(source, 0))
    s.ehlo(); s.starttls(context=ctx()); s.ehlo()
    login(label, s, user, password, "PLAIN")
    try:
        s.quit()
    except Exception:
        pass

attempt("g1", "127.0.0.5", "alice", "guess-1")
attempt("g2", "127.0.0.6", "Alice", "guess-2")
attempt("g3", "127.0.0.7", "ALICE", "guess-3")
attempt("cooling", "127.0.0.8", "aLiCe", "guess-4")
"#,
        &[server.submission_port()],
    );
    for g in ["g1", "g2", "g3"] {
        out.assert_reply(g, "535 5.7.8");
    }
    out.assert_reply("cooling", "454 4.7.0");
    let log = server.log();
    assert!(
        !log.contains("user=Alice") && !log.contains("user=ALICE"),
        "{log}"
    );
}

#[test]
fn the_verified_cache_is_keyed_on_the_canonical_name() {
    let server = TestServer::builder()
        .config("[admin]\naddress = \"127.0.0.1:{port:admin}\"")
        .start();
    swaks_plain(&server, "alice", ALICE.1).assert_contains("235 2.7.0");
    swaks_plain(&server, "Alice", ALICE.1).assert_contains("235 2.7.0");
    let metrics = portcullis_integration_tests::curl(
        &[&format!(
            "http://127.0.0.1:{}/metrics",
            server.port("admin")
        )],
        "",
    );
    let hits = metrics
        .stdout
        .lines()
        .find(|l| l.starts_with("portcullis_auth_cache_total{result=\"hit\"}"))
        .unwrap_or_default()
        .to_string();
    assert!(hits.ends_with(" 1"), "the second spelling missed: {hits:?}");
}

#[test]
fn the_exact_profile_keeps_names_as_sent() {
    let server = TestServer::start("[users]\nusername_profile = \"exact\"\n");
    swaks_plain(&server, "ALICE", ALICE.1)
        .assert_contains("535 5.7.8")
        .assert_lacks("235 ");
    swaks_plain(&server, "alice", ALICE.1).assert_contains("235 2.7.0");
}

#[test]
fn the_cli_stores_and_finds_canonical_names() {
    let server = TestServer::start("");
    server.add_user("Carol", "carol-pw");
    let list = server.cli(&["user", "list"]).output().expect("runs");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.lines().any(|l| l == "carol"), "{list}");
    swaks_plain(&server, "CAROL", "carol-pw").assert_contains("235 2.7.0");
    let refused = server
        .cli(&["user", "add", "carol smith", "--generate"])
        .output()
        .expect("runs");
    assert!(!refused.status.success(), "a name with a space was added");
}

//! Header checks against the tricks that make two readers of one header
//! section disagree: whitespace before the colon (`X-Tenant : acme`, RFC
//! 5322 obs-syntax), a second field, a folded or RFC 2047 encoded value.
//! Whatever a later reader (KumoMTA, our delivery) could take for the
//! tenant or the sender is either checked or refused with `550 5.7.1`, and
//! a refused message leaves nothing in the spool.

use portcullis_integration_tests::{python, TestServer};

const TENANTS: &str = "[tenant.'acme']\nrequire_authz = [\"alice\"]\n\
                       [tenant.'globex']\nrequire_authz = [\"bob\"]\n";

/// A script helper: `send(label, s, headers)` submits a message from
/// alice@example.test with these header lines (CRLF-joined) on top.
const SEND: &str = r#"
def send(label, s, sender, headers):
    s.rset()
    s.mail(sender); s.rcpt("rcpt@example.test")
    body = "\r\n".join(headers + ["To: <rcpt@example.test>", "Subject: tricks", "", "Hello.", ""])
    show(label, s.data(body))
"#;

#[test]
fn tenant_header_with_whitespace_before_the_colon_is_checked_and_removed() {
    let server = TestServer::start(TENANTS);
    let out = python(
        &format!(
            "{SEND}\n{}",
            r#"
bob = connect()
login("bob.auth", bob, "bob", "battery staple", "PLAIN")
send("bob.space", bob, "bob@example.test", ["From: <bob@example.test>", "X-Tenant : acme"])
send("bob.tab", bob, "bob@example.test", ["From: <bob@example.test>", "x-tenant\t: acme"])
bob.quit()
alice = connect()
login("alice.auth", alice, "alice", "correct horse", "PLAIN")
send("alice.space", alice, "alice@example.test", ["From: <alice@example.test>", "X-Tenant : acme"])
alice.quit()
"#
        ),
        &[server.submission_port()],
    );
    out.assert_reply("bob.auth", "235")
        .assert_reply("bob.space", "550 5.7.1")
        .assert_reply("bob.tab", "550 5.7.1")
        .assert_reply("alice.auth", "235")
        .assert_reply("alice.space", "250");
    let message = server.single_message();
    assert!(
        !message.eml.to_ascii_lowercase().contains("x-tenant"),
        "a tenant header variant reached the spool: {}",
        message.eml
    );
}

#[test]
fn tenant_header_repeated_folded_or_encoded_is_refused_when_kept() {
    let server = TestServer::start(&format!("[tenants]\nremove_header = false\n{TENANTS}"));
    let out = python(
        &format!(
            "{SEND}\n{}",
            r#"
bob = connect()
login("bob.auth", bob, "bob", "battery staple", "PLAIN")
f = ["From: <bob@example.test>"]
send("bob.folded", bob, "bob@example.test", f + ["X-Tenant:", " acme"])
send("bob.encoded", bob, "bob@example.test", f + ["X-Tenant: =?utf-8?q?acme?="])
send("bob.comment", bob, "bob@example.test", f + ["X-Tenant: acme (really)"])
send("bob.twice", bob, "bob@example.test", f + ["X-Tenant: globex", "X-Tenant: globex"])
send("bob.second_spaced", bob, "bob@example.test", f + ["X-Tenant: globex", "X-Tenant : acme"])
send("bob.own", bob, "bob@example.test", f + ["X-Tenant: globex"])
bob.quit()
alice = connect()
login("alice.auth", alice, "alice", "correct horse", "PLAIN")
send("alice.folded", alice, "alice@example.test", ["From: <alice@example.test>", "X-Tenant:", " acme"])
alice.quit()
"#
        ),
        &[server.submission_port()],
    );
    out.assert_reply("bob.auth", "235")
        .assert_reply("bob.folded", "550 5.7.1")
        .assert_reply("bob.encoded", "550 5.7.1")
        .assert_reply("bob.comment", "550 5.7.1")
        .assert_reply("bob.twice", "550 5.7.1")
        .assert_reply("bob.second_spaced", "550 5.7.1")
        .assert_reply("bob.own", "250")
        .assert_reply("alice.auth", "235")
        .assert_reply("alice.folded", "250");
    let messages = server.spool_messages();
    assert_eq!(
        messages.len(),
        2,
        "only bob's globex and alice's acme message may be spooled: {messages:#?}"
    );
}

#[test]
fn a_second_from_header_is_refused() {
    let server =
        TestServer::start("[senders]\ndomains = [\"example.test\"]\ncheck_from_header = true\n");
    let out = python(
        &format!(
            "{SEND}\n{}",
            r#"
s = connect()
login("auth", s, "alice", "correct horse", "PLAIN")
me = "alice@example.test"
send("spaced_second", s, me, ["From: <alice@example.test>", "From : <bob@example.test>"])
send("spaced_first", s, me, ["From : <bob@example.test>", "From: <alice@example.test>"])
send("same_twice", s, me, ["From: <alice@example.test>", "From: <alice@example.test>"])
send("spaced_only", s, me, ["From : <bob@example.test>"])
send("one", s, me, ["From: <alice@example.test>"])
s.quit()
"#
        ),
        &[server.submission_port()],
    );
    out.assert_reply("auth", "235")
        .assert_reply("spaced_second", "550 5.7.1")
        .assert_reply("spaced_first", "550 5.7.1")
        .assert_reply("same_twice", "550 5.7.1")
        .assert_reply("spaced_only", "550 5.7.1")
        .assert_reply("one", "250");
    assert_eq!(server.spool_len(), 1, "a refused message was spooled");
}

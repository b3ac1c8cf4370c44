//! A script mechanism is admitted like any AUTH: an address a trusted
//! proxy names with XCLIENT that is banned gets `421` before the script
//! sees a single round (before, the script verified one guess per
//! connection, the ban counted only afterwards).

use portcullis_integration_tests::{python, TestServer};

const POLICY: &str = r#"
portcullis.mechanism('X-T', function(auth, conn)
  kumo.log_warn('x-t script ran')
  return portcullis.reject{ message = 'no' }
end)
"#;

#[test]
fn a_banned_address_named_by_a_proxy_gets_421_before_a_script_mechanism_runs() {
    let server = TestServer::builder()
        .without_default_listeners()
        .config(
            "policy = \"policy.lua\"\n\n\
             [[listener]]\nname = \"proxied\"\naddress = \"127.0.0.1:{port:proxied}\"\n\
             tls = \"starttls\"\nxclient_trusted = [\"127.0.0.1/32\"]\n",
        )
        .file("policy.lua", POLICY)
        .start();
    let banned = server
        .cli(&["ban", "add", "192.0.2.66", "--reason", "test"])
        .output()
        .expect("ban add");
    assert!(banned.status.success(), "{banned:?}");
    // The server reloads the ban file when it changes, and says so.
    portcullis_integration_tests::wait_until(
        &server,
        "the server to reload the ban",
        std::time::Duration::from_secs(30),
        || server.log().contains("ban file reloaded bans=1"),
    );
    let out = python(
        r#"
        s = connect()
        show("xclient", s.docmd("XCLIENT", "ADDR=192.0.2.66"))
        s.ehlo()
        show("auth", s.docmd("AUTH", "X-T"))
        "#,
        &[server.port("proxied")],
    );
    out.assert_reply("auth", "421 4.7.0");
    let log = server.log();
    assert!(!log.contains("x-t script ran"), "{log}");
}

//! `XCLIENT LOGIN=` under a policy script: the proxy vouches that the user
//! authenticated, but whether that user gets in is still the policy's
//! call. `smtp_server_auth` is asked with mechanism `XCLIENT`, the client
//! the proxy named and the proxy's own address; a refusal answers
//! `550 5.7.0` and leaves the session unauthenticated, an accept records
//! the user as AUTH would (spool metadata, the message hook's `authn_id`).

use portcullis_integration_tests::{python, TestServer};

const POLICY: &str = r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  if auth.mechanism ~= 'XCLIENT' or not auth.verified or auth.password ~= nil then
    return false
  end
  if auth.user == 'alice' and conn.client_ip == '192.0.2.7' and conn.proxy_ip == '127.0.0.1' then
    return portcullis.accept{ data = { plan = 'gold', proxy = conn.proxy_ip } }
  end
  return portcullis.reject{ message = 'Not you' }
end)
portcullis.on('smtp_server_message_received', function(msg, conn)
  if msg.authn_id == 'alice' and msg.mechanism == 'XCLIENT' and msg.user_data.plan == 'gold' then
    return nil
  end
  return portcullis.reject{ message = 'Hook saw ' .. tostring(msg.authn_id) }
end)
"#;

#[test]
fn xclient_login_is_decided_by_the_policy() {
    let server = TestServer::builder()
        .without_default_listeners()
        .config(
            "policy = \"policy.lua\"\n\n\
             [[listener]]\nname = \"proxied\"\naddress = \"127.0.0.1:{port:proxied}\"\n\
             tls = \"starttls\"\nxclient_trusted = [\"127.0.0.1/32\"]\n",
        )
        .file("policy.lua", POLICY)
        .start();
    let out = python(
        r#"
        s = connect()
        show("mallory", s.docmd("XCLIENT", "ADDR=192.0.2.7 LOGIN=mallory"))
        show("ehlo", s.ehlo())
        show("mallory.mail", s.mail(FROM))
        show("alice", s.docmd("XCLIENT", "ADDR=192.0.2.7 LOGIN=alice"))
        show("ehlo2", s.ehlo())
        submit("m", s)
        # A refused login after an accepted one takes the session back to
        # unauthenticated, and alice's data with it.
        show("mallory2", s.docmd("XCLIENT", "ADDR=192.0.2.7 LOGIN=mallory"))
        show("ehlo3", s.ehlo())
        show("mallory2.mail", s.mail(FROM))
        s.quit()
        "#,
        &[server.port("proxied")],
    );
    out.assert_reply("mallory", "550 5.7.0")
        .assert_reply("mallory.mail", "530 5.7.0")
        .assert_reply("alice", "220 mx.test ESMTP")
        .assert_reply("m.mail", "250 2.1.0")
        .assert_reply("m.data", "250 2.0.0")
        .assert_reply("mallory2", "550 5.7.0")
        .assert_reply("mallory2.mail", "530 5.7.0");
    let message = server.single_message();
    let meta = &message.meta;
    assert_eq!(
        message.auth_field("authn_id").as_deref(),
        Some("alice"),
        "{meta:#}"
    );
    assert_eq!(
        message.auth_field("mechanism").as_deref(),
        Some("XCLIENT"),
        "{meta:#}"
    );
    assert_eq!(
        meta["auth"]["user_data"],
        serde_json::json!({"plan": "gold", "proxy": "127.0.0.1"}),
        "{meta:#}"
    );
}

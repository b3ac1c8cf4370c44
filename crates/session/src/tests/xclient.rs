//! XCLIENT: obeyed only from a trusted proxy, answered with a fresh
//! greeting, and `LOGIN=` counting as authentication.

use super::*;

fn proxied(trusted: bool) -> Harness {
    let mut out = Vec::new();
    let conn = ConnectionInfo {
        client_ip: "10.0.0.1".into(),
        session_id: "s1".into(),
        xclient_trusted: trusted,
    };
    let session = Session::new(
        Arc::new(SessionConfig::new("mx.test")),
        conn,
        Some(tls()),
        &mut out,
    );
    let mut h = Harness { session, out };
    h.take();
    h
}

#[test]
fn untrusted_clients_neither_see_nor_use_xclient() {
    let mut h = proxied(false);
    assert!(!h.replies("EHLO proxy\r\n").contains("XCLIENT"));
    assert_eq!(h.codes("XCLIENT LOGIN=ann\r\n"), ["550 5.7.0"]);
    assert_eq!(h.session.xclient(), None);
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["530 5.7.0"]);
}

#[test]
fn login_authenticates_after_a_fresh_greeting() {
    let mut h = proxied(true);
    let ehlo = h.replies("EHLO proxy\r\n");
    assert!(
        ehlo.contains("250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT"),
        "{ehlo}"
    );
    let (nothing, effect) = h.send("XCLIENT ADDR=192.0.2.7 PORT=4711 LOGIN=ann HELO=laptop\r\n");
    assert_eq!(nothing, "");
    // The driver asks the policy and fetches ann's sender rule before
    // anything else is read; the greeting waits for that.
    assert!(matches!(effect, Some(Effect::XclientLogin { ref login }) if login == "ann"));
    h.session.xclient_login_finished(None, &mut h.out);
    assert_eq!(h.take(), "220 mx.test ESMTP portcullis\r\n");
    // The greeting reset the SMTP state: EHLO again.
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["503 5.5.1"]);
    h.replies("EHLO proxy\r\n");
    assert_eq!(h.codes("AUTH PLAIN AGFubgB4\r\n"), ["503 5.5.1"]);
    assert_eq!(
        h.codes("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        ["250 2.1.0", "250 2.1.5", "354"]
    );
    let (_, effect) = h.send("hi\r\n.\r\n");
    let Some(Effect::Spool(message)) = effect else {
        panic!("expected Spool, got {effect:?}");
    };
    let xclient = message
        .xclient
        .expect("XCLIENT facts travel with the message");
    assert_eq!(xclient.login.as_deref(), Some("ann"));
    assert_eq!(xclient.addr.as_deref(), Some("192.0.2.7"));
    assert_eq!(xclient.helo.as_deref(), Some("laptop"));
    assert_eq!(message.identity, None);
    assert_eq!(message.protocol, "ESMTPSA");
}

#[test]
fn not_inside_a_transaction_and_unavailable_clears() {
    let mut h = proxied(true);
    h.replies("EHLO proxy\r\n");
    assert!(matches!(
        h.send("XCLIENT LOGIN=ann\r\n").1,
        Some(Effect::XclientLogin { .. })
    ));
    h.session.xclient_login_finished(None, &mut h.out);
    h.replies("EHLO proxy\r\n");
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["250 2.1.0"]);
    assert_eq!(h.codes("XCLIENT LOGIN=[UNAVAILABLE]\r\n"), ["503 5.5.1"]);
    h.replies("RSET\r\n");
    assert!(h
        .replies("XCLIENT LOGIN=[UNAVAILABLE]\r\n")
        .starts_with("220 "));
    h.replies("EHLO proxy\r\n");
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["530 5.7.0"]);
    assert_eq!(h.codes("XCLIENT BOGUS=1\r\n"), ["501 5.5.4"]);
}

#[test]
fn a_refused_login_leaves_the_session_unauthenticated() {
    let mut h = proxied(true);
    h.replies("EHLO proxy\r\n");
    let (nothing, effect) = h.send("XCLIENT ADDR=192.0.2.7 LOGIN=mallory\r\n");
    assert_eq!(nothing, "");
    assert!(matches!(effect, Some(Effect::XclientLogin { ref login }) if login == "mallory"));
    h.session
        .xclient_login_finished(Some(portcullis_proto::Reply::xclient_refused()), &mut h.out);
    assert!(h.take().starts_with("550 5.7.0 "));
    let facts = h.session.xclient().expect("the proxy's other facts stay");
    assert_eq!(facts.login, None);
    assert_eq!(facts.addr.as_deref(), Some("192.0.2.7"));
    h.replies("EHLO proxy\r\n");
    assert_eq!(h.codes("MAIL FROM:<a@b>\r\n"), ["530 5.7.0"]);
}

/// A proxy that passes the client's STARTTLS through: the client address
/// it named stays the one counted (bans, limits), only a login it vouched
/// for is forgotten with everything else learned before TLS.
#[test]
fn starttls_keeps_the_address_a_proxy_named_and_forgets_its_login() {
    let mut out = Vec::new();
    let conn = ConnectionInfo {
        client_ip: "10.0.0.1".into(),
        session_id: "s1".into(),
        xclient_trusted: true,
    };
    let mut config = SessionConfig::new("mx.test");
    config.starttls = true;
    config.allow_insecure_auth = true;
    let session = Session::new(Arc::new(config), conn, None, &mut out);
    let mut h = Harness { session, out };
    h.take();
    h.replies("EHLO proxy\r\n");
    let greeting = h.replies("XCLIENT ADDR=192.0.2.99\r\n");
    assert!(greeting.starts_with("220"), "{greeting}");
    h.replies("EHLO client\r\n");
    let (replies, effect) = h.send("STARTTLS\r\n");
    assert!(replies.starts_with("220"), "{replies}");
    assert!(matches!(effect, Some(Effect::StartTls)));
    h.session.tls_established(tls());
    let xclient = h.session.xclient().expect("the proxy's facts are kept");
    assert_eq!(xclient.addr.as_deref(), Some("192.0.2.99"));
    assert_eq!(xclient.login, None);
}

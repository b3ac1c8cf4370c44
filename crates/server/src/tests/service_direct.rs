//! The auth service called as another front end would call it: no SMTP
//! session, only a request with the connection's facts, and a verdict.

use std::net::SocketAddr;

use portcullis_lua::ConnMeta;
use portcullis_sasl::{Credentials, Mechanism, Secret};

use super::harness::*;
use crate::auth_service::{AuthRequest, Claim, Exchange, Verdict};
use crate::peer::ConnectionFacts;

fn facts() -> ConnectionFacts {
    ConnectionFacts {
        client: SocketAddr::from((CLIENT, 50000)),
        proxy: None,
        local: None,
        listener: "dovecot-auth".into(),
        helo: None,
        protocol: "SMTP",
        tls: None,
    }
}

fn password(user: &str, password: &str) -> Claim {
    Claim::Sasl {
        mechanism: Mechanism::Plain,
        credentials: Credentials::Password {
            authcid: user.into(),
            authzid: None,
            password: Secret::new(password.as_bytes().to_vec()),
        },
    }
}

async fn ask(server: &TestServer, claim: Claim) -> Verdict {
    let (facts, meta) = (facts(), ConnMeta::new());
    let request = AuthRequest {
        claim,
        facts: &facts,
        meta: &meta,
    };
    let mut exchange = Exchange::default();
    server
        .shared
        .auth
        .authenticate(request, &mut exchange)
        .await
}

#[tokio::test(start_paused = true)]
async fn a_front_end_without_a_session_gets_the_identity_and_its_senders() {
    let server = TestServer::builder().senders(&["example.test"]).build();
    let Verdict::Accept {
        authn_id,
        authz_id,
        sender_rule: Some(rule),
        ..
    } = ask(&server, password("alice", "secret")).await
    else {
        panic!("not accepted");
    };
    assert_eq!((authn_id.as_str(), authz_id.as_str()), ("alice", "alice"));
    let owned = portcullis_proto::Path::Mailbox("x@alias.test".into());
    assert!(rule.allows(&owned));
}

#[tokio::test(start_paused = true)]
async fn a_front_end_without_a_session_gets_the_refusal_and_whether_to_close() {
    let server = TestServer::builder().limits(|l| l.ban_after = 2).build();
    let Verdict::Reject { reply, close } = ask(&server, password("alice", "a")).await else {
        panic!("not rejected");
    };
    assert_eq!((reply.code(), close), (535, false));
    // The second failure from the address bans it: refused, and close.
    let Verdict::Reject { reply, close } = ask(&server, password("alice", "b")).await else {
        panic!("not rejected");
    };
    assert_eq!((reply.code(), close), (421, true));
    server.store.set_mode(STORE_FAILING);
    let Verdict::Reject { close: true, .. } = ask(&server, password("bob", "hunter2")).await else {
        panic!("a banned address is refused before the store is asked");
    };
}

#[tokio::test(start_paused = true)]
async fn a_front_end_without_a_session_is_deferred_when_the_store_is_down() {
    let server = TestServer::start();
    server.store.set_mode(STORE_FAILING);
    let Verdict::Defer { reply } = ask(&server, password("alice", "secret")).await else {
        panic!("not deferred");
    };
    assert_eq!(reply.code(), 454);
}

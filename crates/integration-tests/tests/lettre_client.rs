//! lettre (in process, rustls) submitting over STARTTLS and implicit TLS
//! with PLAIN and LOGIN. lettre has no CRAM-MD5.

use lettre::message::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::SmtpTransport;
use lettre::Transport as _;
use portcullis_integration_tests::{TestServer, ALICE, BOB, FROM, TO};

#[derive(Clone, Copy)]
enum Wrap {
    StartTls,
    Implicit,
}

fn transport(
    port: u16,
    wrap: Wrap,
    user: &str,
    password: &str,
    mechanism: Mechanism,
) -> SmtpTransport {
    let params = TlsParameters::builder("localhost".to_string())
        .certificate_store(CertificateStore::None)
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .expect("rustls TLS parameters build");
    let tls = match wrap {
        Wrap::StartTls => Tls::Required(params),
        Wrap::Implicit => Tls::Wrapper(params),
    };
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(tls)
        .credentials(Credentials::new(user.to_string(), password.to_string()))
        .authentication(vec![mechanism])
        .timeout(Some(std::time::Duration::from_secs(15)))
        .build()
}

fn message(subject: &str) -> Message {
    Message::builder()
        .from(FROM.parse().expect("valid mailbox"))
        .to(TO.parse().expect("valid mailbox"))
        .subject(subject)
        .body("Hello from the portcullis tests.\r\n".to_string())
        .expect("message builds")
}

fn port(server: &TestServer, wrap: Wrap) -> u16 {
    match wrap {
        Wrap::StartTls => server.submission_port(),
        Wrap::Implicit => server.implicit_port(),
    }
}

fn submits_and_spools(wrap: Wrap, mechanism: Mechanism, name: &str) {
    let server = TestServer::start("");
    let (user, password) = ALICE;
    let response = transport(port(&server, wrap), wrap, user, password, mechanism)
        .send(&message("lettre"))
        .unwrap_or_else(|e| {
            panic!(
                "lettre {name} submission failed: {e:?}\nlog:\n{}",
                server.log()
            )
        });
    assert_eq!(u16::from(response.code()), 250, "DATA reply: {response:?}");
    let spooled = server.single_message();
    spooled.assert_submitted_by(user, name);
    assert_eq!(spooled.meta["mail_from"], FROM, "{:#}", spooled.meta);
    assert_eq!(
        spooled.meta["rcpt_to"],
        serde_json::json!([TO]),
        "{:#}",
        spooled.meta
    );
}

fn refuses_wrong_password(wrap: Wrap, mechanism: Mechanism) {
    let server = TestServer::start("");
    for (user, password) in [
        (ALICE.0, "wrong horse"),
        ("nobody", ALICE.1),
        (BOB.0, ALICE.1),
    ] {
        let error = transport(port(&server, wrap), wrap, user, password, mechanism)
            .send(&message("lettre-bad"))
            .expect_err("wrong credentials must not submit");
        let code = error.status().map(u16::from);
        assert_eq!(
            code,
            Some(535),
            "{user}/{password}: expected 535, got {error:?}"
        );
        assert!(
            error.to_string().contains("5.7.8"),
            "{user}: expected 5.7.8 in {error}"
        );
    }
    assert!(
        server.spool_messages().is_empty(),
        "nothing may be spooled without authentication"
    );
}

#[test]
fn lettre_plain_over_starttls_is_spooled_with_auth_identity() {
    submits_and_spools(Wrap::StartTls, Mechanism::Plain, "PLAIN");
}

#[test]
fn lettre_login_over_starttls_is_spooled_with_auth_identity() {
    submits_and_spools(Wrap::StartTls, Mechanism::Login, "LOGIN");
}

#[test]
fn lettre_plain_over_implicit_tls_is_spooled_with_auth_identity() {
    submits_and_spools(Wrap::Implicit, Mechanism::Plain, "PLAIN");
}

#[test]
fn lettre_login_over_implicit_tls_is_spooled_with_auth_identity() {
    submits_and_spools(Wrap::Implicit, Mechanism::Login, "LOGIN");
}

#[test]
fn lettre_plain_with_bad_credentials_gets_535_and_spools_nothing() {
    refuses_wrong_password(Wrap::StartTls, Mechanism::Plain);
}

#[test]
fn lettre_login_with_bad_credentials_gets_535_and_spools_nothing() {
    refuses_wrong_password(Wrap::Implicit, Mechanism::Login);
}

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/portcullis/portcullis.toml"), None)
}

#[test]
fn development_defaults() {
    let c = Config::development(Some(Path::new("/tmp/d")));
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].address.to_string(), "127.0.0.1:2587");
    assert_eq!(c.listeners[1].tls, ListenerTls::Implicit);
    assert_eq!(
        c.tls,
        TlsSource::SelfSigned {
            dir: "/tmp/d/tls".into()
        }
    );
    assert_eq!(
        c.users,
        UserBackend::Sqlite {
            path: "/tmp/d/users.sqlite".into()
        }
    );
    assert_eq!(c.spool_dir, PathBuf::from("/tmp/d/spool"));
    assert_eq!(c.limits.max_unauthenticated_commands, 10);
    assert_eq!(c.limits.max_auth_failures, 3);
}

#[test]
fn full_file() {
    let c = parse(
        r#"
hostname = "mx.example"
data_dir = "/var/lib/portcullis"
[tls]
certificate = "cert.pem"
private_key = "/keys/key.pem"
[users]
backend = "file"
path = "users.toml"
[limits]
max_message_size = 1000
idle_timeout_secs = 30
[[listener]]
name = "plain"
address = "0.0.0.0:25"
tls = "none"
auth = "disabled"
"#,
    )
    .unwrap();
    assert_eq!(c.hostname, "mx.example");
    assert_eq!(
        c.tls,
        TlsSource::Files {
            certificate: "/etc/portcullis/cert.pem".into(),
            private_key: "/keys/key.pem".into()
        }
    );
    assert_eq!(
        c.users,
        UserBackend::File {
            path: "/var/lib/portcullis/users.toml".into()
        }
    );
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.listeners[0].auth, ListenerAuth::Disabled);
}

#[test]
fn errors_name_the_key() {
    let err = |t: &str| parse(t).unwrap_err().to_string();
    assert!(err("bogus = 1").contains("unknown field"));
    assert!(err("[tls]\ncertificate = \"c\"").starts_with("tls:"));
    assert!(err("[users]\nbackend = \"ldap\"").starts_with("users.backend"));
    assert!(err("[[listener]]\naddress = \"nope\"").starts_with("listener[0].address"));
    assert!(
        err("[[listener]]\naddress = \"127.0.0.1:1\"\ntls = \"none\"")
            .starts_with("listener[0].auth")
    );
    let dup = "[[listener]]\naddress = \"127.0.0.1:1\"\n[[listener]]\naddress = \"127.0.0.1:1\"";
    assert!(err(dup).contains("used twice"));
}

#[test]
fn insecure_auth_must_be_asked_for() {
    let c = parse(
        "[[listener]]\naddress = \"127.0.0.1:1\"\ntls = \"none\"\nallow_insecure_auth = true",
    )
    .unwrap();
    assert!(c.listeners[0].allow_insecure_auth);
}

#[test]
fn no_delivery_section_means_no_delivery() {
    assert!(parse("").unwrap().delivery.is_none());
    assert!(parse("[[route]]\ntransport = \"maildir\"\npath = \"m\"\n").is_err());
}

#[test]
fn delivery_routes() {
    use crate::delivery::*;
    let c = parse(
        r#"
data_dir = "/d"
[delivery]
retry_initial = "200ms"
max_age = "2d"
[[route]]
name = "local"
domains = ["Example.TEST"]
transport = "maildir"
path = "mail"
[[route]]
transport = "smtp"
address = "relay.example:587"
auth_username = "u"
auth_password = "p"
identity = "xclient"
[[route]]
transport = "lmtp"
socket = "/run/lmtp"
"#,
    )
    .unwrap();
    let d = c.delivery.unwrap();
    assert_eq!(d.retry_initial, Duration::from_millis(200));
    assert_eq!(d.max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(d.routes[0].domains, vec!["example.test"]);
    assert_eq!(
        d.routes[0].transport,
        Transport::Maildir {
            path: "/d/mail".into()
        }
    );
    let Transport::Smtp(relay) = &d.routes[1].transport else {
        panic!("smtp expected")
    };
    assert_eq!(
        relay.target,
        Target::Tcp {
            host: "relay.example".into(),
            port: 587
        }
    );
    assert_eq!(relay.tls, RelayTls::StartTls);
    assert!(
        !format!("{relay:?}").contains("\"p\""),
        "password must not be in Debug"
    );
    assert_eq!(d.routes[1].identity, Identity::Xclient);
    let Transport::Lmtp(lmtp) = &d.routes[2].transport else {
        panic!("lmtp expected")
    };
    assert_eq!(lmtp.tls, RelayTls::None);
}

#[test]
fn delivery_rejects_bad_values() {
    for bad in [
        "[delivery]\n",
        "[delivery]\nretry_initial = \"soon\"\n[[route]]\ntransport = \"maildir\"\npath = \"m\"\n",
        "[delivery]\n[[route]]\ntransport = \"smtp\"\n",
        "[delivery]\n[[route]]\ntransport = \"smtp\"\nsocket = \"/s\"\n",
        "[delivery]\n[[route]]\ntransport = \"smtp\"\naddress = \"h:25\"\nauth_username = \"u\"\n",
        "[delivery]\n[[route]]\ntransport = \"pigeon\"\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn durations_parse() {
    use crate::delivery::parse_duration;
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("m"), None);
}

#[test]
fn client_certificates_need_a_ca_and_default_to_the_common_name() {
    assert_eq!(parse("").unwrap().client_certificates, None);
    let c = parse("[tls]\nclient_ca = \"ca.pem\"").unwrap();
    assert_eq!(
        c.client_certificates,
        Some(ClientCertificates {
            ca: "/etc/portcullis/ca.pem".into(),
            identity: ClientIdentity::CommonName,
        })
    );
    let c = parse("[tls]\nclient_ca = \"/x/ca.pem\"\nclient_identity = \"email\"").unwrap();
    assert_eq!(
        c.client_certificates.map(|c| c.identity),
        Some(ClientIdentity::Email)
    );
    let err = |t: &str| parse(t).unwrap_err().to_string();
    assert!(err("[tls]\nclient_identity = \"cn\"").starts_with("tls.client_identity"));
    assert!(err("[tls]\nclient_ca = \"c\"\nclient_identity = \"uid\"")
        .starts_with("tls.client_identity"));
}

#[test]
fn xclient_trusted_networks_parse_and_default_to_none() {
    let c = parse(
        "[[listener]]\naddress = \"127.0.0.1:1\"\nxclient_trusted = [\"127.0.0.1/32\", \"::1\"]",
    )
    .unwrap();
    let trusted = &c.listeners[0].xclient_trusted;
    assert!(trusted
        .iter()
        .any(|n| n.contains("127.0.0.1".parse().unwrap())));
    assert!(!trusted
        .iter()
        .any(|n| n.contains("127.0.0.2".parse().unwrap())));
    assert!(parse("").unwrap().listeners[0].xclient_trusted.is_empty());
    let err = parse("[[listener]]\naddress = \"127.0.0.1:1\"\nxclient_trusted = [\"nope\"]")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("listener[0].xclient_trusted"), "{err}");
}

#[test]
fn proxy_protocol_needs_trusted_networks() {
    let listener = "[[listener]]\naddress = \"127.0.0.1:1\"\n";
    let c = parse(&format!(
        "{listener}proxy_protocol = true\nproxy_trusted = [\"10.0.0.0/8\"]"
    ))
    .unwrap();
    assert!(c.listeners[0].proxy_trusted[0].contains("10.1.2.3".parse().unwrap()));
    assert!(parse(listener).unwrap().listeners[0]
        .proxy_trusted
        .is_empty());
    for bad in ["proxy_protocol = true", "proxy_trusted = [\"10.0.0.0/8\"]"] {
        let err = parse(&format!("{listener}{bad}")).unwrap_err().to_string();
        assert!(err.starts_with("listener[0].proxy_trusted"), "{err}");
    }
}

#[test]
fn auth_tuning_defaults_to_the_machine_and_bounds_the_floor() {
    let c = parse("").expect("valid");
    assert_eq!(
        c.auth.max_concurrent_verifications, None,
        "sized at start-up"
    );
    assert_eq!(c.auth.failure_floor, Duration::ZERO);
    assert_eq!(c.auth.slot_wait, None, "the auth crate's default");
    assert_eq!(c.auth.slot_queue, None, "the auth crate's default");
    let c =
        parse("[auth]\nmax_concurrent_verifications = 6\nfailure_floor_ms = 400\n").expect("valid");
    assert_eq!(c.auth.max_concurrent_verifications, Some(6));
    assert_eq!(c.auth.failure_floor, Duration::from_millis(400));
    for bad in [
        "[auth]\nmax_concurrent_verifications = 0\n",
        "[auth]\nfailure_floor_ms = 5000\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_wait_for_a_hash_slot_and_its_queue_are_bounded() {
    let c = parse("[auth]\nslot_wait = \"1500ms\"\nslot_queue = 32\n").expect("valid");
    assert_eq!(c.auth.slot_wait, Some(Duration::from_millis(1500)));
    assert_eq!(c.auth.slot_queue, Some(32));
    let off = parse("[auth]\nslot_wait = \"0s\"\nslot_queue = 0\n").expect("valid");
    assert_eq!(off.auth.slot_wait, Some(Duration::ZERO));
    for bad in [
        "[auth]\nslot_wait = \"11s\"\n",
        "[auth]\nslot_wait = \"soon\"\n",
        "[auth]\nslot_wait = 2\n",
        "[auth]\nslot_queue = 257\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn optional_auth_listener() {
    let c = parse("[[listener]]\naddress = \"127.0.0.1:1\"\nauth = \"optional\"").unwrap();
    assert_eq!(c.listeners[0].auth, ListenerAuth::Optional);
    let err = parse("[[listener]]\naddress = \"127.0.0.1:1\"\nauth = \"optional\"\ntls = \"none\"")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("listener[0].auth"), "{err}");
    let err = parse("[[listener]]\naddress = \"127.0.0.1:1\"\nauth = \"maybe\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("required, optional or disabled"), "{err}");
}

#[test]
fn auth_required_message_is_one_bounded_printable_line() {
    let listener = |value: &str, auth: &str| {
        parse(&format!(
            "[[listener]]\naddress = \"127.0.0.1:1\"\nauth = \"{auth}\"\nauth_required_message = {value}"
        ))
    };
    let c = listener("\"Please authenticate first\"", "required").unwrap();
    assert_eq!(
        c.listeners[0].auth_required_message.as_deref(),
        Some("Please authenticate first")
    );
    assert_eq!(parse("").unwrap().listeners[0].auth_required_message, None);
    let long = format!("\"{}\"", "a".repeat(MAX_AUTH_REQUIRED_MESSAGE + 1));
    let max = format!("\"{}\"", "a".repeat(MAX_AUTH_REQUIRED_MESSAGE));
    assert!(listener(&max, "required").is_ok());
    for bad in [
        "\"two\\r\\n250 forged\"",
        "\"line\\nfeed\"",
        "\"carriage\\rreturn\"",
        "\"tab\\there\"",
        "\"caf\u{e9}\"",
        "\"\"",
        "\"   \"",
        long.as_str(),
    ] {
        let err = listener(bad, "required").unwrap_err().to_string();
        assert!(
            err.starts_with("listener[0].auth_required_message"),
            "{bad}: {err}"
        );
    }
    for auth in ["optional", "disabled"] {
        let err = listener("\"x\"", auth).unwrap_err().to_string();
        assert!(
            err.starts_with("listener[0].auth_required_message"),
            "{err}"
        );
    }
}

#[test]
fn zero_unauthenticated_commands_means_no_limit() {
    let c = parse("[limits]\nmax_unauthenticated_commands = 0").unwrap();
    assert_eq!(c.limits.max_unauthenticated_commands, 0);
    assert!(parse("[limits]\nmax_auth_failures = 0").is_err());
}

#[test]
fn auth_listeners_unix_and_tcp() {
    use crate::auth_listener::{AuthEndpoint, AuthProtocol};
    let c = parse(
        "data_dir = \"/var/lib/p\"\n\
         [[auth_listener]]\nname = \"sasl\"\npath = \"auth.sock\"\nmode = \"0660\"\ngroup = \"postfix\"\n\
         mechanisms = [\"plain\", \"SCRAM-SHA-256\"]\n\
         [[auth_listener]]\nprotocol = \"postfix-policy\"\naddress = \"127.0.0.1:10040\"\n\
         trusted = [\"10.0.0.0/8\"]\nmax_connections = 8\n",
    )
    .unwrap();
    let [sasl, policy] = &c.auth_listeners[..] else {
        panic!("two auth listeners: {:?}", c.auth_listeners)
    };
    assert_eq!(sasl.protocol, AuthProtocol::Dovecot);
    assert_eq!(
        sasl.endpoint,
        AuthEndpoint::Unix {
            path: "/var/lib/p/auth.sock".into(),
            mode: 0o660,
            owner: None,
            group: Some("postfix".into()),
        }
    );
    assert_eq!(
        sasl.mechanisms,
        Some(vec!["PLAIN".to_string(), "SCRAM-SHA-256".to_string()])
    );
    assert_eq!((sasl.max_in_flight, sasl.max_line), (64, 16 * 1024));
    assert_eq!(policy.name, "auth1");
    assert_eq!(policy.protocol, AuthProtocol::PostfixPolicy);
    assert_eq!(policy.max_connections, 8);
    let AuthEndpoint::Tcp { trusted, .. } = &policy.endpoint else {
        panic!("tcp: {policy:?}")
    };
    assert_eq!(trusted.len(), 1);
}

#[test]
fn auth_listener_errors_name_the_key() {
    for (text, key) in [
        ("[[auth_listener]]\nname = \"a\"\n", "auth_listener.a.path"),
        (
            "[[auth_listener]]\nname = \"a\"\npath = \"s\"\naddress = \"127.0.0.1:1\"\n",
            "auth_listener.a.path",
        ),
        (
            "[[auth_listener]]\nname = \"a\"\npath = \"s\"\nmode = \"999\"\n",
            "auth_listener.a.mode",
        ),
        (
            "[[auth_listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nmode = \"0600\"\n",
            "auth_listener.a.mode",
        ),
        (
            "[[auth_listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ngroup = \"mail\"\n",
            "auth_listener.a.group",
        ),
        (
            "[[auth_listener]]\nname = \"a\"\npath = \"s\"\ntrusted = [\"10.0.0.0/8\"]\n",
            "auth_listener.a.trusted",
        ),
        (
            "[[auth_listener]]\nname = \"a\"\npath = \"s\"\nprotocol = \"cyrus\"\n",
            "auth_listener.a.protocol",
        ),
        (
            "[[auth_listener]]\nname = \"a\"\npath = \"s\"\nmax_line = 100\n",
            "auth_listener.a.max_line",
        ),
        (
            "[[auth_listener]]\nname = \"a\"\npath = \"s\"\nmax_in_flight = 0\n",
            "auth_listener.a.max_in_flight",
        ),
        (
            "[[auth_listener]]\nname = \"a\"\npath = \"s\"\n\
             [[auth_listener]]\nname = \"a\"\npath = \"t\"\n",
            "auth_listener.name",
        ),
    ] {
        match parse(text) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

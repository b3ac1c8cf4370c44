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
idle_timeout = "30s"
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
    let mysql = err("[users]\nbackend = \"mysql\"");
    assert!(mysql.contains("backend = \"mysql\""), "{mysql}");
    assert!(
        mysql.contains(
            "unknown variant `mysql`, expected one of `sqlite`, `file`, `postgres`, `ldap`"
        ),
        "{mysql}"
    );
    assert!(err("[users]\nbackend = \"ldap\"").contains("users.url"));
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
fn every_string_choice_lists_the_valid_ones() {
    let err = |t: &str| parse(t).unwrap_err().to_string();
    let listener = "[[listener]]\naddress = \"127.0.0.1:1\"\n";
    let route = "[delivery]\n[[route]]\naddress = \"h:25\"\n";
    for (text, expected) in [
        (
            format!("{listener}tls = \"startls\""),
            "`starttls`, `implicit`, `none`",
        ),
        (
            format!("{listener}auth = \"maybe\""),
            "`required`, `disabled`, `optional`",
        ),
        (
            "[tls]\nclient_ca = \"c\"\nclient_identity = \"uid\"".to_string(),
            "expected `cn` or `email`",
        ),
        (
            format!("{route}transport = \"pigeon\""),
            "`smtp`, `lmtp`, `maildir`",
        ),
        (
            format!("{route}transport = \"smtp\"\ntls = \"always\""),
            "`starttls`, `opportunistic`, `none`",
        ),
        (
            format!("{route}transport = \"smtp\"\nidentity = \"sasl\""),
            "`none`, `header`, `xclient`",
        ),
    ] {
        let message = err(&text);
        assert!(message.contains("unknown variant"), "{text}: {message}");
        assert!(message.contains(expected), "{text}: {message}");
    }
}

#[test]
fn durations_have_one_form() {
    let c = parse(
        "[limits]\nidle_timeout = \"2m\"\ncommand_timeout = \"1m 30s\"\n\
         [auth]\nverified_cache_ttl = \"0s\"\nfailure_floor = \"250ms\"\n",
    )
    .unwrap();
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.limits.command_timeout, Duration::from_secs(90));
    assert_eq!(c.auth.verified_cache_ttl, Duration::ZERO);
    assert_eq!(c.auth.failure_floor, Duration::from_millis(250));
    assert!(c.deprecations.is_empty());
    let err = parse("[limits]\nidle_timeout = 300")
        .unwrap_err()
        .to_string();
    assert!(err.contains("idle_timeout = 300"), "{err}");
    let err = parse("[limits]\nidle_timeout = \"300\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a duration such as 500ms"), "{err}");
}

#[test]
fn old_integer_duration_keys_still_load_with_a_deprecation() {
    let c = parse(
        "policy = \"p.lua\"\n\
         [limits]\nidle_timeout_secs = 30\n\
         [auth]\nverified_cache_ttl_secs = 60\nfailure_floor_ms = 400\n\
         [lua]\nhook_timeout_ms = 500\n\
         [oauth]\njwks_url = \"https://id.test/jwks\"\njwks_refresh_secs = 7200\n\
         introspection_url = \"https://id.test/i\"\nintrospection_cache_secs = 5\n\
         leeway_secs = 10\nissuer = \"i\"\naudience = \"a\"\n",
    )
    .unwrap();
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.auth.verified_cache_ttl, Duration::from_secs(60));
    assert_eq!(c.auth.failure_floor, Duration::from_millis(400));
    assert_eq!(
        c.policy.as_ref().unwrap().hook_timeout,
        Duration::from_millis(500)
    );
    let oauth = c.oauth.as_ref().unwrap();
    assert_eq!(oauth.leeway, Duration::from_secs(10));
    assert_eq!(oauth.introspection.as_ref().unwrap().cache_ttl.as_secs(), 5);
    let notes: Vec<String> = c.deprecations.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        notes,
        [
            "limits.idle_timeout_secs is deprecated; write limits.idle_timeout = \"30s\" instead",
            "auth.verified_cache_ttl_secs is deprecated; write auth.verified_cache_ttl = \"1m\" instead",
            "auth.failure_floor_ms is deprecated; write auth.failure_floor = \"400ms\" instead",
            "lua.hook_timeout_ms is deprecated; write lua.hook_timeout = \"500ms\" instead",
            "oauth.jwks_refresh_secs is deprecated; write oauth.jwks_refresh = \"2h\" instead",
            "oauth.introspection_cache_secs is deprecated; write oauth.introspection_cache = \"5s\" instead",
            "oauth.leeway_secs is deprecated; write oauth.leeway = \"10s\" instead",
        ]
    );
}

#[test]
fn a_key_under_both_names_is_an_error() {
    for (text, key) in [
        (
            "[limits]\nidle_timeout = \"1m\"\nidle_timeout_secs = 60\n",
            "limits.idle_timeout_secs",
        ),
        (
            "[auth]\nfailure_floor = \"1ms\"\nfailure_floor_ms = 1\n",
            "auth.failure_floor_ms",
        ),
        (
            "[auth]\nverified_cache_ttl = \"1m\"\nverified_cache_ttl_secs = 1\n",
            "auth.verified_cache_ttl_secs",
        ),
        (
            "policy = \"p.lua\"\n[lua]\nhook_timeout = \"1s\"\nhook_timeout_ms = 1\n",
            "lua.hook_timeout_ms",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with(key), "{text}: {err}");
        assert!(err.contains("not both"), "{text}: {err}");
    }
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
    let uid = err("[tls]\nclient_ca = \"c\"\nclient_identity = \"uid\"");
    assert!(uid.contains("client_identity = \"uid\""), "{uid}");
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
    assert!(err.contains("xclient_trusted = [\"nope\"]"), "{err}");
    assert!(err.contains("is not an address or CIDR block"), "{err}");
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
    assert_eq!(c.auth.password_max_age, None);
    assert_eq!(
        c.username_profile,
        portcullis_sasl::UsernameProfile::CaseMapped
    );
    let exact = parse("[users]\nusername_profile = \"exact\"\n").expect("valid");
    assert_eq!(
        exact.username_profile,
        portcullis_sasl::UsernameProfile::Exact
    );
    assert!(parse("[users]\nusername_profile = \"lower\"\n").is_err());
    let aged = parse("[auth]\npassword_max_age = \"90d\"\n").expect("valid");
    assert_eq!(
        aged.auth.password_max_age,
        Some(Duration::from_secs(90 * 86_400))
    );
    assert!(parse("[auth]\npassword_max_age = \"0s\"\n").is_err());
    assert_eq!(c.auth.slot_wait, None, "the auth crate's default");
    assert_eq!(c.auth.slot_queue, None, "the auth crate's default");
    let c = parse("[auth]\nmax_concurrent_verifications = 6\nfailure_floor = \"400ms\"\n")
        .expect("valid");
    assert_eq!(c.auth.max_concurrent_verifications, Some(6));
    assert_eq!(c.auth.failure_floor, Duration::from_millis(400));
    for bad in [
        "[auth]\nmax_concurrent_verifications = 0\n",
        "[auth]\nfailure_floor_ms = 5000\n",
        "[auth]\nfailure_floor = \"1001ms\"\n",
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
    assert!(err.contains("`required`, `disabled`, `optional`"), "{err}");
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
fn sending_limits_and_containment_signals_validate() {
    let config = parse(
        r#"
        [limits.sending]
        messages = ["100/m", "1000/h"]
        recipients = ["2000/d"]
        [limits.sending.tenant]
        bytes = ["1G/d"]
        [containment]
        webhook = "http://127.0.0.1:9/hook"
        webhook_secret = "s"
        [containment.many_networks]
        max_networks = 2
        window = "5m"
        answer = "defer"
        [containment.volume_spike]
        enabled = false
        "#,
    )
    .expect("valid");
    assert_eq!(config.sending.user.messages.len(), 2);
    assert_eq!(config.sending.tenant.bytes[0].count, 1 << 30);
    use crate::containment::Answer;
    use crate::containment::Signal;
    assert_eq!(
        config.containment.answer(Signal::ManyNetworks),
        Some(Answer::Defer)
    );
    assert_eq!(config.containment.answer(Signal::VolumeSpike), None, "off");
    assert_eq!(
        config
            .containment
            .signals
            .many_networks
            .map(|m| m.max_networks),
        Some(2)
    );
    for bad in [
        "[limits.sending]\nmessages = [\"100\"]",
        "[containment.many_networks]\nanswer = \"ban\"",
        "[containment.many_networks]\nfactor = 2.0",
        "[containment]\nwebhook = \"ftp://x\"",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn client_certificate_request_needs_tls_and_a_known_value() {
    let listener =
        |extra: &str| parse(&format!("[[listener]]\naddress = \"127.0.0.1:1\"\n{extra}"));
    assert!(!parse("").unwrap().listeners[0].request_client_certificate);
    let c = listener("client_certificate = \"request\"").unwrap();
    assert!(c.listeners[0].request_client_certificate);
    assert!(
        !listener("client_certificate = \"verify\"")
            .unwrap()
            .listeners[0]
            .request_client_certificate
    );
    let err = listener("client_certificate = \"any\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected `verify` or `request`"), "{err}");
    let err = listener("tls = \"none\"\nauth = \"disabled\"\nclient_certificate = \"request\"")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("listener[0].client_certificate"), "{err}");
    assert!(err.contains("needs tls"), "{err}");
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
    // An unknown protocol is refused by the parser, naming the choices.
    let err = parse("[[auth_listener]]\nname = \"a\"\npath = \"s\"\nprotocol = \"cyrus\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected `dovecot` or `postfix-policy`"),
        "{err}"
    );
}

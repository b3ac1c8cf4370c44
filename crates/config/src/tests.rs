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

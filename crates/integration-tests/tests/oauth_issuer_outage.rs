//! A JWKS issuer that misbehaves, seen from clients: one that hangs, one
//! that refuses connections, one that answers with a redirect, and a
//! config that names it over plain HTTP. An issuer we cannot ask is a
//! temporary failure (`454 4.7.0`) that counts against nobody, so a user
//! who logs in with a password after the outage is not in a cool-down;
//! parallel logins share one fetch; a redirect is never followed (whoever
//! it points at could serve their own keys). The issuers are tiny HTTP
//! servers on loopback threads; the client is curl.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_integration_tests::{curl, sample_message, TestServer, ToolOutput, ALICE, FROM, TO};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "smtp.example.test";

/// Loopback counts (the allow-list is emptied) and two failures cool a
/// user down, so a single outage counted as failures would lock alice out.
const DEFENCE: &str = "[limits.auth]\nallow = []\ndelay_initial = \"0ms\"\ndelay_max = \"0ms\"\n\
                       user_max_failures = 2\nuser_cooldown = \"1h\"\nban_after = 100\n";

/// How an issuer answers `GET /jwks`.
#[derive(Clone)]
enum Issuer {
    /// Reads the request and never answers.
    Hang,
    /// `302` to `/evil`, which serves this key set.
    RedirectTo(String),
}

/// A thread per connection on a free loopback port; returns the port.
fn start_issuer(issuer: Issuer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback bind");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let issuer = issuer.clone();
            std::thread::spawn(move || answer(stream, &issuer));
        }
    });
    port
}

fn answer(mut stream: TcpStream, issuer: &Issuer) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    let _ = reader.read_line(&mut request_line);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim_end().is_empty() => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let reply = match (issuer, path) {
        (Issuer::Hang, _) => {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        (Issuer::RedirectTo(_), "/jwks") => {
            "HTTP/1.1 302 Found\r\nLocation: /evil\r\nContent-Length: 0\r\n\r\n".to_string()
        }
        (Issuer::RedirectTo(jwks), _) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{jwks}",
            jwks.len()
        ),
    };
    let _ = stream.write_all(reply.as_bytes());
}

/// An ES256 key, its JWKS, and tokens it signs.
struct Signer {
    key: rcgen::KeyPair,
}

impl Signer {
    fn new() -> Signer {
        Signer {
            key: rcgen::KeyPair::generate().expect("a P-256 key"),
        }
    }

    fn jwks(&self) -> String {
        let point = self.key.public_key_raw();
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
        .to_string()
    }

    fn token(&self, sub: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".to_string());
        let key = EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(&header, &claims, &key).expect("signed")
    }
}

fn server(jwks_url: &str) -> TestServer {
    TestServer::builder()
        .config(&format!(
            "[oauth]\njwks_url = \"{jwks_url}\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             {DEFENCE}"
        ))
        .start()
}

/// One submission with `--user user` and either a bearer token or, with
/// `password`, AUTH PLAIN.
fn submit(server: &TestServer, user: &str, token: Option<&str>, password: &str) -> ToolOutput {
    let url = format!("smtp://127.0.0.1:{}/client.test", server.submission_port());
    let login = format!("{user}:{password}");
    let mut args = vec![
        "--url",
        &url,
        "--ssl-reqd",
        "-k",
        "--mail-from",
        FROM,
        "--mail-rcpt",
        TO,
        "--upload-file",
        "-",
    ];
    match token {
        Some(token) => args.extend(["--user", user, "--oauth2-bearer", token]),
        None => args.extend(["--user", &login, "--login-options", "AUTH=PLAIN"]),
    }
    curl(&args, &sample_message("issuer-outage"))
}

fn submit_token(server: &TestServer, token: &str) -> ToolOutput {
    submit(server, ALICE.0, Some(token), "")
}

fn submit_password(server: &TestServer) -> ToolOutput {
    submit(server, ALICE.0, None, ALICE.1)
}

#[test]
fn a_hanging_issuer_defers_parallel_logins_at_once_and_cools_nobody_down() {
    let port = start_issuer(Issuer::Hang);
    let server = server(&format!("http://127.0.0.1:{port}/jwks"));
    let token = Signer::new().token(ALICE.0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let logins: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| submit_token(&server, &token)))
            .collect();
        for login in logins {
            let out = login.join().expect("no panic");
            out.assert_contains("< 454 4.7.0").assert_lacks("< 535");
        }
    });
    let took = started.elapsed();
    // One 5 s fetch shared by all four, not four in a row (20 s).
    assert!(
        took < Duration::from_secs(12),
        "4 parallel logins took {took:?}"
    );
    submit_password(&server)
        .assert_contains("< 235 2.7.0")
        .assert_lacks("< 454");
}

#[test]
fn a_refusing_issuer_is_a_temporary_failure_not_a_wrong_credential() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("loopback bind");
    let port = closed.local_addr().expect("bound").port();
    drop(closed);
    let server = server(&format!("http://127.0.0.1:{port}/jwks"));
    let token = Signer::new().token(ALICE.0);
    for _ in 0..3 {
        submit_token(&server, &token)
            .assert_contains("< 454 4.7.0")
            .assert_lacks("< 535");
    }
    submit_password(&server)
        .assert_contains("< 235 2.7.0")
        .assert_lacks("< 454");
    // Said once, however many logins met the outage.
    let log = server.log();
    assert_eq!(log.matches("token issuer unreachable").count(), 1, "{log}");
}

#[test]
fn a_redirecting_issuer_is_not_followed_to_someone_elses_keys() {
    let attacker = Signer::new();
    let port = start_issuer(Issuer::RedirectTo(attacker.jwks()));
    let server = server(&format!("http://127.0.0.1:{port}/jwks"));
    submit_token(&server, &attacker.token(ALICE.0))
        .assert_contains("< 454 4.7.0")
        .assert_lacks("< 235");
    assert_eq!(server.spool_len(), 0);
}

#[test]
fn check_config_refuses_an_issuer_over_plain_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("portcullis.toml");
    let check = |oauth: &str| {
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[oauth]\n{oauth}issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n",
                dir.path().display().to_string()
            ),
        )
        .expect("write");
        std::process::Command::new(portcullis_integration_tests::portcullis_bin())
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .expect("portcullis can be run")
    };
    for (key, url) in [
        ("jwks_url", "http://id.example.test/jwks"),
        ("introspection_url", "http://id.example.test/introspect"),
    ] {
        let out = check(&format!("{key} = \"{url}\"\n"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(key),
            "{key} = {url} was accepted: {stderr}"
        );
        let out = check(&format!(
            "{key} = \"{url}\"\ndangerous_allow_plain_http = true\n"
        ));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = check("jwks_url = \"https://id.example.test/jwks\"\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

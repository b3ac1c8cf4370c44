//! Bearer tokens checked against the network: a JWKS fetched from a URL
//! (cached, re-fetched when a token names a key it lacks) and opaque tokens
//! asked about at an RFC 7662 introspection endpoint (answers cached
//! briefly; endpoint down = `454`, not `535`). The "identity provider" is
//! a tiny HTTP server this test runs on a thread; the client is curl with
//! `--oauth2-bearer`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_integration_tests::{curl, sample_message, TestServer, ToolOutput, ALICE, FROM, TO};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "smtp.example.test";
/// `Basic base64("portcullis:s3cret")`, what introspection must send.
const BASIC: &str = "Basic cG9ydGN1bGxpczpzM2NyZXQ=";

/// What the fake identity provider serves, and what it was asked.
#[derive(Default)]
struct Provider {
    jwks: String,
    /// Opaque token -> the introspection answer.
    tokens: HashMap<String, serde_json::Value>,
    /// `GET /jwks`, `POST /introspect` per request.
    requests: Vec<String>,
}

/// A one-thread HTTP/1.1 server on a free loopback port.
fn start_provider(provider: Arc<Mutex<Provider>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback bind");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = serve(stream, &provider);
        }
    });
    port
}

fn serve(stream: TcpStream, provider: &Mutex<Provider>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let (mut length, mut authorization) = (0usize, String::new());
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(": ") {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "authorization" => authorization = value.to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut words = request_line.split(' ');
    let route = format!(
        "{} {}",
        words.next().unwrap_or(""),
        words.next().unwrap_or("")
    );
    let (status, reply) = {
        let mut p = provider.lock().expect("not poisoned");
        p.requests.push(route.clone());
        match route.as_str() {
            "GET /jwks" => (200, p.jwks.clone()),
            "POST /introspect" if authorization != BASIC => (401, "{}".to_string()),
            "POST /introspect" => {
                let form = String::from_utf8_lossy(&body).to_string();
                let token = form
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
                    .unwrap_or_default()
                    .to_string();
                let answer = p.tokens.get(&token).cloned();
                (
                    200,
                    answer
                        .unwrap_or(serde_json::json!({"active": false}))
                        .to_string(),
                )
            }
            _ => (404, "{}".to_string()),
        }
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    stream.flush()
}

fn count(provider: &Mutex<Provider>, route: &str) -> usize {
    let p = provider.lock().expect("not poisoned");
    p.requests.iter().filter(|r| *r == route).count()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// An ES256 key and its JWKS entry.
struct Signer {
    key: rcgen::KeyPair,
    kid: &'static str,
}

impl Signer {
    fn new(kid: &'static str) -> Signer {
        let key = rcgen::KeyPair::generate().expect("a P-256 key");
        Signer { key, kid }
    }

    fn jwk(&self) -> serde_json::Value {
        let point = self.key.public_key_raw();
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    fn token(&self, sub: &str) -> String {
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 300,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.to_string());
        let key = EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(&header, &claims, &key).expect("signed")
    }
}

fn jwks(signers: &[&Signer]) -> String {
    let keys: Vec<_> = signers.iter().map(|s| s.jwk()).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn server(oauth: &str) -> TestServer {
    TestServer::builder()
        .config(&format!(
            "[oauth]\n{oauth}issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n"
        ))
        .start()
}

fn curl_token(server: &TestServer, user: &str, token: &str) -> ToolOutput {
    let url = format!("smtp://127.0.0.1:{}/client.test", server.submission_port());
    curl(
        &[
            "--url",
            &url,
            "--ssl-reqd",
            "-k",
            "--mail-from",
            FROM,
            "--mail-rcpt",
            TO,
            "--user",
            user,
            "--oauth2-bearer",
            token,
            "--upload-file",
            "-",
        ],
        &sample_message("oauth-remote"),
    )
}

#[test]
fn jwks_url_is_fetched_once_and_again_for_a_new_key() {
    let provider = Arc::new(Mutex::new(Provider::default()));
    let (k1, k2) = (Signer::new("k1"), Signer::new("k2"));
    provider.lock().expect("not poisoned").jwks = jwks(&[&k1]);
    let port = start_provider(provider.clone());
    let server = server(&format!(
        "jwks_url = \"http://127.0.0.1:{port}/jwks\"\njwks_refresh = \"1s\"\n"
    ));
    // Nothing is fetched before a token needs it.
    assert_eq!(count(&provider, "GET /jwks"), 0);
    for _ in 0..2 {
        curl_token(&server, ALICE.0, &k1.token(ALICE.0)).assert_contains("< 235 2.7.0");
    }
    assert_eq!(count(&provider, "GET /jwks"), 1, "the key set is cached");
    // The issuer rotates to k2; the first k2 token makes us fetch again
    // (once the one-second minimum between fetches has passed).
    provider.lock().expect("not poisoned").jwks = jwks(&[&k2]);
    std::thread::sleep(Duration::from_millis(1100));
    curl_token(&server, ALICE.0, &k2.token(ALICE.0)).assert_contains("< 235 2.7.0");
    assert_eq!(count(&provider, "GET /jwks"), 2);
    // k1 is gone from the set now.
    curl_token(&server, ALICE.0, &k1.token(ALICE.0)).assert_contains("< 535 5.7.8");
    assert_eq!(server.spool_messages().len(), 3);
}

#[test]
fn introspection_accepts_active_tokens_and_caches_answers() {
    let provider = Arc::new(Mutex::new(Provider::default()));
    {
        let mut p = provider.lock().expect("not poisoned");
        let active = |sub: &str| {
            serde_json::json!({"active": true, "sub": sub, "aud": AUDIENCE, "iss": ISSUER,
                               "exp": now() + 300})
        };
        p.tokens.insert("opaque-alice".into(), active(ALICE.0));
        p.tokens.insert("opaque-bob".into(), active("bob"));
        p.tokens.insert(
            "opaque-other-audience".into(),
            serde_json::json!({"active": true, "sub": ALICE.0, "aud": "imap"}),
        );
    }
    let port = start_provider(provider.clone());
    let server = server(&format!(
        "introspection_url = \"http://127.0.0.1:{port}/introspect\"\n\
         client_id = \"portcullis\"\nclient_secret = \"s3cret\"\n"
    ));
    for _ in 0..2 {
        curl_token(&server, ALICE.0, "opaque-alice").assert_contains("< 235 2.7.0");
    }
    assert_eq!(
        count(&provider, "POST /introspect"),
        1,
        "the answer is cached"
    );
    server
        .spool_messages()
        .iter()
        .for_each(|m| m.assert_submitted_by(ALICE.0, "OAUTHBEARER"));
    for refused in ["opaque-bob", "opaque-revoked", "opaque-other-audience"] {
        curl_token(&server, ALICE.0, refused).assert_contains("< 535 5.7.8");
    }
    assert!(
        !server.log().contains("s3cret"),
        "the client secret reached the log"
    );
}

#[test]
fn introspection_endpoint_down_is_a_temporary_failure() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("loopback bind");
    let port = closed.local_addr().expect("bound").port();
    drop(closed);
    let server = server(&format!(
        "introspection_url = \"http://127.0.0.1:{port}/introspect\"\n"
    ));
    curl_token(&server, ALICE.0, "opaque-alice")
        .assert_contains("< 454 4.7.0")
        .assert_lacks("< 235");
}

//! OAUTHBEARER and XOAUTH2 with JWTs signed by a key this test makes, its
//! public half in a JWKS file the server reads; driven by curl
//! (`--oauth2-bearer`) and msmtp (`auth oauthbearer|xoauth2` with
//! `passwordeval`). Also msmtp with SCRAM-SHA-256 (through GNU SASL).
//! Refusals: another user's token, expired, wrong audience, wrong key, and
//! the RFC 7628 error challenge before `535`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_integration_tests::{
    curl, msmtp, sample_message, TestServer, ToolOutput, ALICE, BOB, FROM, TO,
};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "smtp.example.test";

/// An ES256 signing key and its JWKS entry.
struct Issuer {
    key: rcgen::KeyPair,
    kid: &'static str,
}

impl Issuer {
    fn new(kid: &'static str) -> Issuer {
        let key = rcgen::KeyPair::generate().expect("a P-256 key can be generated");
        Issuer { key, kid }
    }

    fn jwks(&self) -> String {
        // Uncompressed point: 0x04 || x || y.
        let point = self.key.public_key_raw();
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
        .to_string()
    }

    /// A token for `sub` with `audience`, expiring `ttl` seconds from now.
    fn token(&self, sub: &str, audience: &str, ttl: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs() as i64;
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": audience, "sub": sub, "iat": now, "exp": now + ttl,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.to_string());
        let key = EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(&header, &claims, &key).expect("the token can be signed")
    }
}

/// A well-formed token for alice, but MACed with HS256: never accepted,
/// whatever the key (a JWKS holds public keys only).
fn hs256_token() -> String {
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": ALICE.0, "exp": 4_000_000_000u64,
    });
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".to_string());
    let key = EncodingKey::from_secret(b"k1");
    jsonwebtoken::encode(&header, &claims, &key).expect("the token can be MACed")
}

fn server(issuer: &Issuer) -> TestServer {
    oauth_server(issuer, None)
}

/// With `mechanisms`, the only listener is a STARTTLS `submission` that
/// offers just those (curl 7.88 picks OAUTHBEARER whenever it is offered,
/// whatever `--login-options` says).
fn oauth_server(issuer: &Issuer, mechanisms: Option<&str>) -> TestServer {
    let oauth = format!(
        "[oauth]\njwks_file = \"jwks.json\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n"
    );
    let builder = TestServer::builder()
        .config(&oauth)
        .file("jwks.json", &issuer.jwks());
    match mechanisms {
        None => builder.start(),
        Some(list) => builder
            .without_default_listeners()
            .config(&format!(
                "[[listener]]\nname = \"submission\"\naddress = \"127.0.0.1:{{port:submission}}\"\n\
                 tls = \"starttls\"\nmechanisms = {list}\n"
            ))
            .start(),
    }
}

fn curl_submit(server: &TestServer, mechanism: &str, user: &str, token: &str) -> ToolOutput {
    let url = format!("smtp://127.0.0.1:{}/client.test", server.submission_port());
    let login_options = format!("AUTH={mechanism}");
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
            "--login-options",
            &login_options,
            "--upload-file",
            "-",
        ],
        &sample_message("curl-oauth"),
    )
}

fn msmtp_submit(server: &TestServer, auth: &str, user: &str, secret: &str) -> ToolOutput {
    let port = format!("--port={}", server.submission_port());
    let auth = format!("--auth={auth}");
    let user = format!("--user={user}");
    let eval = format!("--passwordeval=echo {secret}");
    let from = format!("--from={FROM}");
    msmtp(
        &[
            "--debug",
            "--host=127.0.0.1",
            &port,
            "--tls=on",
            "--tls-starttls=on",
            "--tls-certcheck=off",
            &auth,
            &user,
            &eval,
            &from,
            TO,
        ],
        &sample_message("msmtp"),
    )
}

#[test]
fn curl_good_tokens_submit_with_both_mechanisms() {
    let issuer = Issuer::new("k1");
    for mechanism in ["XOAUTH2", "OAUTHBEARER"] {
        let server = oauth_server(&issuer, Some(&format!("[\"{mechanism}\", \"PLAIN\"]")));
        let token = issuer.token(ALICE.0, AUDIENCE, 300);
        let out = curl_submit(&server, mechanism, ALICE.0, &token);
        out.assert_contains(&format!("> AUTH {mechanism}"))
            .assert_contains("< 235 2.7.0")
            .assert_success(true);
        server
            .single_message()
            .assert_submitted_by(ALICE.0, mechanism);
        assert!(
            !server.log().contains(&token),
            "the token must not be logged"
        );
    }
}

#[test]
fn curl_bad_tokens_get_the_error_challenge_then_535() {
    let issuer = Issuer::new("k1");
    let stranger = Issuer::new("k1");
    let cases = [
        ("another user's token", issuer.token("bob", AUDIENCE, 300)),
        ("expired", issuer.token(ALICE.0, AUDIENCE, -3600)),
        (
            "wrong audience",
            issuer.token(ALICE.0, "other.example.test", 300),
        ),
        (
            "signed by another key",
            stranger.token(ALICE.0, AUDIENCE, 300),
        ),
        ("not a JWT", "opaque-token".to_string()),
        ("HS256 (alg confusion)", hs256_token()),
    ];
    let servers = [
        ("XOAUTH2", oauth_server(&issuer, Some("[\"XOAUTH2\"]"))),
        ("OAUTHBEARER", server(&issuer)),
    ];
    for (case, token) in &cases {
        for (mechanism, server) in &servers {
            let out = curl_submit(server, mechanism, ALICE.0, token);
            out.assert_contains(&format!("> AUTH {mechanism}"));
            // base64 of `{"status":"invalid_token"`.
            out.assert_contains("< 334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIi")
                .assert_lacks("< 235");
            // curl answers OAUTHBEARER's error with ^A and reads the 535;
            // for XOAUTH2 it gives up at the 334 and closes.
            if *mechanism == "OAUTHBEARER" {
                out.assert_contains("> AQ==").assert_contains("< 535 5.7.8");
            }
            assert_eq!(out.status.code(), Some(67), "{case} {mechanism}");
        }
    }
    for (_, server) in &servers {
        let log = server.log();
        assert!(
            log.contains("reason=bearer token is for another user"),
            "{log}"
        );
        assert!(
            log.contains("reason=invalid bearer token detail=ExpiredSignature"),
            "{log}"
        );
        assert!(server.spool_messages().is_empty());
    }
}

#[test]
fn msmtp_oauthbearer_and_xoauth2_with_passwordeval() {
    let issuer = Issuer::new("k1");
    for (auth, mechanism) in [("oauthbearer", "OAUTHBEARER"), ("xoauth2", "XOAUTH2")] {
        let server = server(&issuer);
        let token = issuer.token(ALICE.0, AUDIENCE, 300);
        msmtp_submit(&server, auth, ALICE.0, &token)
            .assert_contains("<-- 235 2.7.0")
            .assert_success(true);
        server
            .single_message()
            .assert_submitted_by(ALICE.0, mechanism);
        let bad = issuer.token("bob", AUDIENCE, 300);
        msmtp_submit(&server, auth, ALICE.0, &bad)
            .assert_contains("<-- 535 5.7.8")
            .assert_success(false);
    }
}

#[test]
fn msmtp_scram_sha_256() {
    let server = TestServer::start("");
    msmtp_submit(&server, "scram-sha-256", ALICE.0, "'correct horse'")
        .assert_contains("AUTH SCRAM-SHA-256")
        .assert_contains("<-- 235 2.7.0")
        .assert_success(true);
    server
        .single_message()
        .assert_submitted_by(ALICE.0, "SCRAM-SHA-256");
    msmtp_submit(&server, "scram-sha-256", ALICE.0, "wrong")
        .assert_contains("<-- 535 5.7.8")
        .assert_success(false);
}

#[test]
fn without_oauth_config_bearer_mechanisms_are_not_offered() {
    let server = TestServer::start("");
    let issuer = Issuer::new("k1");
    let out = curl_submit(
        &server,
        "XOAUTH2",
        ALICE.0,
        &issuer.token(ALICE.0, AUDIENCE, 60),
    );
    out.assert_lacks("XOAUTH2 ").assert_lacks("< 235");
}

/// smtp-server's XOAUTH2 failure `data`: a policy that refuses a login
/// whose token was good sets the error challenge's `status`, `schemes` and
/// `scope`; the client acknowledges it and gets the `535`.
#[test]
fn a_policy_sets_the_oauth_error_challenge() {
    let issuer = Issuer::new("k1");
    let server = TestServer::builder()
        .config("policy = \"policy.lua\"\n")
        .config(&format!(
            "[oauth]\njwks_file = \"jwks.json\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n"
        ))
        .file("jwks.json", &issuer.jwks())
        .file(
            "policy.lua",
            r#"
portcullis.on('smtp_server_auth', function(auth, conn)
  if auth.verified and auth.user == 'bob' then
    return portcullis.reject{ oauth = { status = '401', schemes = 'bearer mac', scope = 'mail.send' } }
  end
  return true
end)
"#,
        )
        .start();
    let bob = issuer.token(BOB.0, AUDIENCE, 300);
    let alice = issuer.token(ALICE.0, AUDIENCE, 300);
    let out = portcullis_integration_tests::python(
        &format!(
            r#"
        import json
        def xoauth2(user, token):
            return b64(f"user={{user}}\x01auth=Bearer {{token}}\x01\x01")
        s = connect()
        code, challenge = s.docmd("AUTH", "XOAUTH2 " + xoauth2("{bob_name}", "{bob}"))
        say("challenge: %d %s" % (code, json.dumps(json.loads(base64.b64decode(challenge)), sort_keys=True)))
        show("after-ack", s.docmd(""))
        show("alice", s.docmd("AUTH", "XOAUTH2 " + xoauth2("{alice_name}", "{alice}")))
        "#,
            bob_name = BOB.0,
            alice_name = ALICE.0,
        ),
        &[server.submission_port()],
    );
    out.assert_contains(
        r#"challenge: 334 {"schemes": "bearer mac", "scope": "mail.send", "status": "401"}"#,
    )
    .assert_reply("after-ack", "535 5.7.8")
    .assert_reply("alice", "235 2.7.0");
}

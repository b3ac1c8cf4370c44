//! RFC 7662 token introspection, for opaque bearer tokens: the token is
//! POSTed to the issuer's endpoint, which says whether it is active and for
//! whom. Answers are cached briefly (keyed by the token's SHA-256, so the
//! token itself is not kept), which bounds the requests a busy client
//! causes; a cached answer is still checked against the token's `exp` on
//! every use. A transport failure is not an answer: it is not cached and
//! makes the attempt a temporary failure (`454`), not a refusal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use portcullis_sasl::Secret;
use sha2::{Digest, Sha256};

use crate::jwks::{agent, HTTP_TIMEOUT, MAX_BODY};
use crate::oauth::TokenError;

/// What the endpoint said about a token (cached).
#[derive(Clone)]
struct Answer {
    /// The user, or why the token is refused.
    verdict: Result<String, Refused>,
    /// The token's `exp`, seconds since the epoch.
    exp: Option<u64>,
}

/// The checks a token's claims must pass.
pub(crate) struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub user_claim: &'a str,
    pub leeway: Duration,
}

/// An introspection endpoint and its cache.
pub(crate) struct Introspector {
    url: String,
    /// Whether the endpoint answered its last request.
    reach: crate::reachability::Reachability,
    /// `Basic base64(id:secret)`, if the endpoint wants credentials.
    authorization: Option<Secret>,
    agent: ureq::Agent,
    cache: moka::sync::Cache<[u8; 32], Answer>,
}

impl Introspector {
    pub(crate) fn new(
        url: &str,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        cache_ttl: Duration,
    ) -> Self {
        let authorization = client_id.map(|id| {
            let pair = format!("{id}:{}", client_secret.unwrap_or_default());
            Secret::from(format!("Basic {}", STANDARD.encode(pair)).as_str())
        });
        Introspector {
            url: url.to_string(),
            reach: crate::reachability::Reachability::new("introspection", url),
            authorization,
            agent: agent(HTTP_TIMEOUT),
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl.max(Duration::from_millis(1)))
                .build(),
        }
    }

    /// The user `token` is for. May block (one HTTP request on a miss).
    pub(crate) fn user(&self, token: &Secret, expect: &Expect<'_>) -> Result<String, TokenError> {
        let key: [u8; 32] = Sha256::digest(token.expose()).into();
        let answer = match self.cache.get(&key) {
            Some(answer) => answer,
            None => {
                let answer = self.ask(token, expect)?;
                self.cache.insert(key, answer.clone());
                answer
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if answer
            .exp
            .is_some_and(|exp| exp.saturating_add(expect.leeway.as_secs()) < now)
        {
            return Err(TokenError::Invalid("token expired".into()));
        }
        answer
            .verdict
            .map_err(|why| TokenError::Invalid(why.to_string()))
    }

    /// Whether the endpoint answered its last request.
    pub(crate) fn up(&self) -> bool {
        self.reach.up()
    }

    /// One request, its transport outcome recorded (an answer about the
    /// token, whatever it says, means the endpoint is up).
    fn ask(&self, token: &Secret, expect: &Expect<'_>) -> Result<Answer, TokenError> {
        let answer = self.request(token, expect);
        match &answer {
            Err(TokenError::Unavailable(why)) => self.reach.failed(why),
            _ => self.reach.answered(),
        }
        answer
    }

    fn request(&self, token: &Secret, expect: &Expect<'_>) -> Result<Answer, TokenError> {
        let unavailable = |e: String| TokenError::Unavailable(format!("introspection: {e}"));
        let token = std::str::from_utf8(token.expose())
            .map_err(|_| TokenError::Invalid("token is not UTF-8".into()))?;
        let mut request = self
            .agent
            .post(&self.url)
            .header("Accept", "application/json");
        if let Some(authorization) = &self.authorization {
            // Invariant: made from a &str above.
            let value = std::str::from_utf8(authorization.expose()).unwrap_or_default();
            request = request.header("Authorization", value);
        }
        let mut response = request
            .send_form([("token", token), ("token_type_hint", "access_token")])
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| unavailable(e.to_string()))?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&body).map_err(|e| unavailable(format!("not JSON: {e}")))?;
        Ok(judge(&claims, expect))
    }
}

/// Why the endpoint's answer refuses a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("token is not active")]
    Inactive,
    #[error("issuer {0} is not ours")]
    Issuer(String),
    #[error("token is for another audience")]
    Audience,
    #[error("no {0:?} naming the user")]
    NoUser(String),
}

/// RFC 7662 §2.2: `active` must be true; `iss` and `aud`, when given, must
/// be ours; the user is in the configured claim (or `username`).
fn judge(claims: &serde_json::Map<String, serde_json::Value>, expect: &Expect<'_>) -> Answer {
    use serde_json::Value;
    let exp = claims.get("exp").and_then(Value::as_u64);
    let verdict = (|| {
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(Refused::Inactive);
        }
        if let Some(iss) = claims.get("iss") {
            if iss.as_str() != Some(expect.issuer) {
                return Err(Refused::Issuer(iss.to_string()));
            }
        }
        let audience_ok = match claims.get("aud") {
            None => true,
            Some(Value::String(aud)) => aud == expect.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expect.audience)),
            Some(_) => false,
        };
        if !audience_ok {
            return Err(Refused::Audience);
        }
        [expect.user_claim, "username"]
            .iter()
            .find_map(|claim| claims.get(*claim).and_then(Value::as_str))
            .filter(|user| !user.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Refused::NoUser(expect.user_claim.to_string()))
    })();
    Answer { verdict, exp }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint that answers every request with a redirect to a page
    /// saying any token is alice's.
    fn redirecting_endpoint() -> String {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback bind");
        let port = listener.local_addr().expect("bound").port();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                let _ = reader.by_ref().take(length).read_to_end(&mut Vec::new());
                let reply = if request_line.contains("/introspect") {
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: /forged\r\nContent-Length: 0\r\n\r\n"
                        .to_string()
                } else {
                    let body = r#"{"active": true, "sub": "alice"}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        format!("http://127.0.0.1:{port}/introspect")
    }

    #[test]
    fn a_redirect_is_not_followed() {
        let url = redirecting_endpoint();
        let introspector = Introspector::new(&url, None, None, Duration::from_secs(60));
        let answer = introspector.user(&Secret::from("opaque"), &expect());
        assert!(
            matches!(&answer, Err(TokenError::Unavailable(why)) if why.contains("307")),
            "{answer:?}"
        );
    }

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://id.test",
            audience: "smtp",
            user_claim: "sub",
            leeway: Duration::from_secs(30),
        }
    }

    fn verdict(json: serde_json::Value) -> Result<String, Refused> {
        let serde_json::Value::Object(claims) = json else {
            panic!("not an object")
        };
        judge(&claims, &expect()).verdict
    }

    #[test]
    fn active_ours_and_named() {
        use serde_json::json;
        assert_eq!(
            verdict(json!({"active": true, "sub": "ann"})),
            Ok("ann".into())
        );
        assert_eq!(
            verdict(
                json!({"active": true, "username": "ann", "aud": ["x", "smtp"],
                           "iss": "https://id.test"})
            ),
            Ok("ann".into())
        );
        for refused in [
            json!({"active": false, "sub": "ann"}),
            json!({"sub": "ann"}),
            json!({"active": true, "sub": "ann", "aud": "other"}),
            json!({"active": true, "sub": "ann", "iss": "https://evil.test"}),
            json!({"active": true}),
        ] {
            assert!(verdict(refused.clone()).is_err(), "{refused}");
        }
    }
}

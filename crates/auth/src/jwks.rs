//! The keys JWTs are checked with: a JWKS from a file (read once), or from
//! a URL, fetched on first use and again when the set is older than its
//! refresh interval or a token names a key id the set lacks (so a key
//! rotation at the issuer is picked up at once). Fetches happen inside the
//! token check, which runs on the blocking pool; at most one every
//! [`MIN_REFETCH`], so a flood of tokens with made-up key ids cannot turn
//! into a flood of requests to the issuer. A failed fetch keeps the keys
//! we had.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;

/// Shortest time between two fetches of a remote JWKS (or the refresh
/// interval, if that is shorter).
pub(crate) const MIN_REFETCH: Duration = Duration::from_secs(5);
/// Longest a JWKS or introspection request may take.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS or introspection answer we read.
pub(crate) const MAX_BODY: u64 = 1024 * 1024;

/// One public key: its `kid`, its `alg` (as `Algorithm`'s Debug name), and
/// the key.
pub(crate) struct Key {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub key: DecodingKey,
}

/// Parses an RFC 7517 key set.
pub(crate) fn parse(text: &str) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
            key,
        });
    }
    if keys.is_empty() {
        return Err("no keys".into());
    }
    Ok(keys)
}

/// Where the keys come from.
pub(crate) enum Keys {
    Fixed(Arc<Vec<Key>>),
    Remote(RemoteJwks),
}

impl Keys {
    /// The current keys, fetched first if needed for `kid`.
    pub(crate) fn current(&self, kid: Option<&str>) -> Arc<Vec<Key>> {
        match self {
            Keys::Fixed(keys) => keys.clone(),
            Keys::Remote(remote) => remote.current(kid),
        }
    }
}

/// A JWKS fetched over HTTP(S).
pub(crate) struct RemoteJwks {
    url: String,
    refresh: Duration,
    agent: ureq::Agent,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: Arc<Vec<Key>>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

impl RemoteJwks {
    pub(crate) fn new(url: &str, refresh: Duration) -> Self {
        RemoteJwks {
            url: url.to_string(),
            refresh,
            agent: agent(),
            state: Mutex::new(State::default()),
        }
    }

    fn current(&self, kid: Option<&str>) -> Arc<Vec<Key>> {
        // Invariant: nothing panics while holding the lock (a fetch error
        // is a value), so it is never poisoned; if it were, use the state.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let stale = state
            .fetched
            .is_none_or(|at| now.duration_since(at) >= self.refresh);
        let unknown_kid =
            kid.is_some_and(|kid| !state.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        let may_try = state
            .attempted
            .is_none_or(|at| now.duration_since(at) >= MIN_REFETCH.min(self.refresh));
        if (stale || unknown_kid) && may_try {
            state.attempted = Some(now);
            match self.fetch() {
                Ok(keys) => {
                    tracing::info!(url = %self.url, keys = keys.len(), "fetched JWKS");
                    state.keys = Arc::new(keys);
                    state.fetched = Some(now);
                }
                Err(error) => {
                    tracing::warn!(url = %self.url, %error, "JWKS fetch failed; keeping the keys we had")
                }
            }
        }
        state.keys.clone()
    }

    fn fetch(&self) -> Result<Vec<Key>, String> {
        let mut response = self
            .agent
            .get(&self.url)
            .call()
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        parse(&body)
    }
}

/// An HTTP client with a global timeout that reports HTTP errors as
/// statuses (the caller says what each means).
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into()
}

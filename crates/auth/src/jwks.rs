//! The keys JWTs are checked with: a JWKS from a file (read once), or from
//! a URL, fetched on first use and again when the set is older than its
//! refresh interval or a token names a key id the set lacks (so a key
//! rotation at the issuer is picked up at once). Fetches happen inside the
//! token check, which runs on the blocking pool.
//!
//! Three rules keep the issuer from hurting us:
//! - **One fetch at a time, no lock across I/O.** A set that holds the
//!   token's key answers at once; if it is due for a refresh, the refresh
//!   runs on a thread of its own. A check whose key the set lacks waits for
//!   a fetch (its own, or the one under way: never two, never longer than
//!   the timeout). The lock is only taken to read and replace the set, so
//!   parallel logins against a hanging issuer all answer after one
//!   timeout, not one timeout each.
//! - **Bounded.** At most one fetch every [`MIN_REFETCH`] (counted from the
//!   end of the last attempt), so a flood of tokens with made-up key ids
//!   cannot become a flood of requests; each request is bounded by
//!   [`HTTP_TIMEOUT`] and [`MAX_BODY`], and redirects are not followed: the
//!   set comes from the configured URL or from nowhere.
//! - **An outage is not a verdict.** A failed fetch keeps the keys we had.
//!   When the set we have cannot judge the token (nothing fetched yet, or
//!   the token names a key id we lack while the issuer is failing), the
//!   answer is [`KeysUnavailable`]: the client gets "try later", and the
//!   attempt is not counted as a failure, so an issuer outage never puts
//!   users in a cool-down.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;

/// Shortest time between the end of one fetch of a remote JWKS and the
/// start of the next (or the refresh interval, if that is shorter).
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

/// Why a key set could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    #[error("not a JWKS: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unusable key: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
    #[error("no keys")]
    NoKeys,
    #[error("{0}")]
    Http(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("HTTP client panicked")]
    Panicked,
}

/// Parses an RFC 7517 key set.
pub(crate) fn parse(text: &str) -> Result<Vec<Key>, JwksError> {
    let set: JwkSet = serde_json::from_str(text)?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk)?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
            key,
        });
    }
    if keys.is_empty() {
        return Err(JwksError::NoKeys);
    }
    Ok(keys)
}

/// The key set cannot judge a token now (the issuer is unreachable or
/// answers nonsense): a temporary failure, never a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeysUnavailable(pub String);

/// Where the keys come from.
pub(crate) enum Keys {
    Fixed(Arc<Vec<Key>>),
    Remote(RemoteJwks),
}

impl Keys {
    /// The keys to check a token naming `kid` with, fetched first if needed.
    pub(crate) fn current(&self, kid: Option<&str>) -> Result<Arc<Vec<Key>>, KeysUnavailable> {
        match self {
            Keys::Fixed(keys) => Ok(keys.clone()),
            Keys::Remote(remote) => remote.current(kid),
        }
    }
}

/// A JWKS fetched over HTTP(S). Cheap to share: the state is behind an
/// `Arc`, so a background refresh can outlive the check that started it.
pub(crate) struct RemoteJwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    /// Whether the URL answered its last fetch.
    reach: crate::reachability::Reachability,
    refresh: Duration,
    timeout: Duration,
    agent: ureq::Agent,
    state: Mutex<State>,
    /// Signalled when a fetch ends.
    fetched: Condvar,
}

#[derive(Default)]
struct State {
    keys: Arc<Vec<Key>>,
    /// When the set was last fetched successfully.
    fetched: Option<Instant>,
    /// When the last attempt ended.
    attempted: Option<Instant>,
    /// Why the last attempt failed; `None` if it succeeded.
    failing: Option<String>,
    /// A fetch is under way.
    in_flight: bool,
}

impl State {
    fn has(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => !self.keys.is_empty(),
        }
    }

    /// The set, if it can judge a token naming `kid`.
    fn answer(&self, kid: Option<&str>) -> Result<Arc<Vec<Key>>, KeysUnavailable> {
        if self.keys.is_empty() {
            let why = self.failing.as_deref().unwrap_or("not fetched yet");
            return Err(KeysUnavailable(format!("no JWKS: {why}")));
        }
        if let (false, Some(why)) = (self.has(kid), &self.failing) {
            return Err(KeysUnavailable(format!(
                "token names a key id we lack and the JWKS fetch fails: {why}"
            )));
        }
        Ok(self.keys.clone())
    }
}

impl RemoteJwks {
    pub(crate) fn new(url: &str, refresh: Duration) -> Self {
        Self::with_timeout(url, refresh, HTTP_TIMEOUT)
    }

    pub(crate) fn with_timeout(url: &str, refresh: Duration, timeout: Duration) -> Self {
        RemoteJwks {
            inner: Arc::new(Inner {
                url: url.to_string(),
                reach: crate::reachability::Reachability::new("JWKS", url),
                refresh,
                timeout,
                agent: agent(timeout),
                state: Mutex::new(State::default()),
                fetched: Condvar::new(),
            }),
        }
    }

    /// Whether the URL answered its last fetch.
    pub(crate) fn up(&self) -> bool {
        self.inner.reach.up()
    }

    /// The keys for a token naming `kid`. A set that holds the key answers
    /// at once (a due refresh runs on its own thread); one that lacks it
    /// waits for a fetch (ours or the one under way).
    fn current(&self, kid: Option<&str>) -> Result<Arc<Vec<Key>>, KeysUnavailable> {
        let inner = &self.inner;
        let mut state = inner.lock();
        let now = Instant::now();
        let stale = state
            .fetched
            .is_none_or(|at| now.duration_since(at) >= inner.refresh);
        let may_try = state
            .attempted
            .is_none_or(|at| now.duration_since(at) >= MIN_REFETCH.min(inner.refresh));
        let usable = state.has(kid);
        if (stale || !usable) && may_try && !state.in_flight {
            state.in_flight = true;
            drop(state);
            if usable && self.refresh_in_background() {
                return inner.lock().answer(kid);
            }
            inner.fetch_and_store();
            state = inner.lock();
        } else if state.in_flight && !usable {
            // Only the fetch under way can answer: wait for it, a little
            // longer than it may take.
            let limit = inner.timeout + Duration::from_secs(1);
            state = inner
                .fetched
                .wait_timeout_while(state, limit, |s| s.in_flight)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.answer(kid)
    }

    /// Starts a refresh on its own thread; `false` if no thread could be
    /// started (the caller fetches itself).
    fn refresh_in_background(&self) -> bool {
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("jwks-refresh".into())
            .spawn(move || inner.fetch_and_store())
            .is_ok()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Invariant: nothing panics while holding the lock (the fetch runs
        // without it), so it is never poisoned; if it were, use the state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One fetch (the caller set `in_flight`), its result stored, and
    /// everyone waiting for it woken.
    fn fetch_and_store(&self) {
        let result = self.fetch();
        let mut state = self.lock();
        state.in_flight = false;
        state.attempted = Some(Instant::now());
        match result {
            Ok(keys) => {
                self.reach.answered();
                tracing::info!(url = %self.url, keys = keys.len(), "fetched JWKS");
                state.keys = Arc::new(keys);
                state.fetched = state.attempted;
                state.failing = None;
            }
            Err(error) => {
                let error = error.to_string();
                self.reach.failed(&error);
                state.failing = Some(error);
            }
        }
        self.fetched.notify_all();
    }

    /// One GET of the set. Errors are values (a panic in the HTTP client
    /// is one too), so `in_flight` is always cleared.
    fn fetch(&self) -> Result<Vec<Key>, JwksError> {
        let http = |e: ureq::Error| JwksError::Http(e.to_string());
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut response = self.agent.get(&self.url).call().map_err(http)?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(JwksError::Status(status));
            }
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_string()
                .map_err(http)?;
            parse(&body)
        }));
        attempt.unwrap_or(Err(JwksError::Panicked))
    }
}

/// An HTTP client with a global timeout that follows no redirects (a
/// redirect is answered as the status it is, which callers refuse) and
/// reports HTTP errors as statuses (the caller says what each means).
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into()
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;

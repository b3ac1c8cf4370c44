//! `kumo.http`: the HTTP client a policy uses to ask the operator's own
//! API about a login, with KumoMTA's names for what an auth check needs:
//!
//! ```lua
//! local client = kumo.http.build_client { timeout = '3 seconds' }
//! local response = client:post('https://auth.example/check')
//!   :header('Content-Type', 'application/json')
//!   :body(kumo.json_encode { user = authc, password = password })
//!   :send()
//! return response:status_is_success() and response:json().ok
//! ```
//!
//! `build_client{timeout=, connect_timeout=, user_agent=}`; `client:get`,
//! `post`, `put`, `delete`, `patch`, `head`, `request(method, url)`;
//! on a request `header(k, v)`, `headers{…}`, `basic_auth(user, pass)`,
//! `bearer_auth(token)`, `body(text)`, `form_url_encoded{…}`,
//! `timeout(d)`, `send()`; on a response `status_code()`,
//! `status_reason()`, `status_is_success()`, `status_is_client_error()`,
//! `status_is_server_error()`, `headers()`, `content_length()`, `text()`,
//! `bytes()`, and (ours) `json()`.
//!
//! **It blocks the calling thread, on purpose.** Hooks run on tokio's
//! blocking pool (the server's `policy.rs` hands every hook to
//! `spawn_blocking`), never on a session worker, so a synchronous client
//! (ureq) is the simple and right tool: the hook waits, other sessions go
//! on.
//!
//! **Bounded.** Every request ends by the earlier of its timeout (default
//! 10 s) and the hook's own deadline; the body read is at most
//! [`MAX_RESPONSE`] bytes; redirects are not followed (a credential sent
//! to one host must not be replayed to another). A URL must be `https://`,
//! except to a loopback address, so a password never crosses a network in
//! clear.
//!
//! **A service that cannot be reached is not a wrong password.** No
//! connection, a timeout or a body cut short raises an error the pool turns
//! into a deferral (`454 4.7.0`), not counted against the client, as an
//! unreachable token issuer is; a script may also `pcall` it and decide
//! itself. An HTTP status is an answer: the script reads it.

use std::time::Duration;

use mlua::{AnyUserData, Lua, LuaSerdeExt, Table, UserData, UserDataMethods, Value};

use crate::sandbox::CallDeadline;

/// The largest response body read.
pub(crate) const MAX_RESPONSE: u64 = 1024 * 1024;

/// The timeout of a client built without one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A service could not be reached (a Lua error payload; also Vault's):
/// the pool defers.
#[derive(Debug, thiserror::Error)]
#[error("{0} (unreachable)")]
pub(crate) struct Unreachable(pub String);

impl Unreachable {
    /// The `Unreachable` behind a Lua error, if that is what it is.
    pub fn find(error: &mlua::Error) -> Option<&Unreachable> {
        match error {
            mlua::Error::CallbackError { cause, .. } => Unreachable::find(cause),
            mlua::Error::WithContext { cause, .. } => Unreachable::find(cause),
            mlua::Error::ExternalError(e) => e.downcast_ref::<Unreachable>(),
            _ => None,
        }
    }
}

fn misuse(e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("kumo.http: {e}"))
}

pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let http = lua.create_table()?;
    http.set("build_client", lua.create_function(build_client)?)?;
    kumo.set("http", http)
}

struct Client {
    agent: ureq::Agent,
    timeout: Duration,
}

fn duration(value: Value, what: &str) -> mlua::Result<Option<Duration>> {
    match value {
        Value::Nil => Ok(None),
        Value::Integer(n) if n >= 0 => Ok(Some(Duration::from_secs(n as u64))),
        Value::Number(n) if n >= 0.0 && n.is_finite() => Ok(Some(Duration::from_secs_f64(n))),
        Value::String(s) => crate::memoize::parse_duration(&s.to_str()?)
            .map(Some)
            .map_err(misuse),
        _ => Err(misuse(format!(
            "{what} must be seconds or e.g. '5 seconds'"
        ))),
    }
}

fn build_client(_: &Lua, params: Option<Table>) -> mlua::Result<Client> {
    let (mut timeout, mut connect, mut agent_name) = (None, None, None);
    if let Some(p) = params {
        timeout = duration(p.get("timeout")?, "timeout")?;
        connect = duration(p.get("connect_timeout")?, "connect_timeout")?;
        agent_name = p.get::<Option<String>>("user_agent")?;
    }
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect.unwrap_or(timeout).min(timeout)));
    if let Some(name) = agent_name {
        config = config.user_agent(name);
    }
    Ok(Client {
        agent: config.build().into(),
        timeout,
    })
}

impl UserData for Client {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        for method in ["get", "post", "put", "delete", "patch", "head"] {
            methods.add_method(method, move |_, client, url: String| {
                Request::new(client, method, url)
            });
        }
        methods.add_method("request", |_, client, (method, url): (String, String)| {
            Request::new(client, &method.to_ascii_lowercase(), url)
        });
    }
}

struct Request {
    agent: ureq::Agent,
    method: ureq::http::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl Request {
    fn new(client: &Client, method: &str, url: String) -> mlua::Result<Request> {
        check_url(&url).map_err(misuse)?;
        let method = ureq::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(misuse)?;
        Ok(Request {
            agent: client.agent.clone(),
            method,
            url,
            headers: Vec::new(),
            body: None,
            timeout: client.timeout,
        })
    }

    fn send(&self, lua: &Lua) -> mlua::Result<Response> {
        let mut builder = ureq::http::Request::builder()
            .method(self.method.clone())
            .uri(&self.url);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        // Never past the hook's deadline: the client already got its 454.
        let timeout = CallDeadline::remaining(lua, self.timeout).min(self.timeout);
        let unreachable = |e: ureq::Error| {
            mlua::Error::external(Unreachable(format!(
                "kumo.http: {} {}: {e}",
                self.method, self.url
            )))
        };
        use ureq::RequestExt as _;
        let result = match &self.body {
            Some(body) => builder
                .body(body.clone())
                .map_err(misuse)?
                .with_agent(&self.agent)
                .configure()
                .timeout_global(Some(timeout))
                .run(),
            None => builder
                .body(())
                .map_err(misuse)?
                .with_agent(&self.agent)
                .configure()
                .timeout_global(Some(timeout))
                .run(),
        };
        let mut response = result.map_err(unreachable)?;
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .map_err(unreachable)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Why a URL is refused.
#[derive(Debug, thiserror::Error)]
enum UrlError {
    #[error("{0}: {1}")]
    Unparsable(String, ureq::http::uri::InvalidUri),
    #[error("{0}: plain http only to a loopback address; use https")]
    PlainHttp(String),
    #[error("{0}: not an http(s) URL")]
    NotHttp(String),
}

/// `https://`, or `http://` to a loopback host.
fn check_url(url: &str) -> Result<(), UrlError> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| UrlError::Unparsable(url.to_string(), e))?;
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(UrlError::PlainHttp(url.to_string())),
        _ => Err(UrlError::NotHttp(url.to_string())),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn chain(
    methods: &mut impl UserDataMethods<Request>,
    name: &'static str,
    f: fn(&mut Request, &Lua, mlua::MultiValue) -> mlua::Result<()>,
) {
    methods.add_function(
        name,
        move |lua, (ud, args): (AnyUserData, mlua::MultiValue)| {
            f(&mut *ud.borrow_mut::<Request>()?, lua, args)?;
            Ok(ud)
        },
    );
}

impl UserData for Request {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        chain(methods, "header", |r, lua, args| {
            let (name, value): (String, String) = lua.unpack_multi(args)?;
            r.headers.push((name, value));
            Ok(())
        });
        chain(methods, "headers", |r, lua, args| {
            let table: Table = lua.unpack_multi(args)?;
            for pair in table.pairs::<String, String>() {
                r.headers.push(pair?);
            }
            Ok(())
        });
        chain(methods, "basic_auth", |r, lua, args| {
            let (user, password): (String, Option<String>) = lua.unpack_multi(args)?;
            let pair = format!("{user}:{}", password.unwrap_or_default());
            let encoded = data_encoding::BASE64.encode(pair.as_bytes());
            r.headers
                .push(("Authorization".into(), format!("Basic {encoded}")));
            Ok(())
        });
        chain(methods, "bearer_auth", |r, lua, args| {
            let token: String = lua.unpack_multi(args)?;
            r.headers
                .push(("Authorization".into(), format!("Bearer {token}")));
            Ok(())
        });
        chain(methods, "body", |r, lua, args| {
            let body: mlua::String = lua.unpack_multi(args)?;
            r.body = Some(body.as_bytes().to_vec());
            Ok(())
        });
        chain(methods, "form_url_encoded", |r, lua, args| {
            let table: Table = lua.unpack_multi(args)?;
            let mut form = Vec::new();
            for pair in table.pairs::<String, String>() {
                let (k, v) = pair?;
                let enc = |s: &str| {
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                };
                form.push(format!("{}={}", enc(&k), enc(&v)));
            }
            r.headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
            r.body = Some(form.join("&").into_bytes());
            Ok(())
        });
        chain(methods, "timeout", |r, lua, args| {
            let value: Value = lua.unpack_multi(args)?;
            if let Some(d) = duration(value, "timeout")? {
                r.timeout = d;
            }
            Ok(())
        });
        methods.add_method("send", |lua, r, ()| r.send(lua));
    }
}

struct Response {
    status: ureq::http::StatusCode,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl UserData for Response {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("status_code", |_, r, ()| Ok(r.status.as_u16()));
        methods.add_method("status_reason", |_, r, ()| {
            Ok(r.status.canonical_reason().map(str::to_string))
        });
        methods.add_method("status_is_success", |_, r, ()| Ok(r.status.is_success()));
        methods.add_method("status_is_client_error", |_, r, ()| {
            Ok(r.status.is_client_error())
        });
        methods.add_method("status_is_server_error", |_, r, ()| {
            Ok(r.status.is_server_error())
        });
        methods.add_method("content_length", |_, r, ()| Ok(r.body.len()));
        methods.add_method("headers", |lua, r, ()| {
            let table = lua.create_table()?;
            for (k, v) in &r.headers {
                table.set(k.as_str(), v.as_str())?;
            }
            Ok(table)
        });
        methods.add_method("text", |_, r, ()| {
            Ok(String::from_utf8_lossy(&r.body).into_owned())
        });
        methods.add_method("bytes", |lua, r, ()| lua.create_string(&r.body));
        methods.add_method("json", |lua, r, ()| {
            let value: serde_json::Value = serde_json::from_slice(&r.body)
                .map_err(|e| misuse(format!("the response is not JSON: {e}")))?;
            lua.to_value_with(&value, crate::memoize::lua_options())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("https://auth.example/check").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("http://localhost/x").is_ok());
        assert!(check_url("http://auth.example/check").is_err());
        assert!(check_url("http://127.0.0.1.evil.example/").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
    }
}

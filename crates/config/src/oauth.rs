//! The `[oauth]` table: how OAUTHBEARER and XOAUTH2 bearer tokens are
//! checked. Tokens are JWTs signed by a key from a JWKS (a file, or a URL
//! fetched and refreshed), or opaque tokens asked about at an RFC 7662
//! introspection endpoint; the issuer and audience are required, so a token
//! minted for another service (or by another issuer) never logs anyone in.
//!
//! ```toml
//! [oauth]
//! jwks_file = "jwks.json"      # relative to the config file; or:
//! jwks_url = "https://id.example.org/.well-known/jwks.json"
//! jwks_refresh = "1h"          # re-fetch at most this old (and on an unknown kid)
//! introspection_url = "https://id.example.org/oauth2/introspect"  # opaque tokens
//! client_id = "portcullis"     # HTTP Basic credentials for introspection
//! client_secret = "..."
//! introspection_cache = "60s"
//! issuer = "https://id.example.org"
//! audience = "smtp.example.org"
//! user_claim = "email"         # default "sub"
//! leeway = "30s"               # clock skew allowed on exp/nbf
//! dangerous_allow_plain_http = false  # http:// URLs off loopback (never do this)
//! ```
//!
//! Whoever serves the JWKS decides which tokens are valid, and whoever
//! answers introspection decides who a token is for: over plain HTTP,
//! anyone on the path could log in as anyone. So both URLs must be
//! `https://`; `http://` is accepted only for a loopback address written
//! as an IP literal (`127.0.0.1`, `[::1]`: an issuer on this host, or a
//! TLS-terminating sidecar), or when `dangerous_allow_plain_http` says the
//! operator knows. Redirects are never followed (see the auth crate), so a
//! loopback URL cannot be bounced elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::{renamed, Unit};
use crate::error::{ConfigError, Deprecation};

/// `[oauth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    #[serde(default, with = "crate::duration::option")]
    pub jwks_refresh: Option<Duration>,
    /// Deprecated: `jwks_refresh`.
    pub jwks_refresh_secs: Option<u64>,
    pub introspection_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    #[serde(default, with = "crate::duration::option")]
    pub introspection_cache: Option<Duration>,
    /// Deprecated: `introspection_cache`.
    pub introspection_cache_secs: Option<u64>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub user_claim: Option<String>,
    #[serde(default, with = "crate::duration::option")]
    pub leeway: Option<Duration>,
    /// Deprecated: `leeway`.
    pub leeway_secs: Option<u64>,
    pub dangerous_allow_plain_http: Option<bool>,
}

/// How bearer tokens are validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth {
    /// Where the JWT signing keys come from; `None`: introspection only.
    pub jwks: Option<JwksSource>,
    /// The RFC 7662 endpoint for tokens that are not JWTs (or all tokens
    /// when there is no JWKS).
    pub introspection: Option<Introspection>,
    pub issuer: String,
    pub audience: String,
    /// The claim that names the user (`sub`, `email`, `preferred_username`).
    pub user_claim: String,
    pub leeway: Duration,
}

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    /// Fetched on first use, again when older than `refresh` or when a token
    /// names a key id we do not have (at most every few seconds).
    Url {
        url: String,
        refresh: Duration,
    },
}

/// An RFC 7662 token introspection endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Introspection {
    pub url: String,
    /// HTTP Basic credentials, if the endpoint wants them.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// How long an answer is remembered (never past the token's `exp`).
    pub cache_ttl: Duration,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: format!("oauth.{key}"),
        message: message.to_string(),
    }
}

/// An issuer URL we may fetch from: `https://`, or `http://` to a loopback
/// IP literal, or any `http://` when the operator said it is dangerous and
/// meant it. Parsed with the HTTP client's own URI parser, so the host we
/// check is the host it connects to.
fn issuer_url(value: String, key: &str, allow_plain_http: bool) -> Result<String, ConfigError> {
    let uri: http::Uri = value
        .parse()
        .map_err(|_| invalid(key, "is not a valid URL"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(invalid(key, "has no host"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(value),
        Some("http") if allow_plain_http || is_loopback_literal(host) => Ok(value),
        Some("http") => Err(invalid(
            key,
            "must be https:// (http:// only to 127.0.0.1 or [::1], or with \
             dangerous_allow_plain_http = true): over plain HTTP anyone on the path \
             can serve their own keys and log in as anyone",
        )),
        _ => Err(invalid(key, "must be an https:// URL")),
    }
}

/// `127.0.0.0/8` or `::1`, written as an address (`http::Uri` keeps the
/// brackets of an IPv6 host). Names such as `localhost` are refused: what
/// they resolve to is not the config's to promise.
fn is_loopback_literal(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn jwks_source(
    raw: &mut RawOAuth,
    base: &Path,
    deprecations: &mut Vec<Deprecation>,
) -> Result<Option<JwksSource>, ConfigError> {
    let allow_plain_http = raw.dangerous_allow_plain_http.unwrap_or(false);
    let refresh = renamed(
        ("oauth.jwks_refresh", raw.jwks_refresh),
        ("oauth.jwks_refresh_secs", raw.jwks_refresh_secs),
        Unit::Seconds,
        deprecations,
    )?
    .unwrap_or(Duration::from_secs(3600))
    .max(Duration::from_secs(1));
    match (raw.jwks_file.take(), raw.jwks_url.take()) {
        (Some(_), Some(_)) => Err(invalid("jwks_url", "give jwks_file or jwks_url, not both")),
        (Some(file), None) => Ok(Some(JwksSource::File(if file.is_absolute() {
            file
        } else {
            base.join(file)
        }))),
        (None, Some(url)) => Ok(Some(JwksSource::Url {
            url: issuer_url(url, "jwks_url", allow_plain_http)?,
            refresh,
        })),
        (None, None) => Ok(None),
    }
}

fn introspection(
    raw: &mut RawOAuth,
    deprecations: &mut Vec<Deprecation>,
) -> Result<Option<Introspection>, ConfigError> {
    let allow_plain_http = raw.dangerous_allow_plain_http.unwrap_or(false);
    let cache_ttl = renamed(
        ("oauth.introspection_cache", raw.introspection_cache),
        (
            "oauth.introspection_cache_secs",
            raw.introspection_cache_secs,
        ),
        Unit::Seconds,
        deprecations,
    )?
    .unwrap_or(Duration::from_secs(60));
    let Some(url) = raw.introspection_url.take() else {
        if raw.client_id.is_some() || raw.client_secret.is_some() {
            return Err(invalid("client_id", "only used with introspection_url"));
        }
        return Ok(None);
    };
    Ok(Some(Introspection {
        url: issuer_url(url, "introspection_url", allow_plain_http)?,
        client_id: raw.client_id.take(),
        client_secret: raw.client_secret.take(),
        cache_ttl,
    }))
}

fn required(value: Option<String>, key: &str) -> Result<String, ConfigError> {
    match value.filter(|v| !v.trim().is_empty()) {
        Some(v) => Ok(v),
        None => Err(ConfigError::Invalid {
            key: format!("oauth.{key}"),
            message: "required: tokens are only accepted for a named issuer and audience"
                .to_string(),
        }),
    }
}

pub(crate) fn validate(
    raw: Option<RawOAuth>,
    base: &Path,
    deprecations: &mut Vec<Deprecation>,
) -> Result<Option<OAuth>, ConfigError> {
    let Some(mut raw) = raw else {
        return Ok(None);
    };
    let jwks = jwks_source(&mut raw, base, deprecations)?;
    let introspection = introspection(&mut raw, deprecations)?;
    if jwks.is_none() && introspection.is_none() {
        return Err(invalid(
            "jwks_file",
            "required: jwks_file, jwks_url or introspection_url",
        ));
    }
    let leeway = renamed(
        ("oauth.leeway", raw.leeway),
        ("oauth.leeway_secs", raw.leeway_secs),
        Unit::Seconds,
        deprecations,
    )?
    .unwrap_or(Duration::from_secs(30));
    if leeway > Duration::from_secs(600) {
        return Err(invalid("leeway", "at most 10m"));
    }
    Ok(Some(OAuth {
        jwks,
        introspection,
        issuer: required(raw.issuer, "issuer")?,
        audience: required(raw.audience, "audience")?,
        user_claim: raw.user_claim.unwrap_or_else(|| "sub".to_string()),
        leeway,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/portcullis/portcullis.toml"), None)
    }

    #[test]
    fn oauth_table() {
        let config = parse(
            "[oauth]\njwks_file = \"jwks.json\"\nissuer = \"https://id.test\"\naudience = \"smtp\"\n",
        )
        .expect("valid");
        let oauth = config.oauth.expect("set");
        assert_eq!(
            oauth.jwks,
            Some(JwksSource::File("/etc/portcullis/jwks.json".into()))
        );
        assert_eq!(
            (oauth.user_claim.as_str(), oauth.leeway.as_secs()),
            ("sub", 30)
        );
        assert!(parse("").expect("valid").oauth.is_none());
        for bad in [
            "[oauth]\nissuer = \"i\"\naudience = \"a\"\n",
            "[oauth]\njwks_file = \"j\"\naudience = \"a\"\n",
            "[oauth]\njwks_file = \"j\"\nissuer = \"i\"\n",
            "[oauth]\njwks_file = \"j\"\nissuer = \"i\"\naudience = \"a\"\nleeway_secs = 9999\n",
            "[oauth]\njwks_file = \"j\"\nissuer = \"i\"\naudience = \"a\"\nleeway = \"11m\"\n",
            "[oauth]\njwks_file = \"j\"\nissuer = \"i\"\naudience = \"a\"\nleeway = \"1s\"\nleeway_secs = 1\n",
            "[oauth]\njwks_file = \"j\"\nissuer = \"i\"\naudience = \"a\"\nalgorithm = \"HS256\"\n",
            "[oauth]\njwks_file = \"j\"\njwks_url = \"https://x\"\nissuer = \"i\"\naudience = \"a\"\n",
            "[oauth]\njwks_url = \"ftp://x\"\nissuer = \"i\"\naudience = \"a\"\n",
            "[oauth]\njwks_file = \"j\"\nclient_id = \"c\"\nissuer = \"i\"\naudience = \"a\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwks_url_and_introspection() {
        let config = parse(
            "[oauth]\njwks_url = \"https://id.test/jwks\"\nintrospection_url = \"https://id.test/i\"\n\
             client_id = \"c\"\nclient_secret = \"hunter2\"\nissuer = \"i\"\naudience = \"a\"\n",
        )
        .expect("valid");
        let oauth = config.oauth.expect("set");
        assert_eq!(
            oauth.jwks,
            Some(JwksSource::Url {
                url: "https://id.test/jwks".into(),
                refresh: Duration::from_secs(3600)
            })
        );
        let introspection = oauth.introspection.expect("set");
        assert_eq!(introspection.cache_ttl, Duration::from_secs(60));
        assert!(!format!("{introspection:?}").contains("hunter2"));
        let only = parse(
            "[oauth]\nintrospection_url = \"https://x/i\"\nissuer = \"i\"\naudience = \"a\"\n",
        );
        assert!(only.expect("valid").oauth.expect("set").jwks.is_none());
    }

    #[test]
    fn issuer_urls_must_be_https_unless_loopback_or_dangerous() {
        let with = |key: &str, url: &str, extra: &str| {
            parse(&format!(
                "[oauth]\n{key} = \"{url}\"\n{extra}issuer = \"i\"\naudience = \"a\"\n"
            ))
        };
        for key in ["jwks_url", "introspection_url"] {
            for good in [
                "https://id.example.org/jwks",
                "http://127.0.0.1:8080/jwks",
                "http://127.1.2.3/jwks",
                "http://[::1]:8080/jwks",
            ] {
                assert!(with(key, good, "").is_ok(), "{key} = {good}");
            }
            for bad in [
                "http://id.example.org/jwks",
                "http://localhost/jwks",
                "http://127.0.0.1.evil.example/jwks",
                "http://127.0.0.1@evil.example/jwks",
                "http://10.0.0.1/jwks",
                "ftp://id.example.org/jwks",
                "https:///jwks",
                "id.example.org/jwks",
            ] {
                assert!(with(key, bad, "").is_err(), "{key} = {bad}");
            }
            let dangerous = "dangerous_allow_plain_http = true\n";
            assert!(with(key, "http://id.example.org/jwks", dangerous).is_ok());
        }
    }
}

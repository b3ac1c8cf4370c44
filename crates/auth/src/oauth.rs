//! Bearer tokens (OAUTHBEARER, XOAUTH2) as JWTs signed by a key from a
//! JWKS (a file, or a URL: see [`crate::jwks`]), or opaque tokens checked at
//! an RFC 7662 introspection endpoint (see [`crate::introspection`]).
//!
//! A token is accepted only if its signature verifies with a key from the
//! file (picked by `kid`, and only asymmetric algorithms: a JWKS holds
//! public keys, and an HMAC "key" made of one is the classic forgery), its
//! `iss` and `aud` are the configured ones, it has not expired (and is not
//! used before `nbf`), and it names a user in the configured claim. Which
//! user the client *said* it is must be that user: a token for someone else
//! is refused, whatever its validity.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use portcullis_sasl::Secret;

use crate::introspection::{Expect, Introspector};
use crate::jwks::{Keys, KeysUnavailable, RemoteJwks};
use crate::{Decision, RejectReason};

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not valid (for the log; the client gets `535`).
    #[error("{0}")]
    Invalid(String),
    /// The issuer could not be asked (the client gets `454`).
    #[error("{0}")]
    Unavailable(String),
}

/// Why a JWT signed by a key we have is refused.
#[derive(Debug, thiserror::Error)]
enum JwtError {
    #[error("no key in the JWKS matches the token's kid and alg")]
    NoKey,
    #[error("{0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error("no {0:?} claim naming the user")]
    NoUser(String),
}

/// Why the JWKS file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    #[error("cannot read JWKS file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid JWKS file {path}: {source}")]
    Invalid {
        path: std::path::PathBuf,
        source: crate::jwks::JwksError,
    },
}

/// Checks bearer tokens. With a JWKS file, cheap (one signature check, no
/// I/O); with a JWKS URL or introspection it may block on HTTP now and then:
/// call it off the async workers.
pub struct TokenValidator {
    keys: Option<Keys>,
    introspection: Option<Introspector>,
    issuer: String,
    audience: String,
    user_claim: String,
    leeway: Duration,
}

impl std::fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenValidator")
            .field("keys", &self.keys.is_some())
            .field("introspection", &self.introspection.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_claim", &self.user_claim)
            .finish()
    }
}

impl TokenValidator {
    /// Whether every remote endpoint answered its last call; `None` when
    /// none is configured (a JWKS file only).
    pub(crate) fn issuer_up(&self) -> Option<bool> {
        let jwks = match &self.keys {
            Some(Keys::Remote(remote)) => Some(remote.up()),
            _ => None,
        };
        let introspection = self.introspection.as_ref().map(Introspector::up);
        match (jwks, introspection) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(true) && b.unwrap_or(true)),
        }
    }

    /// Loads the public keys from a JWKS file (RFC 7517 `{"keys": [...]}`).
    pub fn load(
        jwks_file: &Path,
        issuer: &str,
        audience: &str,
        user_claim: &str,
        leeway: Duration,
    ) -> Result<Self, OAuthError> {
        let invalid = |source| OAuthError::Invalid {
            path: jwks_file.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(jwks_file).map_err(|source| OAuthError::Read {
            path: jwks_file.to_path_buf(),
            source,
        })?;
        let keys = crate::jwks::parse(&text).map_err(invalid)?;
        let mut validator = Self::new(issuer, audience, user_claim, leeway);
        validator.keys = Some(Keys::Fixed(Arc::new(keys)));
        Ok(validator)
    }

    /// A validator with no way to check a token yet: add a JWKS URL or an
    /// introspection endpoint.
    pub fn new(issuer: &str, audience: &str, user_claim: &str, leeway: Duration) -> Self {
        TokenValidator {
            keys: None,
            introspection: None,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            user_claim: user_claim.to_string(),
            leeway,
        }
    }

    /// JWT keys from `url`, fetched on first use and refreshed when older
    /// than `refresh` or when a token names an unknown key id.
    pub fn with_jwks_url(mut self, url: &str, refresh: Duration) -> Self {
        self.keys = Some(Keys::Remote(RemoteJwks::new(url, refresh)));
        self
    }

    /// Opaque tokens (and all tokens, without JWT keys) are asked about at
    /// this RFC 7662 endpoint; answers are cached for `cache_ttl`.
    pub fn with_introspection(
        mut self,
        url: &str,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        cache_ttl: Duration,
    ) -> Self {
        self.introspection = Some(Introspector::new(url, client_id, client_secret, cache_ttl));
        self
    }

    /// The user a valid token is for, or why it is not valid (for the log).
    /// May block when keys or answers must be fetched.
    pub fn validate(&self, token: &Secret) -> Result<String, TokenError> {
        self.check(token)
    }

    /// JWTs go to the keys when we have some; anything else (or everything,
    /// without keys) to introspection.
    pub(crate) fn check(&self, token: &Secret) -> Result<String, TokenError> {
        let looks_like_jwt = token.expose().iter().filter(|b| **b == b'.').count() == 2;
        match (&self.keys, &self.introspection) {
            (Some(keys), _) if looks_like_jwt => self.verify_jwt(keys, token),
            (_, Some(introspection)) => introspection.user(
                token,
                &Expect {
                    issuer: &self.issuer,
                    audience: &self.audience,
                    user_claim: &self.user_claim,
                    leeway: self.leeway,
                },
            ),
            _ => Err(TokenError::Invalid("not a JWT".into())),
        }
    }

    /// A JWT's user, `Invalid` if the token is bad, `Unavailable` if the
    /// key set cannot judge it now (issuer unreachable).
    fn verify_jwt(&self, keys: &Keys, token: &Secret) -> Result<String, TokenError> {
        let invalid = TokenError::Invalid;
        let token = std::str::from_utf8(token.expose())
            .map_err(|_| invalid("token is not UTF-8".into()))?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("header: {e}")))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(invalid("symmetric algorithms are not accepted".into()));
        }
        let keys = keys
            .current(header.kid.as_deref())
            .map_err(|KeysUnavailable(why)| TokenError::Unavailable(why))?;
        self.verify_with(&keys, &header, token)
            .map_err(|e| invalid(e.to_string()))
    }

    fn verify_with(
        &self,
        keys: &[crate::jwks::Key],
        header: &jsonwebtoken::Header,
        token: &str,
    ) -> Result<String, JwtError> {
        let alg_name = format!("{:?}", header.alg);
        let key = keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
            .find(|k| k.alg.as_ref().is_none_or(|a| *a == alg_name))
            .map(|k| &k.key)
            .ok_or(JwtError::NoKey)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &validation,
        )?;
        match data.claims.get(&self.user_claim) {
            Some(serde_json::Value::String(user)) if !user.is_empty() => Ok(user.clone()),
            _ => Err(JwtError::NoUser(self.user_claim.clone())),
        }
    }
}

/// The decision on a bearer token: valid, and for the user the client named.
pub(crate) fn decide(
    validator: Option<&TokenValidator>,
    named: Option<&str>,
    token: &Secret,
) -> (Decision, Option<String>) {
    let Some(validator) = validator else {
        return (Decision::Rejected(RejectReason::NoUsableSecret), None);
    };
    match validator.check(token) {
        Err(TokenError::Invalid(why)) => {
            (Decision::Rejected(RejectReason::InvalidToken), Some(why))
        }
        Err(TokenError::Unavailable(why)) => (Decision::Unavailable(why), None),
        Ok(user) if named.is_some_and(|n| n != user) => {
            let why = format!("token is for {user:?}");
            (
                Decision::Rejected(RejectReason::TokenForAnotherUser),
                Some(why),
            )
        }
        Ok(user) => (
            Decision::Accepted {
                authn_id: user.clone(),
                authz_id: user,
            },
            None,
        ),
    }
}

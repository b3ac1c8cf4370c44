//! Bearer tokens (OAUTHBEARER, XOAUTH2) as JWTs signed by a key from a
//! JWKS file.
//!
//! A token is accepted only if its signature verifies with a key from the
//! file (picked by `kid`, and only asymmetric algorithms: a JWKS holds
//! public keys, and an HMAC "key" made of one is the classic forgery), its
//! `iss` and `aud` are the configured ones, it has not expired (and is not
//! used before `nbf`), and it names a user in the configured claim. Which
//! user the client *said* it is must be that user: a token for someone else
//! is refused, whatever its validity.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_sasl::Secret;

use crate::{Decision, RejectReason};

/// Why the JWKS file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    #[error("cannot read JWKS file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid JWKS file {path}: {message}")]
    Invalid {
        path: std::path::PathBuf,
        message: String,
    },
}

/// Checks bearer tokens. Cheap to call (no I/O; one signature check).
pub struct TokenValidator {
    keys: Vec<(Option<String>, Option<String>, DecodingKey)>,
    issuer: String,
    audience: String,
    user_claim: String,
    leeway: Duration,
}

impl std::fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenValidator")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_claim", &self.user_claim)
            .finish()
    }
}

impl TokenValidator {
    /// Loads the public keys from a JWKS file (RFC 7517 `{"keys": [...]}`).
    pub fn load(
        jwks_file: &Path,
        issuer: &str,
        audience: &str,
        user_claim: &str,
        leeway: Duration,
    ) -> Result<Self, OAuthError> {
        let invalid = |message: String| OAuthError::Invalid {
            path: jwks_file.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(jwks_file).map_err(|source| OAuthError::Read {
            path: jwks_file.to_path_buf(),
            source,
        })?;
        let set: JwkSet = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(e.to_string()))?;
            let alg = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
            keys.push((jwk.common.key_id.clone(), alg, key));
        }
        if keys.is_empty() {
            return Err(invalid("no keys".to_string()));
        }
        Ok(TokenValidator {
            keys,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            user_claim: user_claim.to_string(),
            leeway,
        })
    }

    /// The user a valid token is for, or why it is not valid (for the log).
    pub fn validate(&self, token: &Secret) -> Result<String, String> {
        let token = std::str::from_utf8(token.expose()).map_err(|_| "token is not UTF-8")?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err("symmetric algorithms are not accepted".into());
        }
        let alg_name = format!("{:?}", header.alg);
        let key = self
            .keys
            .iter()
            .filter(|(kid, _, _)| header.kid.is_none() || kid.is_none() || *kid == header.kid)
            .find(|(_, alg, _)| alg.as_ref().is_none_or(|a| *a == alg_name))
            .map(|(_, _, key)| key)
            .ok_or("no key in the JWKS matches the token's kid and alg")?;
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
        )
        .map_err(|e| format!("{e}"))?;
        match data.claims.get(&self.user_claim) {
            Some(serde_json::Value::String(user)) if !user.is_empty() => Ok(user.clone()),
            _ => Err(format!("no {:?} claim naming the user", self.user_claim)),
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
    match validator.validate(token) {
        Err(why) => (Decision::Rejected(RejectReason::InvalidToken), Some(why)),
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

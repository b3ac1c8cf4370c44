//! The bearer-token validator the `[oauth]` section describes. A leaf.

use portcullis_auth::{OAuthError, TokenValidator};

/// The bearer-token validator `[oauth]` describes: JWKS file or URL,
/// and/or an introspection endpoint. Reads the JWKS file now; a URL is
/// fetched on first use.
pub fn token_validator(
    oauth: &portcullis_config::oauth::OAuth,
) -> Result<TokenValidator, OAuthError> {
    use portcullis_config::oauth::JwksSource;
    let (issuer, audience, claim) = (&oauth.issuer, &oauth.audience, &oauth.user_claim);
    let mut validator = match &oauth.jwks {
        Some(JwksSource::File(path)) => {
            TokenValidator::load(path, issuer, audience, claim, oauth.leeway)?
        }
        Some(JwksSource::Url { url, refresh }) => {
            TokenValidator::new(issuer, audience, claim, oauth.leeway).with_jwks_url(url, *refresh)
        }
        None => TokenValidator::new(issuer, audience, claim, oauth.leeway),
    };
    if let Some(i) = &oauth.introspection {
        validator = validator.with_introspection(
            &i.url,
            i.client_id.as_deref(),
            i.client_secret.as_deref(),
            i.cache_ttl,
        );
    }
    Ok(validator)
}

//! The `[oauth]` table: how OAUTHBEARER and XOAUTH2 bearer tokens are
//! checked. Tokens are JWTs signed by a key from a JWKS file; the issuer and
//! audience are required, so a token minted for another service (or by
//! another issuer) never logs anyone in here.
//!
//! ```toml
//! [oauth]
//! jwks_file = "jwks.json"      # relative to the config file
//! issuer = "https://id.example.org"
//! audience = "smtp.example.org"
//! user_claim = "email"         # default "sub"
//! leeway_secs = 30             # clock skew allowed on exp/nbf
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::validate::ConfigError;

/// `[oauth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub user_claim: Option<String>,
    pub leeway_secs: Option<u64>,
}

/// How bearer tokens are validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth {
    pub jwks_file: PathBuf,
    pub issuer: String,
    pub audience: String,
    /// The claim that names the user (`sub`, `email`, `preferred_username`).
    pub user_claim: String,
    pub leeway: Duration,
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

pub(crate) fn validate(raw: Option<RawOAuth>, base: &Path) -> Result<Option<OAuth>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let jwks_file = raw.jwks_file.ok_or_else(|| ConfigError::Invalid {
        key: "oauth.jwks_file".to_string(),
        message: "required: the keys tokens are signed with".to_string(),
    })?;
    let leeway = Duration::from_secs(raw.leeway_secs.unwrap_or(30));
    if leeway > Duration::from_secs(600) {
        return Err(ConfigError::Invalid {
            key: "oauth.leeway_secs".to_string(),
            message: "at most 600".to_string(),
        });
    }
    Ok(Some(OAuth {
        jwks_file: if jwks_file.is_absolute() {
            jwks_file
        } else {
            base.join(jwks_file)
        },
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
        assert_eq!(oauth.jwks_file, Path::new("/etc/portcullis/jwks.json"));
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
            "[oauth]\njwks_file = \"j\"\nissuer = \"i\"\naudience = \"a\"\nalgorithm = \"HS256\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

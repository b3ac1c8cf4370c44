//! SCRAM secrets as stores keep them (RFC 5802 §3): salt, iteration count,
//! StoredKey and ServerKey, never the password.
//!
//! Stored form, the one Dovecot and `gsasl --mkpasswd` use, so existing
//! user databases import unchanged:
//!
//! ```text
//! {SCRAM-SHA-256}4096,<salt base64>,<StoredKey base64>,<ServerKey base64>
//! ```
//!
//! (a fifth field, the salted password `gsasl --mkpasswd --verbose`
//! appends, is accepted and ignored: it would be a password equivalent).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use portcullis_sasl::{ScramHash, ScramSecrets, Secret};
use rand::RngCore;

/// Iteration count for new secrets. RFC 7677 asks for at least 4096; it is
/// what Dovecot and most clients' defaults use.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Fewer iterations than this in a stored record is refused as too weak.
const MIN_ITERATIONS: u32 = 1024;
/// More than this would let one login pin a CPU (and is surely a typo).
const MAX_ITERATIONS: u32 = 10_000_000;

/// The SCRAM secrets a user has, per hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScramKeys {
    pub sha1: Option<ScramSecrets>,
    pub sha256: Option<ScramSecrets>,
}

impl ScramKeys {
    /// The secrets for `hash`, if the user has them.
    pub fn get(&self, hash: ScramHash) -> Option<&ScramSecrets> {
        match hash {
            ScramHash::Sha1 => self.sha1.as_ref(),
            ScramHash::Sha256 => self.sha256.as_ref(),
        }
    }

    /// Whether there are none at all.
    pub fn is_empty(&self) -> bool {
        self.sha1.is_none() && self.sha256.is_none()
    }

    /// Fresh secrets for both hashes, each with its own random salt.
    /// `None` if SASLprep refuses the password (no SCRAM client could
    /// send it either). Costs two PBKDF2 runs: call off the async workers.
    pub fn from_password(password: &Secret) -> Option<ScramKeys> {
        let derive = |hash| {
            let mut salt = vec![0u8; 16];
            rand::thread_rng().fill_bytes(&mut salt);
            ScramSecrets::derive(hash, password.expose(), salt, DEFAULT_ITERATIONS).ok()
        };
        Some(ScramKeys {
            sha1: Some(derive(ScramHash::Sha1)?),
            sha256: Some(derive(ScramHash::Sha256)?),
        })
    }
}

fn prefix(hash: ScramHash) -> &'static str {
    match hash {
        ScramHash::Sha1 => "{SCRAM-SHA-1}",
        ScramHash::Sha256 => "{SCRAM-SHA-256}",
    }
}

/// The stored form of `secrets`.
pub fn to_stored(hash: ScramHash, secrets: &ScramSecrets) -> String {
    format!(
        "{}{},{},{},{}",
        prefix(hash),
        secrets.iterations,
        STANDARD.encode(&secrets.salt),
        STANDARD.encode(secrets.stored_key.expose()),
        STANDARD.encode(secrets.server_key.expose())
    )
}

/// What is wrong with a stored SCRAM secret; never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramFormatError {
    #[error("SCRAM secrets must start with {0}")]
    Prefix(&'static str),
    #[error("SCRAM secrets need iterations,salt,StoredKey,ServerKey")]
    Fields,
    #[error("SCRAM iteration count is not a number")]
    NotANumber,
    #[error("SCRAM iteration count must be {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations,
    #[error("SCRAM {0} is not base64")]
    Base64(&'static str),
    #[error("SCRAM salt is empty")]
    EmptySalt,
    #[error("SCRAM keys have the wrong length for the hash")]
    KeyLength,
}

/// Parses the stored form. The error says what is wrong, never the value.
pub fn from_stored(hash: ScramHash, stored: &str) -> Result<ScramSecrets, ScramFormatError> {
    let body = stored
        .strip_prefix(prefix(hash))
        .ok_or(ScramFormatError::Prefix(prefix(hash)))?;
    let fields: Vec<&str> = body.split(',').collect();
    if !(4..=5).contains(&fields.len()) {
        return Err(ScramFormatError::Fields);
    }
    let iterations: u32 = fields[0]
        .parse()
        .map_err(|_| ScramFormatError::NotANumber)?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(ScramFormatError::Iterations);
    }
    let decode = |field: &str, what: &'static str| {
        STANDARD
            .decode(field)
            .map_err(|_| ScramFormatError::Base64(what))
    };
    let salt = decode(fields[1], "salt")?;
    let stored_key = decode(fields[2], "StoredKey")?;
    let server_key = decode(fields[3], "ServerKey")?;
    if salt.is_empty() {
        return Err(ScramFormatError::EmptySalt);
    }
    if stored_key.len() != hash.output_len() || server_key.len() != hash.output_len() {
        return Err(ScramFormatError::KeyLength);
    }
    Ok(ScramSecrets {
        iterations,
        salt,
        stored_key: Secret::new(stored_key),
        server_key: Secret::new(server_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips() {
        let keys = ScramKeys::from_password(&Secret::from("pencil")).expect("derives");
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let secrets = keys.get(hash).expect("both hashes");
            let stored = to_stored(hash, secrets);
            assert_eq!(&from_stored(hash, &stored).expect("parses"), secrets);
        }
        assert_ne!(
            keys.sha1.as_ref().map(|s| &s.salt),
            keys.sha256.as_ref().map(|s| &s.salt)
        );
    }

    #[test]
    fn rfc_7677_secrets_in_dovecot_form() {
        // Salt and password of the RFC 7677 example.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let secrets = ScramSecrets::derive(ScramHash::Sha256, b"pencil", salt, 4096).expect("ok");
        let stored = to_stored(ScramHash::Sha256, &secrets);
        assert!(
            stored.starts_with("{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"),
            "{stored}"
        );
        // With the salted password gsasl --verbose appends: still accepted.
        let with_fifth = format!("{stored},c2FsdGVk");
        assert_eq!(
            from_stored(ScramHash::Sha256, &with_fifth).expect("ok"),
            secrets
        );
    }

    #[test]
    fn bad_stored_forms_are_refused_without_quoting_them() {
        let good = to_stored(
            ScramHash::Sha256,
            &ScramSecrets::derive(ScramHash::Sha256, b"x", vec![1; 16], 4096).expect("ok"),
        );
        let bad = [
            good.replace("{SCRAM-SHA-256}", "{SCRAM-SHA-1}"),
            good.replace("4096,", "10,"),
            good.replace("4096,", "many,"),
            "{SCRAM-SHA-256}4096,AAAA,AAAA".to_string(),
            "{SCRAM-SHA-256}4096,AAAA,AAAA,AAAA".to_string(),
            "{SCRAM-SHA-256}4096,,AAAA,AAAA".to_string(),
        ];
        for stored in bad {
            let error = from_stored(ScramHash::Sha256, &stored)
                .expect_err(&stored)
                .to_string();
            assert!(!error.contains("AAAA"), "{error}");
        }
    }
}

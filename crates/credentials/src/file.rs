//! A read-only user list in a TOML file, loaded once at start-up (a config
//! reload builds a new store).
//!
//! ```toml
//! [[user]]
//! name = "alice@example.org"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # any form `scheme` verifies
//! cram_md5 = "{CRAM-MD5}0123...cdef"                # optional
//! scram_sha256 = "{SCRAM-SHA-256}4096,salt,stored,server"  # optional, see `scram`
//! scram_sha1 = "{SCRAM-SHA-1}4096,salt,stored,server"      # optional
//! may_act_as = ["postmaster@example.org"]           # optional, "*" = any
//! ```
//!
//! Unknown keys, duplicate names, unsupported password schemes and bad
//! CRAM-MD5 keys are rejected at load time with an error naming the file,
//! so a typo fails the start-up instead of silently locking a user out.
//! Errors never quote values from the file, since they may be secrets.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use portcullis_sasl::ScramHash;

use crate::{
    check_identity, scheme, scram, CramMd5Keys, CredentialStore, ScramKeys, StoreError,
    StoredPassword, UserRecord,
};

/// A read-only [`CredentialStore`] held in memory. Lookups do no I/O.
#[derive(Debug)]
pub struct FileStore {
    users: HashMap<String, UserRecord>,
    has_cram_md5_keys: bool,
    has_scram_secrets: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password: Option<String>,
    cram_md5: Option<String>,
    scram_sha1: Option<String>,
    scram_sha256: Option<String>,
    #[serde(default)]
    may_act_as: Vec<String>,
}

impl FileStore {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot read {}: {e}", path.display())))?;
        let invalid = |reason: String| StoreError::InvalidFile {
            path: path.to_owned(),
            reason,
        };
        let raw: RawFile = toml::from_str(&text).map_err(|e| invalid(describe(&e, &text)))?;
        let mut users = HashMap::with_capacity(raw.user.len());
        for raw_user in raw.user {
            let name = raw_user.name.clone();
            let record =
                validate(raw_user).map_err(|reason| invalid(format!("user {name:?}: {reason}")))?;
            if users.insert(name.clone(), record).is_some() {
                return Err(invalid(format!("user {name:?} is listed twice")));
            }
        }
        let has_cram_md5_keys = users.values().any(|u| u.cram_md5.is_some());
        let has_scram_secrets = users.values().any(|u| !u.scram.is_empty());
        Ok(FileStore {
            users,
            has_cram_md5_keys,
            has_scram_secrets,
        })
    }
}

/// A TOML error as "line N: message", without toml's source excerpt, which
/// could show a password.
fn describe(error: &toml::de::Error, text: &str) -> String {
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", error.message())
        }
        None => error.message().to_owned(),
    }
}

/// What is wrong with one `[[user]]` of the file.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("{0}")]
    Name(#[from] StoreError),
    #[error("{0}")]
    Scheme(#[from] crate::SchemeError),
    #[error("{0}")]
    Scram(#[from] scram::ScramFormatError),
    #[error("may_act_as entries must be non-empty printable names")]
    MayActAs,
}

fn validate(raw: RawUser) -> Result<UserRecord, RecordError> {
    check_identity(&raw.name, &raw.name)?;
    let password = raw.password.map(StoredPassword::new);
    if let Some(stored) = &password {
        scheme::validate(stored)?;
    }
    let cram_md5 = raw
        .cram_md5
        .map(|s| CramMd5Keys::from_stored(&s))
        .transpose()?;
    let parse =
        |hash, stored: Option<String>| stored.map(|s| scram::from_stored(hash, &s)).transpose();
    let scram = ScramKeys {
        sha1: parse(ScramHash::Sha1, raw.scram_sha1)?,
        sha256: parse(ScramHash::Sha256, raw.scram_sha256)?,
    };
    for identity in &raw.may_act_as {
        if identity.is_empty() || identity.chars().any(char::is_control) {
            return Err(RecordError::MayActAs);
        }
    }
    Ok(UserRecord {
        name: raw.name,
        password,
        cram_md5,
        scram,
        may_act_as: raw.may_act_as,
    })
}

impl CredentialStore for FileStore {
    fn lookup(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.users.get(name).cloned())
    }

    /// The file is read once, so its records never change.
    fn version(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(0))
    }

    fn has_cram_md5_keys(&self) -> Result<bool, StoreError> {
        Ok(self.has_cram_md5_keys)
    }

    fn has_scram_secrets(&self) -> Result<bool, StoreError> {
        Ok(self.has_scram_secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(text: &str) -> (tempfile::NamedTempFile, Result<FileStore, StoreError>) {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("written");
        let result = FileStore::load(file.path());
        (file, result)
    }

    #[test]
    fn unknown_field_is_rejected_naming_the_file_and_not_the_value() {
        let (file, result) = load_str("[[user]]\nname = \"a\"\npasword = \"{PLAIN}topsecret\"\n");
        let err = result.expect_err("typo rejected");
        let message = err.to_string();
        assert!(matches!(err, StoreError::InvalidFile { .. }));
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("pasword"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(!message.contains("topsecret"), "{message}");
    }

    #[test]
    fn bad_records_are_rejected() {
        let cases = [
            "[[user]]\nname = \"a\"\npassword = \"{MD5}x\"\n",
            "[[user]]\nname = \"a\"\ncram_md5 = \"{CRAM-MD5}12\"\n",
            "[[user]]\nname = \"a\"\n[[user]]\nname = \"a\"\n",
            "[[user]]\nname = \"\"\n",
            "[[user]]\nname = \"a\"\nscram_sha256 = \"{SCRAM-SHA-256}4096,AAAA\"\n",
        ];
        for text in cases {
            let (_file, result) = load_str(text);
            assert!(
                matches!(result, Err(StoreError::InvalidFile { .. })),
                "{text}: {result:?}"
            );
        }
    }

    #[test]
    fn scram_secrets_from_the_file() {
        let secrets =
            portcullis_sasl::ScramSecrets::derive(ScramHash::Sha256, b"pencil", vec![3; 16], 4096)
                .expect("derives");
        let stored = scram::to_stored(ScramHash::Sha256, &secrets);
        let (_file, result) = load_str(&format!(
            "[[user]]\nname = \"a\"\nscram_sha256 = \"{stored}\"\n"
        ));
        let store = result.expect("loads");
        assert!(store.has_scram_secrets().expect("ok"));
        let record = store.lookup("a").expect("ok").expect("present");
        assert_eq!(record.scram.sha256, Some(secrets));
    }

    #[test]
    fn empty_file_has_no_users() {
        let (_file, result) = load_str("");
        let store = result.expect("loads");
        assert!(store.lookup("a").expect("ok").is_none());
        assert!(!store.has_cram_md5_keys().expect("ok"));
    }

    #[test]
    fn missing_file_is_unavailable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let result = FileStore::load(&dir.path().join("absent.toml"));
        assert!(matches!(result, Err(StoreError::Unavailable(_))));
    }
}

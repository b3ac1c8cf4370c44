//! The SCRAM side of the decision: handing an exchange the secrets it needs
//! mid-way, without telling anyone whether the user exists, and giving
//! users who log in by password the SCRAM secrets they lack.

use hmac::{Hmac, Mac};
use portcullis_credentials::{scram, ScramKeys, ScramSave, StoreError, UserRecord};
use portcullis_sasl::{Credentials, ScramHash, ScramOutcome, ScramSecrets, Secret};
use sha2::Sha256;

use crate::{Authenticator, RejectReason};

/// What [`Authenticator::upgrade_scram`] did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramUpgrade {
    /// Nothing to do: not a password login, or the user has SCRAM secrets.
    NotNeeded,
    /// Secrets derived from the password just checked, and stored.
    Saved,
    /// The store is read-only; the user still cannot use SCRAM.
    ReadOnly,
    /// SASLprep refuses the password: no SCRAM client could send it.
    PasswordNotPreparable,
    Failed(String),
}

impl Authenticator {
    /// The secrets a SCRAM exchange for `authcid` continues with. A user who
    /// does not exist, or has no secrets for `hash`, gets fake ones derived
    /// from the server's key and the name: the same salt every time, like a
    /// real user's, so the salt does not reveal who exists; the proof then
    /// fails and the decision says why. May block.
    pub fn scram_secrets(
        &self,
        authcid: &str,
        hash: ScramHash,
    ) -> Result<ScramSecrets, StoreError> {
        let record = self.store.lookup(authcid)?;
        Ok(record
            .and_then(|r| r.scram.get(hash).cloned())
            .unwrap_or_else(|| fake_secrets(&self.scram_key, authcid, hash)))
    }

    /// After an accepted PLAIN or LOGIN: derive and store SCRAM secrets for
    /// a user who has none, so SCRAM works for them from now on. Costs two
    /// PBKDF2 runs, once per user. May block.
    pub fn upgrade_scram(&self, credentials: &Credentials) -> ScramUpgrade {
        let Credentials::Password {
            authcid, password, ..
        } = credentials
        else {
            return ScramUpgrade::NotNeeded;
        };
        match self.lookup_record(authcid) {
            Ok(Some(record)) if record.scram.sha256.is_none() => {}
            Ok(_) => return ScramUpgrade::NotNeeded,
            Err(error) => return ScramUpgrade::Failed(error.to_string()),
        }
        let Some(keys) = ScramKeys::from_password(password) else {
            return ScramUpgrade::PasswordNotPreparable;
        };
        match self.store.save_scram_secrets(authcid, &keys) {
            Ok(ScramSave::Saved) => ScramUpgrade::Saved,
            Ok(ScramSave::ReadOnly) => ScramUpgrade::ReadOnly,
            Err(error) => ScramUpgrade::Failed(error.to_string()),
        }
    }
}

/// The verdict on a SCRAM exchange's outcome.
pub(crate) fn verify(
    record: Option<&UserRecord>,
    hash: ScramHash,
    outcome: &ScramOutcome,
) -> Result<(), RejectReason> {
    let record = record.ok_or(RejectReason::UnknownUser)?;
    if record.scram.get(hash).is_none() {
        return Err(RejectReason::NoUsableSecret);
    }
    match outcome {
        ScramOutcome::Verified { .. } => Ok(()),
        ScramOutcome::WrongProof => Err(RejectReason::WrongPassword),
        ScramOutcome::ChannelBindingMismatch => Err(RejectReason::ChannelBindingMismatch),
    }
}

/// Stable fake secrets: HMAC-SHA-256 of the name under the server's key.
fn fake_secrets(key: &Secret, authcid: &str, hash: ScramHash) -> ScramSecrets {
    let derive = |label: &str, len: usize| {
        let mut mac =
            <Hmac<Sha256>>::new_from_slice(key.expose()).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(hash.name().as_bytes());
        mac.update(&[0]);
        mac.update(authcid.as_bytes());
        let mut out = mac.finalize().into_bytes().to_vec();
        out.truncate(len);
        out
    };
    ScramSecrets {
        iterations: scram::DEFAULT_ITERATIONS,
        salt: derive("salt", 16),
        stored_key: Secret::new(derive("stored", hash.output_len())),
        server_key: Secret::new(derive("server", hash.output_len())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_credentials::sqlite::SqliteStore;
    use portcullis_credentials::{CredentialStore, UserAdmin};

    use super::*;
    use crate::Decision;

    fn authenticator() -> (tempfile::TempDir, SqliteStore, Authenticator) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("users.db");
        let store = SqliteStore::open(&path).expect("opens");
        store
            .add_user("ann", &Secret::from("pencil"), false)
            .expect("added");
        let shared = SqliteStore::open(&path).expect("opens");
        let auth = Authenticator::new(Arc::new(shared)).with_scram_key(Secret::from("k"));
        (dir, store, auth)
    }

    #[test]
    fn unknown_users_get_stable_fake_secrets_shaped_like_real_ones() {
        let (_dir, _store, auth) = authenticator();
        let real = auth.scram_secrets("ann", ScramHash::Sha256).expect("ok");
        let fake = auth.scram_secrets("nobody", ScramHash::Sha256).expect("ok");
        assert_eq!(
            fake,
            auth.scram_secrets("nobody", ScramHash::Sha256).expect("ok")
        );
        assert_ne!(
            fake.salt,
            auth.scram_secrets("other", ScramHash::Sha256)
                .expect("ok")
                .salt
        );
        assert_eq!(
            (fake.salt.len(), fake.iterations),
            (real.salt.len(), real.iterations)
        );
        let rekeyed = auth.clone().with_scram_key(Secret::from("other key"));
        assert_ne!(
            fake.salt,
            rekeyed
                .scram_secrets("nobody", ScramHash::Sha256)
                .expect("ok")
                .salt
        );
    }

    #[test]
    fn scram_outcomes_map_to_precise_reasons() {
        let (_dir, _store, auth) = authenticator();
        let scram = |user: &str, authzid: Option<&str>, outcome| Credentials::Scram {
            authcid: user.into(),
            authzid: authzid.map(Into::into),
            hash: ScramHash::Sha256,
            outcome,
        };
        let verified = || ScramOutcome::Verified {
            server_final: b"v=x".to_vec(),
        };
        assert!(matches!(
            auth.check(&scram("ann", None, verified())),
            Decision::Accepted { .. }
        ));
        let cases = [
            (scram("nobody", None, verified()), RejectReason::UnknownUser),
            (
                scram("ann", None, ScramOutcome::WrongProof),
                RejectReason::WrongPassword,
            ),
            (
                scram("ann", None, ScramOutcome::ChannelBindingMismatch),
                RejectReason::ChannelBindingMismatch,
            ),
            (
                scram("ann", Some("boss"), verified()),
                RejectReason::AuthzidRefused,
            ),
        ];
        for (credentials, reason) in cases {
            assert_eq!(auth.check(&credentials), Decision::Rejected(reason));
        }
    }

    #[test]
    fn a_password_login_gives_a_user_scram_secrets_once() {
        let (_dir, store, auth) = authenticator();
        store
            .add_user("old", &Secret::from("pw"), false)
            .expect("added");
        store
            .save_scram_secrets("old", &ScramKeys::default())
            .expect("cleared");
        let login = |password: &str| Credentials::Password {
            authcid: "old".into(),
            authzid: None,
            password: Secret::from(password),
        };
        assert_eq!(auth.upgrade_scram(&login("pw")), ScramUpgrade::Saved);
        let secrets = store
            .lookup("old")
            .expect("ok")
            .expect("present")
            .scram
            .sha256;
        let secrets = secrets.expect("now has SCRAM secrets");
        let expected = ScramSecrets::derive(
            ScramHash::Sha256,
            b"pw",
            secrets.salt.clone(),
            secrets.iterations,
        );
        assert_eq!(secrets, expected.expect("derives"));
        assert_eq!(auth.upgrade_scram(&login("pw")), ScramUpgrade::NotNeeded);
    }
}

use super::*;
use portcullis_credentials::sqlite::SqliteStore;
use portcullis_credentials::{CramMd5Keys, UserAdmin};
use portcullis_sasl::Secret;

fn authenticator() -> (tempfile::TempDir, Authenticator) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("users.sqlite")).unwrap();
    store
        .add_user("alice", &Secret::from("right"), true)
        .unwrap();
    store.add_user("boss", &Secret::from("x"), false).unwrap();
    store
        .set_may_act_as("alice", &["sales".to_string()])
        .unwrap();
    (dir, Authenticator::new(Arc::new(store)))
}

fn plain(authcid: &str, authzid: Option<&str>, password: &str) -> Credentials {
    Credentials::Password {
        authcid: authcid.into(),
        authzid: authzid.map(Into::into),
        password: Secret::from(password),
    }
}

#[test]
fn right_password_is_accepted_as_itself() {
    let (_d, a) = authenticator();
    assert_eq!(
        a.check(&plain("alice", None, "right")),
        Decision::Accepted {
            authn_id: "alice".into(),
            authz_id: "alice".into()
        }
    );
    assert!(matches!(
        a.check(&plain("alice", Some("alice"), "right")),
        Decision::Accepted { .. }
    ));
}

#[test]
fn reasons_are_precise() {
    let (_d, a) = authenticator();
    assert_eq!(
        a.check(&plain("alice", None, "wrong")),
        Decision::Rejected(RejectReason::WrongPassword)
    );
    assert_eq!(
        a.check(&plain("nobody", None, "x")),
        Decision::Rejected(RejectReason::UnknownUser)
    );
    assert_eq!(
        a.check(&plain("alice", Some("boss"), "right")),
        Decision::Rejected(RejectReason::AuthzidRefused)
    );
}

#[test]
fn authzid_allowed_by_the_store() {
    let (_d, a) = authenticator();
    assert_eq!(
        a.check(&plain("alice", Some("sales"), "right")),
        Decision::Accepted {
            authn_id: "alice".into(),
            authz_id: "sales".into()
        }
    );
}

#[test]
fn cram_md5_from_stored_keys() {
    let (_d, a) = authenticator();
    let challenge = b"<1.2@mx>".to_vec();
    let digest = CramMd5Keys::from_password(b"right").digest(&challenge);
    let c = Credentials::CramMd5 {
        authcid: "alice".into(),
        challenge: challenge.clone(),
        digest,
    };
    assert!(matches!(a.check(&c), Decision::Accepted { .. }));
    let c = Credentials::CramMd5 {
        authcid: "boss".into(),
        challenge,
        digest,
    };
    assert_eq!(
        a.check(&c),
        Decision::Rejected(RejectReason::NoUsableSecret)
    );
}

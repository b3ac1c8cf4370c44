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

#[test]
fn a_changed_password_invalidates_the_verified_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("u.sqlite")).unwrap());
    store
        .add_user("carol", &Secret::from("old"), false)
        .unwrap();
    let a = Authenticator::new(store.clone());
    assert!(matches!(
        a.check(&plain("carol", None, "old")),
        Decision::Accepted { .. }
    ));
    assert!(matches!(
        a.check(&plain("carol", None, "old")),
        Decision::Accepted { .. }
    ));
    store
        .set_password("carol", &Secret::from("new"), false)
        .unwrap();
    assert_eq!(
        a.check(&plain("carol", None, "old")),
        Decision::Rejected(RejectReason::WrongPassword)
    );
    assert!(matches!(
        a.check(&plain("carol", None, "new")),
        Decision::Accepted { .. }
    ));
}

#[test]
fn verifications_past_the_bound_are_deferred_but_cache_hits_are_not() {
    let (_d, store_dir_authenticator) = authenticator();
    let options = AuthOptions {
        max_concurrent_verifications: 1,
        ..AuthOptions::default()
    };
    let a = Authenticator::with_options(store_dir_authenticator.store.clone(), &options);
    assert!(matches!(
        a.check(&plain("alice", None, "right")),
        Decision::Accepted { .. }
    ));
    let _held = a.verifications.try_take();
    assert!(matches!(
        a.check(&plain("alice", None, "wrong")),
        Decision::Unavailable(_)
    ));
    assert!(matches!(
        a.check(&plain("nobody", None, "x")),
        Decision::Unavailable(_)
    ));
    assert!(matches!(
        a.check(&plain("alice", None, "right")),
        Decision::Accepted { .. }
    ));
}

fn external(authcid: &str, authzid: Option<&str>) -> Credentials {
    Credentials::External {
        authcid: authcid.into(),
        authzid: authzid.map(Into::into),
    }
}

#[test]
fn external_needs_an_existing_user_and_follows_the_authzid_rule() {
    let (_d, a) = authenticator();
    assert_eq!(
        a.check(&external("alice", None)),
        Decision::Accepted {
            authn_id: "alice".into(),
            authz_id: "alice".into()
        }
    );
    assert_eq!(
        a.check(&external("alice", Some("sales"))),
        Decision::Accepted {
            authn_id: "alice".into(),
            authz_id: "sales".into()
        }
    );
    assert_eq!(
        a.check(&external("alice", Some("boss"))),
        Decision::Rejected(RejectReason::AuthzidRefused)
    );
    assert_eq!(
        a.check(&external("mallory", None)),
        Decision::Rejected(RejectReason::UnknownUser)
    );
}

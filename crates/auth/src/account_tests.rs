//! Account states and app passwords in the decision.

use super::*;
use portcullis_credentials::sqlite::SqliteStore;
use portcullis_credentials::{
    app_password, AccountFlag, AppPasswordStore, NewAppPassword, UserAdmin,
};
use portcullis_sasl::Secret;

fn setup() -> (tempfile::TempDir, Arc<SqliteStore>, Authenticator) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("users.sqlite")).unwrap());
    store
        .add_user("alice", &Secret::from("right"), false)
        .unwrap();
    store.add_user("bob", &Secret::from("bobs"), false).unwrap();
    let options = AuthOptions {
        // Refusals at once: these tests are about reasons, not timing.
        verified_cache_ttl: Duration::from_secs(60),
        ..AuthOptions::default()
    };
    let auth = Authenticator::with_options(store.clone(), &options)
        .with_app_password_key(Secret::from("app key"));
    (dir, store, auth)
}

fn plain(user: &str, password: &str) -> Credentials {
    Credentials::Password {
        authcid: user.into(),
        authzid: None,
        password: Secret::from(password),
    }
}

fn plain_secret(user: &str, password: &Secret) -> Credentials {
    Credentials::Password {
        authcid: user.into(),
        authzid: None,
        password: password.clone(),
    }
}

fn from(ip: &str) -> LoginContext {
    LoginContext {
        client: Some(ip.parse().unwrap()),
    }
}

fn add(store: &SqliteStore, user: &str, new: &NewAppPassword) -> Secret {
    let mut new = new.clone();
    if new.label.is_empty() {
        new.label = "device".into();
    }
    let (whole, token) = app_password::generate();
    store
        .add_app_password(user, &token.id, &token.hash(&Secret::from("app key")), &new)
        .unwrap();
    whole
}

fn rejected(decision: Decision) -> RejectReason {
    match decision {
        Decision::Rejected(reason) => reason,
        other => panic!("not rejected: {other:?}"),
    }
}

#[test]
fn a_disabled_account_is_told_only_with_the_right_password() {
    let (_d, store, auth) = setup();
    store
        .set_flag("alice", AccountFlag::Disabled, true)
        .unwrap();
    let right = rejected(auth.check(&plain("alice", "right")));
    assert_eq!(right, RejectReason::AccountDisabled);
    assert_eq!(right.class(), RefusalClass::AccountDisabled);
    let wrong = rejected(auth.check(&plain("alice", "wrong")));
    assert_eq!(wrong, RejectReason::WrongPassword);
    assert_eq!(wrong.class(), RefusalClass::Invalid);
    store
        .set_flag("alice", AccountFlag::Disabled, false)
        .unwrap();
    auth.refresh_store_version();
    assert!(matches!(
        auth.check(&plain("alice", "right")),
        Decision::Accepted { .. }
    ));
}

#[test]
fn the_cached_path_applies_the_account_state_too() {
    let (_d, store, auth) = setup();
    auth.refresh_store_version();
    assert!(matches!(
        auth.check(&plain("alice", "right")),
        Decision::Accepted { .. }
    ));
    store
        .set_flag("alice", AccountFlag::Disabled, true)
        .unwrap();
    auth.refresh_store_version();
    let cached = auth.check_cached(&plain("alice", "right"));
    assert!(
        matches!(
            cached,
            None | Some(Decision::Rejected(RejectReason::AccountDisabled))
        ),
        "{cached:?}"
    );
}

#[test]
fn app_passwords_only_refuses_the_account_password_as_too_weak() {
    let (_d, store, auth) = setup();
    store
        .set_flag("alice", AccountFlag::RequireAppPassword, true)
        .unwrap();
    let reason = rejected(auth.check(&plain("alice", "right")));
    assert_eq!(reason, RejectReason::AccountPasswordNotAllowed);
    assert_eq!(reason.class(), RefusalClass::MechanismTooWeak);
    assert_eq!(
        rejected(auth.check(&plain("alice", "wrong"))),
        RejectReason::WrongPassword
    );
    let token = add(&store, "alice", &NewAppPassword::default());
    assert!(matches!(
        auth.check(&plain_secret("alice", &token)),
        Decision::Accepted { .. }
    ));
}

#[test]
fn an_app_password_logs_in_with_its_id_and_label() {
    let (_d, store, auth) = setup();
    let new = NewAppPassword {
        label: "phone".into(),
        senders: vec!["alice@example.org".into()],
        ..NewAppPassword::default()
    };
    let token = add(&store, "alice", &new);
    let decision = auth.check_with(&plain_secret("alice", &token), &from("192.0.2.1"));
    let Decision::Accepted {
        authn_id,
        credential: Some(credential),
        ..
    } = decision
    else {
        panic!("not accepted with a credential: {decision:?}");
    };
    assert_eq!(authn_id, "alice");
    assert_eq!(credential.label, "phone");
    assert_eq!(credential.senders, ["alice@example.org"]);
    let listed = store.list_app_passwords("alice").unwrap();
    assert_eq!(listed[0].last_used_from.as_deref(), Some("192.0.2.1"));
    assert_eq!(
        rejected(auth.check(&plain_secret("bob", &token))),
        RejectReason::AppPasswordOfAnotherUser
    );
    store.revoke_app_password("alice", &credential.id).unwrap();
    assert_eq!(
        rejected(auth.check(&plain_secret("alice", &token))),
        RejectReason::UnknownAppPassword
    );
}

#[test]
fn app_password_scopes() {
    let (_d, store, auth) = setup();
    let scoped = NewAppPassword {
        label: "script".into(),
        networks: vec!["198.51.100.0/24".parse().unwrap()],
        ..NewAppPassword::default()
    };
    let token = add(&store, "alice", &scoped);
    let creds = plain_secret("alice", &token);
    assert!(matches!(
        auth.check_with(&creds, &from("198.51.100.9")),
        Decision::Accepted { .. }
    ));
    assert_eq!(
        rejected(auth.check_with(&creds, &from("203.0.113.9"))),
        RejectReason::NetworkNotAllowed
    );
    let expired = NewAppPassword {
        label: "old".into(),
        expires_at: Some(1),
        ..NewAppPassword::default()
    };
    let token = add(&store, "alice", &expired);
    assert_eq!(
        rejected(auth.check(&plain_secret("alice", &token))),
        RejectReason::AppPasswordExpired
    );
    store
        .set_flag("alice", AccountFlag::Disabled, true)
        .unwrap();
    auth.refresh_store_version();
    let token = add(&store, "alice", &NewAppPassword::default());
    assert_eq!(
        rejected(auth.check(&plain_secret("alice", &token))),
        RejectReason::AccountDisabled
    );
}

#[test]
fn a_wrong_app_password_is_a_wrong_password() {
    let (_d, store, auth) = setup();
    let token = add(&store, "alice", &NewAppPassword::default());
    let text = String::from_utf8(token.expose().to_vec()).unwrap();
    // Same id, one secret character changed, the check character fixed.
    let mut forged = text.clone().into_bytes();
    let at = forged.len() - 5;
    forged[at] = if forged[at] == b'a' { b'b' } else { b'a' };
    let last = forged.len() - 1;
    let forged = (b'a'..=b'z')
        .chain(b'2'..=b'7')
        .map(|c| {
            forged[last] = c;
            forged.clone()
        })
        .find(|f| app_password::parse(f).is_some())
        .expect("one check character fits");
    let forged = String::from_utf8(forged).unwrap();
    let reason = rejected(auth.check(&plain("alice", &forged)));
    assert_eq!(reason, RejectReason::WrongPassword);
}

#[test]
fn an_old_password_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("users.sqlite")).unwrap());
    store
        .add_user("alice", &Secret::from("right"), false)
        .unwrap();
    let options = AuthOptions {
        password_max_age: Some(Duration::ZERO),
        ..AuthOptions::default()
    };
    let auth = Authenticator::with_options(store, &options);
    assert_eq!(
        rejected(auth.check(&plain("alice", "right"))),
        RejectReason::PasswordExpired
    );
    assert_eq!(
        rejected(auth.check(&plain("alice", "wrong"))),
        RejectReason::WrongPassword
    );
}

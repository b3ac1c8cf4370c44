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
            authz_id: "alice".into(),
            credential: None,
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
            authz_id: "sales".into(),
            credential: None,
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
        slot_wait: std::time::Duration::from_millis(50),
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

/// `count` users `u1`..`uN` with passwords `pw-1`..`pw-N`, none cached.
fn cold_users(count: usize, options: &AuthOptions) -> (tempfile::TempDir, Authenticator) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("users.sqlite")).unwrap();
    for n in 1..=count {
        store
            .add_user(
                &format!("u{n}"),
                &Secret::from(format!("pw-{n}").as_str()),
                false,
            )
            .unwrap();
    }
    (dir, Authenticator::with_options(Arc::new(store), options))
}

/// Every user logs in at the same moment, each on its own thread.
fn burst(a: &Authenticator, count: usize) -> Vec<Decision> {
    let start = Arc::new(std::sync::Barrier::new(count));
    let threads: Vec<_> = (1..=count)
        .map(|n| {
            let (a, start) = (a.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                a.check(&plain(&format!("u{n}"), None, &format!("pw-{n}")))
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_burst_of_cold_logins_beyond_the_slots_waits_for_them_and_is_verified() {
    let options = AuthOptions {
        max_concurrent_verifications: 2,
        ..AuthOptions::default()
    };
    let (_d, a) = cold_users(8, &options);
    let decisions = burst(&a, 8);
    assert!(
        decisions
            .iter()
            .all(|d| matches!(d, Decision::Accepted { .. })),
        "{decisions:?}"
    );
}

#[test]
fn past_the_slot_queue_or_its_deadline_a_login_is_deferred() {
    let options = AuthOptions {
        max_concurrent_verifications: 1,
        slot_queue: 1,
        slot_wait: std::time::Duration::from_secs(30),
        ..AuthOptions::default()
    };
    let (_d, a) = cold_users(3, &options);
    let held = a.verifications.try_take().expect("a free slot");
    let queued = {
        let a = a.clone();
        std::thread::spawn(move || a.check(&plain("u1", None, "pw-1")))
    };
    while a.verifications.waiting() == 0 {
        std::thread::yield_now();
    }
    let started = std::time::Instant::now();
    assert!(matches!(
        a.check(&plain("u2", None, "pw-2")),
        Decision::Unavailable(_)
    ));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the queue is full: deferred at once"
    );
    drop(held);
    assert!(matches!(queued.join().unwrap(), Decision::Accepted { .. }));

    let options = AuthOptions {
        max_concurrent_verifications: 1,
        slot_wait: std::time::Duration::from_millis(200),
        ..AuthOptions::default()
    };
    let (_d, a) = cold_users(1, &options);
    let _held = a.verifications.try_take().expect("a free slot");
    let started = std::time::Instant::now();
    assert!(matches!(
        a.check(&plain("u1", None, "pw-1")),
        Decision::Unavailable(_)
    ));
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
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
            authz_id: "alice".into(),
            credential: None,
        }
    );
    assert_eq!(
        a.check(&external("alice", Some("sales"))),
        Decision::Accepted {
            authn_id: "alice".into(),
            authz_id: "sales".into(),
            credential: None,
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

/// A store whose `imported` user has the stored form its old server wrote.
fn imported(stored: &str) -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    store
        .add_user("imported", &Secret::from("unused"), false)
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE users SET password = ?1, scram_sha1 = NULL, scram_sha256 = NULL \
             WHERE name = 'imported'",
            [stored],
        )
        .unwrap();
    (dir, Arc::new(store))
}

fn stored_hash(store: &SqliteStore, user: &str) -> String {
    let record = store.lookup(user).unwrap().unwrap();
    record.password.unwrap().as_str().to_string()
}

/// Drepper's SHA-crypt test vector, for "Hello world!".
const SHA512_CRYPT: &str = "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";

#[test]
fn a_sha512_crypt_hash_becomes_argon2id_at_the_next_login() {
    let (_d, store) = imported(SHA512_CRYPT);
    let a = Authenticator::new(store.clone());
    assert!(matches!(
        a.check(&plain("imported", None, "wrong")),
        Decision::Rejected(RejectReason::WrongPassword)
    ));
    assert_eq!(
        stored_hash(&store, "imported"),
        SHA512_CRYPT,
        "a refusal re-hashed"
    );
    assert!(matches!(
        a.check(&plain("imported", None, "Hello world!")),
        Decision::Accepted { .. }
    ));
    assert!(stored_hash(&store, "imported").starts_with("$argon2id$"));
    // The new hash is of the same password, checked from scratch.
    let fresh = Authenticator::new(store.clone());
    assert!(matches!(
        fresh.check(&plain("imported", None, "Hello world!")),
        Decision::Accepted { .. }
    ));
    assert!(matches!(
        fresh.check(&plain("imported", None, "wrong")),
        Decision::Rejected(RejectReason::WrongPassword)
    ));
}

/// The shortest of three refusals of `credentials`.
fn fastest_refusal(a: &Authenticator, credentials: &Credentials) -> std::time::Duration {
    (0..3)
        .map(|_| {
            let started = std::time::Instant::now();
            assert!(matches!(a.check(credentials), Decision::Rejected(_)));
            started.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn a_plain_users_wrong_password_takes_as_long_as_an_unknown_user() {
    let (_d, store) = imported("{PLAIN}s3cret");
    let a = Authenticator::new(store);
    // The {PLAIN} user first: the floor must not need an unknown user to
    // have come by.
    let plain_wrong = fastest_refusal(&a, &plain("imported", None, "wrong"));
    let unknown = fastest_refusal(&a, &plain("nobody", None, "wrong"));
    // Within a factor of two either way (the other tests hash in parallel,
    // so one argon2id may take twice another); without the floor the
    // ratio is below 1/1000.
    assert!(
        plain_wrong * 2 >= unknown,
        "{{PLAIN}} wrong password {plain_wrong:?}, unknown user {unknown:?}"
    );
    assert!(
        plain_wrong <= unknown * 2 + std::time::Duration::from_millis(50),
        "{{PLAIN}} wrong password {plain_wrong:?}, unknown user {unknown:?}"
    );
}

#[test]
fn the_default_hash_slots_fit_the_memory_budget_and_the_cores() {
    let slots = AuthOptions::default().max_concurrent_verifications;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(slots >= 4, "{slots} slots");
    assert!(
        slots * ARGON2_MEMORY_BYTES <= VERIFICATION_MEMORY_BUDGET_BYTES,
        "{slots} slots hold {} MiB",
        (slots * ARGON2_MEMORY_BYTES) >> 20
    );
    assert!(
        slots <= (cores * 2).max(4),
        "{slots} slots for {cores} cores"
    );
}

/// A store that is down.
struct DownStore;

impl CredentialStore for DownStore {
    fn lookup(&self, _: &str) -> Result<Option<portcullis_credentials::UserRecord>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }

    fn has_cram_md5_keys(&self) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[test]
fn a_store_outage_hashes_within_the_slots() {
    let options = AuthOptions {
        max_concurrent_verifications: 1,
        ..AuthOptions::default()
    };
    let a = Authenticator::with_options(Arc::new(DownStore), &options);
    let _held = a.verifications.try_take();
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert!(matches!(
            a.check(&plain("alice", None, "x")),
            Decision::Unavailable(_)
        ));
    }
    // Ten argon2id hashes take hundreds of milliseconds; none ran.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(100),
        "{:?}: hashed without a slot",
        started.elapsed()
    );
}

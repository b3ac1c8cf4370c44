//! One behaviour suite run against every credential store back end.

use std::io::Write;

use portcullis_credentials::file::FileStore;
use portcullis_credentials::sqlite::SqliteStore;
use portcullis_credentials::{
    scheme, CramMd5Keys, CredentialStore, Secret, UserAdmin, Verification,
};

/// What every store must do, given one holding:
/// - "alice": password "alice-pw", CRAM-MD5 keys, may act as
///   "postmaster@example.org" and "abuse@example.org";
/// - "bob": password "bob-pw", no CRAM-MD5 keys, no extra identities.
fn conformance(store: &dyn CredentialStore) {
    let alice = store
        .lookup("alice")
        .expect("store works")
        .expect("alice exists");
    assert_eq!(alice.name, "alice");
    let password = alice.password.as_ref().expect("alice has a password");
    let check = |pw: &str| scheme::verify(password, &Secret::from(pw)).expect("known scheme");
    assert_eq!(check("alice-pw"), Verification::Match);
    assert_eq!(check("bob-pw"), Verification::Mismatch);
    assert_eq!(
        alice.may_act_as,
        ["postmaster@example.org", "abuse@example.org"]
    );
    let keys = alice.cram_md5.as_ref().expect("alice has CRAM-MD5 keys");
    assert_eq!(*keys, CramMd5Keys::from_password(b"alice-pw"));

    let bob = store
        .lookup("bob")
        .expect("store works")
        .expect("bob exists");
    assert!(bob.cram_md5.is_none());
    assert!(bob.may_act_as.is_empty());

    assert!(store.lookup("carol").expect("store works").is_none());
    assert!(
        store.lookup("Alice").expect("store works").is_none(),
        "names are exact"
    );
    assert!(store.lookup("").expect("store works").is_none());
    assert!(store.has_cram_md5_keys().expect("store works"));
}

#[test]
fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("users.db")).expect("opens");
    store
        .add_user("alice", &Secret::from("alice-pw"), true)
        .expect("added");
    store
        .set_may_act_as(
            "alice",
            &["postmaster@example.org".into(), "abuse@example.org".into()],
        )
        .expect("set");
    store
        .add_user("bob", &Secret::from("bob-pw"), false)
        .expect("added");
    conformance(&store);
}

#[test]
fn file_store_conforms() {
    let text = format!(
        r#"
[[user]]
name = "alice"
password = "{alice_pw}"
cram_md5 = "{alice_cram}"
may_act_as = ["postmaster@example.org", "abuse@example.org"]

[[user]]
name = "bob"
password = "{{SHA512-CRYPT}}{bob_pw}"
"#,
        alice_pw = scheme::hash_password(&Secret::from("alice-pw")),
        alice_cram = CramMd5Keys::from_password(b"alice-pw").to_stored(),
        bob_pw = sha_crypt::sha512_simple(
            "bob-pw",
            &sha_crypt::Sha512Params::new(1000).expect("valid rounds")
        )
        .expect("hashes"),
    );
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("written");
    let store = FileStore::load(file.path()).expect("loads");
    conformance(&store);
}

#[test]
fn stores_without_cram_md5_keys_say_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("users.db")).expect("opens");
    assert!(!store.has_cram_md5_keys().expect("works"));
    store
        .add_user("bob", &Secret::from("bob-pw"), false)
        .expect("added");
    assert!(!store.has_cram_md5_keys().expect("works"));
}

//! One behaviour suite run against every credential store back end.

use std::io::Write;

use portcullis_credentials::file::FileStore;
use portcullis_credentials::sqlite::SqliteStore;
use portcullis_credentials::{
    app_password, scheme, AccountFlag, CramMd5Keys, CredentialStore, HashUpgrade, NewAppPassword,
    Secret, StoreError, StoredPassword, UserAdmin, Verification,
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

/// A writable store replaces a user's hash only while it is still the one
/// verified: a password changed in between is never overwritten.
fn hash_upgrade_swaps_only_the_verified_hash(store: &dyn CredentialStore) {
    let stored = |user: &str| {
        let record = store.lookup(user).expect("works").expect("exists");
        record.password.expect("has a password")
    };
    let old = stored("bob");
    let new = StoredPassword::new(scheme::hash_password(&Secret::from("bob-pw")));
    assert_eq!(
        store
            .upgrade_password_hash("bob", &old, &new)
            .expect("works"),
        HashUpgrade::Saved
    );
    assert_eq!(stored("bob"), new);
    assert_eq!(
        store
            .upgrade_password_hash("bob", &old, &old)
            .expect("works"),
        HashUpgrade::Superseded,
        "a stale hash overwrote the current one"
    );
    assert_eq!(stored("bob"), new);
    assert_eq!(
        store
            .upgrade_password_hash("carol", &old, &new)
            .expect("works"),
        HashUpgrade::Superseded
    );
}

/// Account switches and app passwords, on a writable store holding "bob".
fn states_and_app_passwords_conform(store: &dyn UserAdmin) {
    let bob = store.lookup("bob").expect("works").expect("exists");
    assert!(!bob.state.disabled);
    assert!(!bob.state.require_app_password);
    assert!(bob.state.password_set_at.is_some(), "age known");
    store
        .set_flag("bob", AccountFlag::Disabled, true)
        .expect("set");
    store
        .set_flag("bob", AccountFlag::RequireAppPassword, true)
        .expect("set");
    let bob = store.lookup("bob").expect("works").expect("exists");
    assert!(bob.state.disabled && bob.state.require_app_password);
    store
        .set_flag("bob", AccountFlag::Disabled, false)
        .expect("set");
    assert!(!store.lookup("bob").unwrap().unwrap().state.disabled);
    assert!(matches!(
        store.set_flag("nobody", AccountFlag::Disabled, true),
        Err(StoreError::UnknownUser(_))
    ));

    let apps = store.app_password_admin();
    let key = Secret::from("key");
    let (_, token) = app_password::generate();
    let new = NewAppPassword {
        label: "phone".into(),
        expires_at: Some(4_000_000_000),
        networks: vec![
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        senders: vec!["bob@example.org".into(), "@example.com".into()],
    };
    apps.add_app_password("bob", &token.id, &token.hash(&key), &new)
        .expect("added");
    assert!(matches!(
        apps.add_app_password("nobody", "x", &token.hash(&key), &new),
        Err(StoreError::UnknownUser(_))
    ));
    let found = store
        .app_passwords()
        .expect("keeps app passwords")
        .app_password(&token.id)
        .expect("works")
        .expect("found");
    assert_eq!(found.user, "bob");
    assert_eq!(found.label, "phone");
    assert_eq!(found.networks, new.networks);
    assert_eq!(found.senders, new.senders);
    assert_eq!(found.expires_at, new.expires_at);
    assert_eq!(token.verify(&key, &found.hash), Verification::Match);
    apps.app_password_used(&token.id, 1234, "198.51.100.7")
        .expect("recorded");
    let listed = apps.list_app_passwords("bob").expect("works");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(1234));
    assert_eq!(listed[0].last_used_from.as_deref(), Some("198.51.100.7"));
    assert!(apps.list_app_passwords("alice").unwrap().is_empty());
    assert!(matches!(
        apps.revoke_app_password("alice", &token.id),
        Err(StoreError::UnknownCredential(_))
    ));
    let (_, rotated) = app_password::generate_for(&token.id);
    apps.rotate_app_password("bob", &token.id, &rotated.hash(&key))
        .expect("rotated");
    let found = apps.app_password(&token.id).unwrap().expect("same id");
    assert_eq!(token.verify(&key, &found.hash), Verification::Mismatch);
    assert_eq!(rotated.verify(&key, &found.hash), Verification::Match);
    assert!(matches!(
        apps.rotate_app_password("alice", &token.id, &rotated.hash(&key)),
        Err(StoreError::UnknownCredential(_))
    ));
    apps.revoke_app_password("bob", &token.id).expect("revoked");
    assert!(apps.app_password(&token.id).unwrap().is_none());
    assert!(apps
        .app_password("'; DROP TABLE users; --")
        .unwrap()
        .is_none());
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
    hash_upgrade_swaps_only_the_verified_hash(&store);
    states_and_app_passwords_conform(&store);
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
    let bob = store.lookup("bob").unwrap().unwrap().password.unwrap();
    let new = StoredPassword::new(scheme::hash_password(&Secret::from("bob-pw")));
    assert_eq!(
        store.upgrade_password_hash("bob", &bob, &new).unwrap(),
        HashUpgrade::ReadOnly
    );
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

/// The PostgreSQL store against a real server (Debian's `postgresql`,
/// started in a temporary directory): the same suite, a foreign table
/// through `password_query`, and `Unavailable` (454) when it is down.
#[cfg(feature = "postgres")]
mod postgres {
    use portcullis_credentials::postgres::PostgresStore;
    use portcullis_credentials::{CredentialStore, Secret, StoreError, UserAdmin};
    use portcullis_integration_tests::PostgresServer;

    fn server() -> PostgresServer {
        PostgresServer::start().expect("PostgreSQL is not installed: apt-get install -y postgresql")
    }

    #[test]
    fn postgres_store_conforms_and_says_unavailable_when_down() {
        let mut pg = server();
        let store = PostgresStore::open(&pg.url(), None).expect("opens");
        assert!(!store.has_cram_md5_keys().expect("works"));
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
        assert!(matches!(
            store.add_user("bob", &Secret::from("x"), false),
            Err(StoreError::UserExists(_))
        ));
        super::conformance(&store);
        super::hash_upgrade_swaps_only_the_verified_hash(&store);
        super::states_and_app_passwords_conform(&store);
        assert_eq!(store.list_users().unwrap(), ["alice", "bob"]);
        assert!(store.has_scram_secrets().unwrap());
        store.delete_user("bob").expect("deleted");
        assert!(matches!(
            store.delete_user("bob"),
            Err(StoreError::UnknownUser(_))
        ));

        pg.stop();
        assert!(matches!(
            store.lookup("alice"),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            PostgresStore::open(&pg.url(), None),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn password_query_reads_an_existing_table() {
        let pg = server();
        let own = PostgresStore::open(&pg.url(), None).expect("opens");
        drop(own);
        let mut client = postgres_client(&pg.url());
        let hash = portcullis_credentials::scheme::hash_password(&Secret::from("s3cret"));
        client
            .batch_execute(
                "CREATE TABLE accounts (login TEXT PRIMARY KEY, pw_hash TEXT, aliases TEXT[], active BOOL)",
            )
            .unwrap();
        client
            .execute(
                "INSERT INTO accounts VALUES ('dana', $1, ARRAY['sales@example.org'], true), \
                 ('ed', $1, NULL, false)",
                &[&hash],
            )
            .unwrap();
        let query = "SELECT pw_hash AS password, aliases AS may_act_as FROM accounts \
                     WHERE login = %u AND active";
        let store = PostgresStore::open(&pg.url(), Some(query)).expect("opens");
        let dana = store.lookup("dana").unwrap().expect("dana exists");
        assert_eq!(dana.may_act_as, ["sales@example.org"]);
        assert!(dana.password.is_some() && dana.cram_md5.is_none());
        assert!(store.lookup("ed").unwrap().is_none(), "inactive");
        assert!(store
            .lookup("x'; DROP TABLE accounts; --")
            .unwrap()
            .is_none());
        assert!(store.lookup("dana").unwrap().is_some(), "table still there");
        assert!(!store.has_cram_md5_keys().unwrap());
        assert!(
            store.list_users().is_err(),
            "foreign tables are not managed"
        );
        let old = dana.password.expect("checked above");
        let new = portcullis_credentials::StoredPassword::new(hash.clone());
        assert_eq!(
            store.upgrade_password_hash("dana", &old, &new).unwrap(),
            portcullis_credentials::HashUpgrade::ReadOnly,
            "a foreign table was written"
        );
    }

    fn postgres_client(url: &str) -> ::postgres::Client {
        ::postgres::Client::connect(url, ::postgres::NoTls).expect("connects")
    }
}

/// The LDAP store against a real OpenLDAP slapd (Debian's `slapd`,
/// started from an LDIF in a temporary directory): the same suite in
/// search mode, bind mode, names that would inject into filters and DNs,
/// and `Unavailable` (454) when the directory is down.
#[cfg(feature = "ldap")]
mod ldap {
    use std::time::Duration;

    use portcullis_credentials::ldap::{LdapAttributes, LdapMode, LdapSettings, LdapStore, SCHEMA};
    use portcullis_credentials::{
        scheme, CramMd5Keys, CredentialStore, Secret, StoreError, Verification,
    };
    use portcullis_integration_tests::{LdapServer, LDAP_ADMIN_DN, LDAP_ADMIN_PASSWORD};

    fn ssha(password: &str) -> String {
        use base64::Engine;
        use sha1::Digest;
        let salt: [u8; 8] = rand::random();
        let mut digest = sha1::Sha1::digest([password.as_bytes(), &salt].concat()).to_vec();
        digest.extend_from_slice(&salt);
        format!(
            "{{SSHA}}{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }

    fn person(rdn: &str, uid: &str, password: &str, extra: &str) -> String {
        format!(
            "dn: uid={rdn},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n\
             objectClass: portcullisAccount\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             userPassword: {password}\n{extra}\n"
        )
    }

    fn directory() -> LdapServer {
        let bob_crypt = sha_crypt::sha512_simple(
            "bob-pw",
            &sha_crypt::Sha512Params::new(1000).expect("valid rounds"),
        )
        .expect("hashes");
        let ldif = [
            "dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\n\
             dc: example\no: Example\n\n\
             dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n"
                .to_string(),
            person(
                "alice",
                "alice",
                &ssha("alice-pw"),
                &format!(
                    "portcullisCramMd5: {}\nportcullisMayActAs: postmaster@example.org\n\
                     portcullisMayActAs: abuse@example.org\n",
                    CramMd5Keys::from_password(b"alice-pw").to_stored()
                ),
            ),
            person("bob", "bob", &format!("{{CRYPT}}{bob_crypt}"), ""),
            // Names with filter and DN metacharacters, stored as such.
            person("x*y", "x*y", &ssha("star-pw"), ""),
            person("back\\5Cslash", "back\\slash", &ssha("backslash-pw"), ""),
            person(
                "dana",
                "dana",
                &ssha("dana-pw"),
                "portcullisAccountDisabled: TRUE\n",
            ),
        ]
        .join("\n");
        LdapServer::start(SCHEMA, &ldif)
            .expect("slapd is not installed: apt-get install -y slapd ldap-utils")
    }

    fn settings(server: &LdapServer, mode: LdapMode) -> LdapSettings {
        LdapSettings {
            url: server.url(),
            starttls: false,
            bind_dn: Some(LDAP_ADMIN_DN.into()),
            bind_password: Some(Secret::from(LDAP_ADMIN_PASSWORD)),
            base_dn: "ou=people,dc=example,dc=org".into(),
            user_filter: "(&(objectClass=inetOrgPerson)(uid=%u))".into(),
            name_attribute: "uid".into(),
            mode,
            attributes: LdapAttributes::default(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Names that would match other entries, or add clauses, if they
    /// reached the filter raw: none finds anyone.
    const INJECTIONS: [&str; 9] = [
        "*",
        "a*",
        "*)(uid=*",
        "alice)(uid=*",
        "alice)(|(uid=*",
        "alice\0",
        "\\",
        "\\2a",
        "x*",
    ];

    #[test]
    fn ldap_search_mode_conforms_and_resists_injection() {
        let mut server = directory();
        let store = LdapStore::open(settings(&server, LdapMode::Search)).expect("opens");
        super::conformance(&store);
        for name in INJECTIONS {
            assert!(
                store.lookup(name).expect("store works").is_none(),
                "{name:?} found someone"
            );
        }
        // Metacharacters in a real name are matched literally.
        let star = store.lookup("x*y").unwrap().expect("x*y exists");
        let check = |r: &portcullis_credentials::UserRecord, pw: &str| {
            scheme::verify(r.password.as_ref().expect("password"), &Secret::from(pw)).unwrap()
        };
        assert_eq!(check(&star, "star-pw"), Verification::Match);
        let back = store.lookup("back\\slash").unwrap().expect("exists");
        assert_eq!(check(&back, "backslash-pw"), Verification::Match);
        assert!(store.lookup("dana").unwrap().expect("dana").state.disabled);
        assert!(!store.lookup("alice").unwrap().unwrap().state.disabled);

        server.stop();
        assert!(matches!(
            store.lookup("alice"),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            LdapStore::open(settings(&server, LdapMode::Search)),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn ldap_bind_mode_lets_the_directory_check_passwords() {
        let server = directory();
        let dn = "uid=%u,ou=people,dc=example,dc=org".to_string();
        let store = LdapStore::open(settings(&server, LdapMode::Bind { dn })).expect("opens");
        let verify = |name: &str, pw: &str| {
            store
                .verify_password(name, &Secret::from(pw))
                .expect("directory answers")
                .expect("bind mode verifies")
        };
        assert_eq!(verify("alice", "alice-pw"), Verification::Match);
        assert_eq!(verify("alice", "bob-pw"), Verification::Mismatch);
        assert_eq!(verify("bob", "bob-pw"), Verification::Match);
        assert_eq!(verify("x*y", "star-pw"), Verification::Match);
        assert_eq!(verify("back\\slash", "backslash-pw"), Verification::Match);
        // No unauthenticated bind (RFC 4513 §5.1.2) with an empty password.
        assert_eq!(verify("alice", ""), Verification::Mismatch);
        for name in INJECTIONS
            .iter()
            .chain(&["alice,ou=people", "uid=alice,ou=people,dc=example,dc=org"])
        {
            assert_eq!(verify(name, "alice-pw"), Verification::Mismatch, "{name:?}");
        }
        // The record carries no hash (the directory keeps it) but the rest.
        let alice = store.lookup("alice").unwrap().expect("alice");
        assert!(alice.password.is_none());
        assert_eq!(
            alice.may_act_as,
            ["postmaster@example.org", "abuse@example.org"]
        );
    }
}

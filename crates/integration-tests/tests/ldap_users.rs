//! `users.backend = "ldap"` end to end: swaks against the server with a
//! real slapd behind it, in both modes; a disabled entry gets `525`; a
//! name that would inject into the filter finds no one; a directory that
//! is down is `454`, never `535`.

use portcullis_credentials::ldap::SCHEMA;
use portcullis_credentials::CramMd5Keys;
use portcullis_integration_tests::{swaks_plain, LdapServer, TestServer, LDAP_ADMIN_DN};

fn ssha(password: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let salt = b"8bytesal";
    let mut digest = sha1::Sha1::digest([password.as_bytes(), salt].concat()).to_vec();
    digest.extend_from_slice(salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn directory() -> LdapServer {
    let person = |uid: &str, password: &str, extra: &str| {
        format!(
            "dn: uid={uid},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n\
             objectClass: portcullisAccount\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             userPassword: {}\n{extra}\n",
            ssha(password)
        )
    };
    let ldif = [
        "dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\n\
         dc: example\no: Example\n\n\
         dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n"
            .to_string(),
        person(
            "alice",
            "alice-pw",
            &format!(
                "portcullisCramMd5: {}\n",
                CramMd5Keys::from_password(b"alice-pw").to_stored()
            ),
        ),
        person("bob", "bob-pw", ""),
        person("dana", "dana-pw", "portcullisAccountDisabled: TRUE\n"),
    ]
    .join("\n");
    LdapServer::start(SCHEMA, &ldif).expect("slapd is not installed: apt-get install slapd")
}

fn server(ldap: &LdapServer, bind_mode: bool) -> TestServer {
    let mode = match bind_mode {
        true => "user_dn = \"uid=%u,ou=people,dc=example,dc=org\"\n",
        false => "",
    };
    TestServer::builder()
        .users(&[])
        .file("ldap.secret", "admin-secret\n")
        .config(&format!(
            "[users]\nbackend = \"ldap\"\nurl = \"{}\"\nbase_dn = \"ou=people,dc=example,dc=org\"\n\
             bind_dn = \"{LDAP_ADMIN_DN}\"\nbind_password_file = \"ldap.secret\"\ntimeout = \"5s\"\n{mode}",
            ldap.url()
        ))
        .start()
}

fn logins_work(bind_mode: bool) {
    let mut ldap = directory();
    let server = server(&ldap, bind_mode);
    swaks_plain(&server, "alice", "alice-pw")
        .assert_contains("235 2.7.0")
        .assert_success(true);
    // The canonical name is what the directory is asked for.
    swaks_plain(&server, "Bob", "bob-pw").assert_contains("235 2.7.0");
    swaks_plain(&server, "alice", "bob-pw")
        .assert_contains("535 5.7.8")
        .assert_lacks("235 ");
    for name in ["*", "a*", "alice)(uid=*"] {
        swaks_plain(&server, name, "alice-pw")
            .assert_contains("535 5.7.8")
            .assert_lacks("235 ");
    }
    swaks_plain(&server, "dana", "dana-pw").assert_contains("525 5.7.13");
    swaks_plain(&server, "dana", "wrong").assert_contains("535 5.7.8");
    ldap.stop();
    swaks_plain(&server, "alice", "alice-pw")
        .assert_contains("454 4.7.0")
        .assert_lacks("535 ");
}

#[test]
fn swaks_logs_in_through_ldap_search_mode() {
    logins_work(false);
}

#[test]
fn swaks_logs_in_through_ldap_bind_mode() {
    logins_work(true);
}

//! Tests for every supported scheme: freshly generated hashes and fixed
//! published vectors.

use super::*;
use argon2::{Algorithm, Params, Version};

fn stored(s: &str) -> StoredPassword {
    StoredPassword::new(s.to_owned())
}

fn check(stored_form: &str, password: &str) -> Verification {
    verify(&stored(stored_form), &Secret::from(password)).expect("supported scheme")
}

fn assert_accepts_only(stored_form: &str, password: &str) {
    assert_eq!(
        check(stored_form, password),
        Verification::Match,
        "{stored_form}"
    );
    assert_eq!(
        check(stored_form, "wrong"),
        Verification::Mismatch,
        "{stored_form}"
    );
}

#[test]
fn argon2id_round_trip_with_default_params() {
    let hash = hash_password(&Secret::from("correct horse"));
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert_accepts_only(&hash, "correct horse");
    assert_accepts_only(&format!("{{ARGON2ID}}{hash}"), "correct horse");
    assert_accepts_only(&format!("{{argon2id}}{hash}"), "correct horse");
    assert_accepts_only(&format!("{{CRYPT}}{hash}"), "correct horse");
    assert!(validate(&stored(&hash)).is_ok());
}

#[test]
fn hashes_are_salted() {
    let pw = Secret::from("same");
    assert_ne!(hash_password(&pw), hash_password(&pw));
}

fn argon2_with(algorithm: Algorithm, password: &str) -> String {
    let params = Params::new(64, 1, 1, None).expect("valid params");
    let salt = SaltString::encode_b64(b"fixed salt 16 b!").expect("valid salt");
    Argon2::new(algorithm, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hashes")
        .to_string()
}

#[test]
fn argon2i_and_argon2d_with_other_params() {
    let argon2i = argon2_with(Algorithm::Argon2i, "pw");
    assert!(argon2i.starts_with("$argon2i$"));
    assert_accepts_only(&argon2i, "pw");
    assert_accepts_only(&format!("{{ARGON2I}}{argon2i}"), "pw");
    let argon2d = argon2_with(Algorithm::Argon2d, "pw");
    assert!(argon2d.starts_with("$argon2d$"));
    assert_accepts_only(&argon2d, "pw");
}

#[test]
fn argon2_fixed_vector() {
    // argon2id, m=64, t=1, p=1, salt "fixed salt 16 b!", password "pw";
    // pinned so a change in the argon2 crate's output would be noticed.
    let fixed = argon2_with(Algorithm::Argon2id, "pw");
    assert_eq!(fixed, ARGON2ID_FIXED);
    assert_accepts_only(ARGON2ID_FIXED, "pw");
}

const ARGON2ID_FIXED: &str = "$argon2id$v=19$m=64,t=1,p=1$Zml4ZWQgc2FsdCAxNiBiIQ$GzHI5CVDoj4jFkJGlM4rdMjHhrQs/6SVZum1ioO57Rk";

#[test]
fn bcrypt_generated() {
    let hash = bcrypt::hash("letmein", 4).expect("bcrypt hashes");
    assert!(hash.starts_with("$2b$04$"));
    assert_accepts_only(&hash, "letmein");
    assert_accepts_only(&format!("{{BLF-CRYPT}}{hash}"), "letmein");
    assert_accepts_only(&format!("{{BCRYPT}}{hash}"), "letmein");
    assert_accepts_only(&format!("{{CRYPT}}{hash}"), "letmein");
    let two_y = hash.replacen("$2b$", "$2y$", 1);
    assert_accepts_only(&two_y, "letmein");
}

#[test]
fn bcrypt_known_vector() {
    // OpenBSD / John the Ripper test vector.
    assert_accepts_only(
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "U*U",
    );
}

#[test]
fn sha512_crypt_generated() {
    let params = sha_crypt::Sha512Params::new(1000).expect("valid rounds");
    let hash = sha_crypt::sha512_simple("s3cret", &params).expect("hashes");
    assert!(hash.starts_with("$6$"));
    assert_accepts_only(&hash, "s3cret");
    assert_accepts_only(&format!("{{SHA512-CRYPT}}{hash}"), "s3cret");
    assert_accepts_only(&format!("{{sha512-crypt}}{hash}"), "s3cret");
    assert_accepts_only(&format!("{{CRYPT}}{hash}"), "s3cret");
}

#[test]
fn sha512_crypt_known_vectors() {
    // From Drepper's SHA-crypt specification.
    assert_accepts_only(
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        "Hello world!",
    );
    assert_accepts_only(
        "{SHA512-CRYPT}$6$rounds=10000$saltstringsaltstring$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        "Hello world!",
    );
}

#[test]
fn sha256_crypt_generated_and_fixed() {
    let params = sha_crypt::Sha256Params::new(1000).expect("valid rounds");
    let hash = sha_crypt::sha256_simple("s3cret", &params).expect("hashes");
    assert!(hash.starts_with("$5$"));
    assert_accepts_only(&hash, "s3cret");
    assert_accepts_only(&format!("{{SHA256-CRYPT}}{hash}"), "s3cret");
    let fixed_params = sha_crypt::Sha256Params::default();
    let fixed =
        sha_crypt::sha256_crypt_b64(b"Hello world!", b"saltstring", &fixed_params).expect("hashes");
    assert_accepts_only(
        &format!("{{SHA256-CRYPT}}$5$saltstring${fixed}"),
        "Hello world!",
    );
}

#[test]
fn plain_and_cleartext() {
    assert_accepts_only("{PLAIN}secret", "secret");
    assert_accepts_only("{plain}secret", "secret");
    assert_accepts_only("{CLEARTEXT}secret", "secret");
    assert_eq!(check("{PLAIN}secret", "secret "), Verification::Mismatch);
    assert_eq!(check("{PLAIN}secret", "secre"), Verification::Mismatch);
    assert_accepts_only("{PLAIN}", "");
}

#[test]
fn non_utf8_passwords_are_hashed_as_bytes() {
    let pw = Secret::new(vec![0xff, 0xfe, b'x']);
    let hash = hash_password(&pw);
    assert_eq!(
        verify(&stored(&hash), &pw).expect("ok"),
        Verification::Match
    );
}

#[test]
fn unsupported_schemes_are_errors_not_mismatches() {
    for unknown in [
        "{PLAIN-TRUNC}3-abc",
        "{MD5}x",
        "{SMD5}x",
        "$1$salt$hash",
        "plainvalue",
        "",
    ] {
        let err = verify(&stored(unknown), &Secret::from("x")).expect_err(unknown);
        assert!(
            matches!(err, SchemeError::UnknownScheme(_)),
            "{unknown}: {err:?}"
        );
        assert!(validate(&stored(unknown)).is_err());
    }
}

#[test]
fn malformed_values_are_errors_and_never_quoted() {
    let cases = [
        "{PLAIN",
        "$argon2id$notaphcstring-SECRETISH",
        "$2b$04$SECRETISHtooshort",
        "$6$salt$SECRETISHwronglength",
        "$6$rounds=abc$salt$SECRETISH",
        "{SHA512-CRYPT}$2b$04$SECRETISH",
        "{ARGON2I}$argon2id$v=19$m=8,t=1,p=1$SECRETISH",
    ];
    for bad in cases {
        let err = verify(&stored(bad), &Secret::from("x")).expect_err(bad);
        assert!(matches!(err, SchemeError::Malformed(_)), "{bad}: {err:?}");
        assert!(!err.to_string().contains("SECRETISH"), "{err}");
    }
}

#[test]
fn dummy_always_mismatches() {
    assert_eq!(
        verify_dummy(&Secret::from("anything")),
        Verification::Mismatch
    );
    assert_eq!(verify_dummy(&Secret::from("")), Verification::Mismatch);
}

#[test]
fn stored_password_debug_redacts() {
    assert_eq!(format!("{:?}", stored("{PLAIN}x")), "StoredPassword(***)");
}

#[test]
fn openldap_ssha_and_argon2_prefixes_verify() {
    use base64::Engine;
    use sha1::Digest;
    let salt = b"salt1234";
    let mut hasher = sha1::Sha1::new();
    hasher.update(b"secret");
    hasher.update(salt);
    let mut raw = hasher.finalize().to_vec();
    raw.extend_from_slice(salt);
    let ssha = format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    let stored = StoredPassword::new(ssha);
    assert_eq!(
        verify(&stored, &Secret::from("secret")).unwrap(),
        Verification::Match
    );
    assert_eq!(
        verify(&stored, &Secret::from("Secret")).unwrap(),
        Verification::Mismatch
    );
    assert!(needs_upgrade(&stored));
    assert!(verify(
        &StoredPassword::new("{SSHA}c2hvcnQ=".into()),
        &Secret::from("x")
    )
    .is_err());
    let argon = format!("{{ARGON2}}{}", hash_password(&Secret::from("secret")));
    assert_eq!(
        verify(&StoredPassword::new(argon), &Secret::from("secret")).unwrap(),
        Verification::Match
    );
}

#[test]
fn an_idle_verifier_keeps_no_argon2_memory() {
    let hash = hash_password(&Secret::from("pw"));
    // Several at once: buffers are handed on while others run ...
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_accepts_only(&hash, "pw"));
        }
    });
    // ... and the last verification of the burst frees them (other tests
    // of this binary may verify meanwhile: wait for them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while spare_buffers() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "spare argon2 buffers kept while idle"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

//! Password hash formats: hashing new passwords and verifying stored ones.
//!
//! New passwords are always hashed as argon2id PHC strings. Verification
//! accepts the formats found in existing mail user databases, bare or with a
//! Dovecot-style `{SCHEME}` prefix (scheme names are case-insensitive):
//!
//! | stored form | scheme |
//! |---|---|
//! | `$argon2id$`, `$argon2i$`, `$argon2d$` (PHC) | `{ARGON2ID}`, `{ARGON2I}` |
//! | `$2a$`, `$2b$`, `$2y$` | `{BLF-CRYPT}`, `{BCRYPT}` |
//! | `$6$` SHA-512-crypt | `{SHA512-CRYPT}` |
//! | `$5$` SHA-256-crypt | `{SHA256-CRYPT}` |
//! | any of the `$n$` forms above | `{CRYPT}` |
//! | the password itself, compared in constant time | `{PLAIN}`, `{CLEARTEXT}` |
//! | base64 of SHA-1(password ‖ salt) ‖ salt (OpenLDAP) | `{SSHA}` |
//! | any argon2 PHC string (OpenLDAP's argon2 module) | `{ARGON2}` |
//!
//! Errors describe the format, never the stored value or the password.

use std::hint::black_box;

use argon2::password_hash::{self, PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use portcullis_sasl::Secret;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{StoredPassword, Verification};

/// Why a stored password could not be checked. The operator's data is at
/// fault, not the client.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SchemeError {
    /// A `{SCHEME}` prefix or hash format this crate does not support.
    #[error("unsupported password scheme {0}")]
    UnknownScheme(String),
    /// A supported format whose contents do not parse. The message
    /// describes the problem, never the value.
    #[error("malformed stored password: {0}")]
    Malformed(String),
}

/// The argon2id parameters of every new hash (and of [`verify_dummy`]):
/// the argon2 crate's defaults, m=19456 KiB, t=2, p=1. A cold login with
/// a hash made here costs one argon2id run with these; `portcullis-load
/// --hash-rate` measures how many such runs the machine does per second.
pub fn argon2_params() -> argon2::Params {
    argon2::Params::default()
}

fn argon2id() -> Argon2<'static> {
    Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2_params(),
    )
}

/// An argon2id PHC string with a random salt and [`argon2_params`].
pub fn hash_password(password: &Secret) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2id()
        .hash_password(password.expose(), &salt)
        .expect("default argon2 params with a generated salt are always valid")
        .to_string()
}

/// Verifies `password` against any supported stored form (see the module
/// docs). `Err` means the stored value is unusable, not that the password
/// is wrong.
pub fn verify(stored: &StoredPassword, password: &Secret) -> Result<Verification, SchemeError> {
    match parse(stored.as_str())? {
        Parsed::Argon2(phc) => verify_argon2(phc, password),
        Parsed::Bcrypt(hash) => verify_bcrypt(hash, password),
        Parsed::ShaCrypt(variant, hash) => verify_sha_crypt(variant, hash, password),
        Parsed::Plain(plain) => Ok(matched(password.ct_eq(plain.as_bytes()))),
        Parsed::Ssha(encoded) => verify_ssha(encoded, password),
    }
}

/// `{SSHA}`: base64 of the 20-byte SHA-1 of password and salt, then the salt.
fn verify_ssha(encoded: &str, password: &Secret) -> Result<Verification, SchemeError> {
    use base64::Engine;
    use sha1::Digest;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed("{SSHA} value is not base64"))?;
    if decoded.len() <= 20 {
        return Err(malformed("{SSHA} value has no salt"));
    }
    let (digest, salt) = decoded.split_at(20);
    let mut hasher = sha1::Sha1::new();
    hasher.update(password.expose());
    hasher.update(salt);
    Ok(matched(bool::from(
        hasher.finalize().as_slice().ct_eq(digest),
    )))
}

/// The family of a stored form: what its verification costs depends on
/// it (and on its parameters), never on the password. `None` if the form
/// is not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Argon2,
    Bcrypt,
    ShaCrypt,
    Plain,
    /// Salted SHA-1: as fast to guess as `{PLAIN}` is to read, nearly.
    Ssha,
}

pub fn family(stored: &StoredPassword) -> Option<Family> {
    Some(match parse(stored.as_str()).ok()? {
        Parsed::Argon2(_) => Family::Argon2,
        Parsed::Bcrypt(_) => Family::Bcrypt,
        Parsed::ShaCrypt(..) => Family::ShaCrypt,
        Parsed::Plain(_) => Family::Plain,
        Parsed::Ssha(_) => Family::Ssha,
    })
}

/// Whether `stored` should be replaced by an argon2id hash of the same
/// password at the next successful login: everything but argon2id is
/// (`{PLAIN}` and SHA-crypt are fast to guess offline; bcrypt and the other
/// argon2 variants are slower or weaker to verify than our default, and
/// the slowest scheme in use sets how long every failure takes).
pub fn needs_upgrade(stored: &StoredPassword) -> bool {
    !matches!(parse(stored.as_str()), Ok(Parsed::Argon2(phc)) if phc.starts_with("$argon2id$"))
}

/// Checks that `stored` is in a supported format, without hashing
/// anything. Used to reject bad user files at load time.
pub fn validate(stored: &StoredPassword) -> Result<(), SchemeError> {
    match parse(stored.as_str())? {
        Parsed::Argon2(phc) => parse_phc(phc).map(|_| ()),
        Parsed::Ssha(encoded) => verify_ssha(encoded, &Secret::from("")).map(|_| ()),
        Parsed::Bcrypt(_) | Parsed::ShaCrypt(..) | Parsed::Plain(_) => Ok(()),
    }
}

/// Does the same work as verifying an argon2id hash made with the default
/// parameters, and always returns `Mismatch`. Used for unknown users so
/// they cost as much time as a wrong password.
pub fn verify_dummy(password: &Secret) -> Verification {
    const DUMMY_SALT: &[u8; 16] = b"portcullis-dummy";
    let mut output = Zeroizing::new([0u8; argon2::Params::DEFAULT_OUTPUT_LEN]);
    // The result is deliberately ignored: the time spent is the point.
    let argon2 = argon2id();
    let _ = with_blocks(argon2.params().block_count(), |blocks| {
        argon2.hash_password_into_with_memory(
            password.expose(),
            DUMMY_SALT,
            &mut output[..],
            blocks,
        )
    });
    black_box(&output[..]);
    Verification::Mismatch
}

/// A recognised stored form, borrowing the part the verifier needs.
enum Parsed<'a> {
    Argon2(&'a str),
    Bcrypt(&'a str),
    ShaCrypt(ShaVariant, &'a str),
    Plain(&'a str),
    Ssha(&'a str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ShaVariant {
    Sha256,
    Sha512,
}

fn parse(stored: &str) -> Result<Parsed<'_>, SchemeError> {
    let Some(rest) = stored.strip_prefix('{') else {
        return parse_crypt(stored);
    };
    let Some((name, value)) = rest.split_once('}') else {
        return Err(malformed("'{' without a closing '}'"));
    };
    let upper = name.to_ascii_uppercase();
    let parsed = match upper.as_str() {
        "PLAIN" | "CLEARTEXT" => return Ok(Parsed::Plain(value)),
        "CRYPT" => return parse_crypt(value),
        "SSHA" => return Ok(Parsed::Ssha(value)),
        "ARGON2" | "ARGON2ID" | "ARGON2I" | "BLF-CRYPT" | "BCRYPT" | "SHA512-CRYPT"
        | "SHA256-CRYPT" => parse_crypt(value)?,
        _ => return Err(SchemeError::UnknownScheme(printable_scheme(name))),
    };
    // The prefix and the `$id$` must agree.
    let agrees = match (&parsed, upper.as_str()) {
        (Parsed::Argon2(_), "ARGON2") => true,
        (Parsed::Argon2(phc), "ARGON2ID") => phc.starts_with("$argon2id$"),
        (Parsed::Argon2(phc), "ARGON2I") => phc.starts_with("$argon2i$"),
        (Parsed::Bcrypt(_), "BLF-CRYPT" | "BCRYPT") => true,
        (Parsed::ShaCrypt(ShaVariant::Sha512, _), "SHA512-CRYPT") => true,
        (Parsed::ShaCrypt(ShaVariant::Sha256, _), "SHA256-CRYPT") => true,
        _ => false,
    };
    if agrees {
        Ok(parsed)
    } else {
        Err(malformed(&format!(
            "{{{upper}}} prefix does not match the hash format"
        )))
    }
}

/// Dispatches a crypt(3)-style string on its `$id$` prefix.
fn parse_crypt(value: &str) -> Result<Parsed<'_>, SchemeError> {
    let id = value
        .strip_prefix('$')
        .and_then(|v| v.split_once('$'))
        .map(|(id, _)| id);
    match id {
        Some("argon2id" | "argon2i" | "argon2d") => Ok(Parsed::Argon2(value)),
        Some("2a" | "2b" | "2y") => Ok(Parsed::Bcrypt(value)),
        Some("6") => Ok(Parsed::ShaCrypt(ShaVariant::Sha512, value)),
        Some("5") => Ok(Parsed::ShaCrypt(ShaVariant::Sha256, value)),
        Some(id) => Err(SchemeError::UnknownScheme(format!(
            "${}$",
            printable_scheme(id)
        ))),
        None => Err(SchemeError::UnknownScheme(
            "(no {SCHEME} prefix and no $id$ prefix)".into(),
        )),
    }
}

fn verify_argon2(phc: &str, password: &Secret) -> Result<Verification, SchemeError> {
    let hash = parse_phc(phc)?;
    let invalid = || malformed("argon2 parameters are invalid");
    // What `PasswordVerifier::verify_password` does, with the argon2
    // memory from the pool below instead of a fresh allocation.
    let algorithm = argon2::Algorithm::try_from(hash.algorithm).map_err(|_| invalid())?;
    let version = match hash.version {
        Some(v) => argon2::Version::try_from(v).map_err(|_| invalid())?,
        None => argon2::Version::default(),
    };
    let params = argon2::Params::try_from(&hash).map_err(|_| invalid())?;
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return Err(malformed("argon2 PHC string lacks a salt or hash"));
    };
    let mut salt_bytes = [0u8; password_hash::Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_bytes).map_err(|_| invalid())?;
    let mut output = Zeroizing::new(vec![0u8; expected.len()]);
    let argon2 = Argon2::new(algorithm, version, params);
    with_blocks(argon2.params().block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password.expose(), salt, &mut output, blocks)
    })
    .map_err(|_| invalid())?;
    Ok(matched(expected.as_bytes().ct_eq(&output[..]).into()))
}

/// Spare argon2 working memory (19 MiB each with the default parameters),
/// kept for the next verification instead of being returned to the
/// system: the server's allocator gives freed memory back at once, so
/// every verification would otherwise map, fault in and unmap its
/// memory, which cost about a fifth of the hash rate. A buffer is kept only while
/// another verification is running (a burst of first logins, where the
/// reuse pays), at most one per CPU; the last verification of a burst
/// frees them all, so an idle server holds none. The blocks hold
/// intermediate argon2 state, not the password; every run overwrites what
/// it reads.
static SPARE_BLOCKS: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());

/// Verifications running now (see [`SPARE_BLOCKS`]).
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn with_blocks<T>(count: usize, run: impl FnOnce(&mut [argon2::Block]) -> T) -> T {
    use std::sync::atomic::Ordering;
    RUNNING.fetch_add(1, Ordering::AcqRel);
    let spare = SPARE_BLOCKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .pop();
    let mut blocks = spare.unwrap_or_default();
    if blocks.len() < count {
        blocks = vec![argon2::Block::default(); count];
    }
    let result = run(&mut blocks[..count]);
    let keep = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut spare = SPARE_BLOCKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Decided under the lock, so that the last one out cannot miss a
    // buffer another verification is just putting back.
    let others = RUNNING.fetch_sub(1, Ordering::AcqRel) - 1;
    if others == 0 {
        spare.clear();
    } else if spare.len() < keep {
        spare.push(blocks);
    }
    result
}

#[cfg(test)]
pub(crate) fn spare_buffers() -> usize {
    SPARE_BLOCKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len()
}

/// Parses a PHC string that must carry both a salt and a hash.
fn parse_phc(phc: &str) -> Result<PasswordHash<'_>, SchemeError> {
    let hash = PasswordHash::new(phc).map_err(|_| malformed("argon2 PHC string does not parse"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(malformed("argon2 PHC string lacks a salt or hash"));
    }
    Ok(hash)
}

fn verify_bcrypt(hash: &str, password: &Secret) -> Result<Verification, SchemeError> {
    // bcrypt's own errors quote the hash, so they are replaced, not wrapped.
    // Passwords beyond 72 bytes are truncated, as every bcrypt does.
    match bcrypt::verify(password.expose(), hash) {
        Ok(same) => Ok(matched(same)),
        Err(_) => Err(malformed("bcrypt hash does not parse")),
    }
}

/// SHA-crypt (Drepper's `$5$`/`$6$`): `$id$[rounds=N$]salt$hash`.
fn verify_sha_crypt(
    variant: ShaVariant,
    value: &str,
    password: &Secret,
) -> Result<Verification, SchemeError> {
    let mut fields = value.split('$').skip(2);
    let mut salt = fields
        .next()
        .ok_or_else(|| malformed("SHA-crypt without salt"))?;
    // Like glibc: default 5000 rounds, explicit counts clamped to the range.
    let mut rounds = sha_crypt::ROUNDS_DEFAULT;
    if let Some(count) = salt.strip_prefix("rounds=") {
        let count: u64 = count
            .parse()
            .map_err(|_| malformed("SHA-crypt rounds is not a number"))?;
        rounds = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .clamp(sha_crypt::ROUNDS_MIN, sha_crypt::ROUNDS_MAX);
        salt = fields
            .next()
            .ok_or_else(|| malformed("SHA-crypt without salt"))?;
    }
    let expected = fields
        .next()
        .ok_or_else(|| malformed("SHA-crypt without hash"))?;
    if fields.next().is_some() {
        return Err(malformed("SHA-crypt has trailing fields"));
    }
    // glibc uses at most 16 salt characters; sha-crypt truncates likewise.
    let salt = salt.as_bytes();
    let computed = match variant {
        ShaVariant::Sha512 => sha_crypt::Sha512Params::new(rounds)
            .and_then(|p| sha_crypt::sha512_crypt_b64(password.expose(), salt, &p)),
        ShaVariant::Sha256 => sha_crypt::Sha256Params::new(rounds)
            .and_then(|p| sha_crypt::sha256_crypt_b64(password.expose(), salt, &p)),
    }
    .map_err(|_| malformed("SHA-crypt parameters are invalid"))?;
    let computed = Zeroizing::new(computed);
    let expected_len = match variant {
        ShaVariant::Sha512 => 86,
        ShaVariant::Sha256 => 43,
    };
    if expected.len() != expected_len {
        return Err(malformed("SHA-crypt hash has the wrong length"));
    }
    Ok(matched(
        computed.as_bytes().ct_eq(expected.as_bytes()).into(),
    ))
}

fn matched(same: bool) -> Verification {
    if same {
        Verification::Match
    } else {
        Verification::Mismatch
    }
}

fn malformed(reason: &str) -> SchemeError {
    SchemeError::Malformed(reason.to_owned())
}

/// A scheme name safe to put in an error: short and printable, since it
/// comes from stored data.
fn printable_scheme(name: &str) -> String {
    name.chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
#[path = "scheme_tests.rs"]
mod tests;

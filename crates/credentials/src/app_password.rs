//! App passwords: revocable, scoped passwords for one device or script.
//!
//! A token reads `pc_<id>_<secret><check>`:
//! - `pc_` is a fixed prefix, so secret scanners can recognise a leaked one;
//! - `<id>` (12 base32 characters, 60 bits) names its record, so a login
//!   finds it with one indexed look-up instead of trying every credential;
//! - `<secret>` (40 base32 characters, 200 random bits) is the secret;
//! - `<check>` is one Luhn mod 32 character over id and secret, so a typo
//!   (one character changed, two adjacent swapped) is told apart from a
//!   guess without any look-up, and a random string is rarely mistaken for
//!   a token.
//!
//! The store keeps HMAC-SHA-256(key, id, secret) with a key kept in the
//! data directory ([`load_or_create_key`]), never the secret. A slow hash
//! would add nothing: the secret has full entropy, so no dictionary helps,
//! and a leaked table without the key cannot even be checked offline. A
//! login with an app password therefore costs a look-up and one HMAC,
//! about what a cached account-password login costs.
//!
//! Losing the key invalidates every app password (each must be rotated);
//! that is the price of a table that is useless on its own.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{Secret, StoreError, StoredPassword, Verification};

/// The prefix every token starts with.
pub const PREFIX: &str = "pc_";
/// Characters of the id.
pub const ID_LEN: usize = 12;
/// Characters of the secret (5 bits each).
pub const SECRET_LEN: usize = 40;
/// The file in the data directory holding the HMAC key.
pub const KEY_FILE: &str = "app-password.key";
const KEY_LEN: usize = 32;
/// RFC 4648 base32, lower case: no characters a reader confuses with `_`.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// The stored form's prefix, naming the hash.
const HASH_PREFIX: &str = "{HMAC-SHA256}";
const DOMAIN: &[u8] = b"portcullis app password v1\0";

/// A well-formed token, split. The secret part zeroizes on drop.
#[derive(Debug)]
pub struct Token {
    pub id: String,
    secret: Secret,
}

/// Makes a new token: returns it whole (to print once) and parsed.
pub fn generate() -> (Secret, Token) {
    generate_for(&random_chars(ID_LEN))
}

/// A new secret for an existing id (`credential rotate`: the id, which
/// logs, the spool and limits know the credential by, stays).
pub fn generate_for(id: &str) -> (Secret, Token) {
    let id = id.to_owned();
    let secret = random_chars(SECRET_LEN);
    let check = check_char(id.bytes().chain(secret.bytes()));
    let whole = format!("{PREFIX}{id}_{secret}{check}");
    let token = Token {
        id,
        secret: Secret::from(secret),
    };
    (Secret::from(whole), token)
}

/// The token in `password`, if it is one: prefix, lengths, alphabet and
/// check character all right. `None` means "an account password".
pub fn parse(password: &[u8]) -> Option<Token> {
    let rest = password.strip_prefix(PREFIX.as_bytes())?;
    if rest.len() != ID_LEN + 1 + SECRET_LEN + 1 || rest[ID_LEN] != b'_' {
        return None;
    }
    let (id, secret) = (&rest[..ID_LEN], &rest[ID_LEN + 1..rest.len() - 1]);
    let check = rest[rest.len() - 1];
    let valid = |b: &u8| ALPHABET.contains(b);
    if !id.iter().all(valid) || !secret.iter().all(valid) {
        return None;
    }
    if check_char(id.iter().chain(secret).copied()) as u8 != check {
        return None;
    }
    Some(Token {
        id: String::from_utf8(id.to_vec()).ok()?,
        secret: Secret::new(secret.to_vec()),
    })
}

fn random_chars(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Luhn mod 32 (the Luhn algorithm over base 32 digits).
fn check_char(chars: impl DoubleEndedIterator<Item = u8>) -> char {
    let n = ALPHABET.len();
    let mut sum = 0;
    for (i, c) in chars.rev().enumerate() {
        let value = ALPHABET.iter().position(|a| *a == c).unwrap_or(0);
        let addend = if i % 2 == 0 {
            let doubled = value * 2;
            doubled / n + doubled % n
        } else {
            value
        };
        sum += addend;
    }
    ALPHABET[(n - sum % n) % n] as char
}

impl Token {
    /// The stored form: `{HMAC-SHA256}` and the hex MAC of id and secret.
    pub fn hash(&self, key: &Secret) -> StoredPassword {
        StoredPassword::new(format!("{HASH_PREFIX}{}", hex::encode(self.mac(key))))
    }

    fn mac(&self, key: &Secret) -> [u8; 32] {
        // Invariant: HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("any key length");
        mac.update(DOMAIN);
        mac.update(self.id.as_bytes());
        mac.update(b"\0");
        mac.update(self.secret.expose());
        mac.finalize().into_bytes().into()
    }

    /// Whether `stored` is this token's hash, compared in constant time.
    pub fn verify(&self, key: &Secret, stored: &StoredPassword) -> Verification {
        let Some(hex_mac) = stored.as_str().strip_prefix(HASH_PREFIX) else {
            return Verification::Mismatch;
        };
        let Ok(expected) = hex::decode(hex_mac) else {
            return Verification::Mismatch;
        };
        match bool::from(self.mac(key).ct_eq(&expected)) {
            true => Verification::Match,
            false => Verification::Mismatch,
        }
    }
}

/// An app password as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    pub id: String,
    /// The account it belongs to (canonical name).
    pub user: String,
    pub label: String,
    pub hash: StoredPassword,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_from: Option<String>,
    /// Client networks it may log in from; empty: any.
    pub networks: Vec<ipnet::IpNet>,
    /// Envelope senders it may use, on top of the account's (addresses or
    /// `@domain`); empty: whatever the account may use.
    pub senders: Vec<String>,
}

/// Why a correct app password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeRefusal {
    Expired,
    NetworkNotAllowed,
}

impl AppPassword {
    /// Whether a login from `client` at `now` (Unix seconds) is in scope.
    /// No client address (a local check): only credentials without a
    /// network scope.
    pub fn admits(&self, client: Option<IpAddr>, now: i64) -> Result<(), ScopeRefusal> {
        if self.expires_at.is_some_and(|at| now >= at) {
            return Err(ScopeRefusal::Expired);
        }
        if self.networks.is_empty() {
            return Ok(());
        }
        let client = client.map(canonical_ip);
        match client {
            Some(ip) if self.networks.iter().any(|n| n.contains(&ip)) => Ok(()),
            _ => Err(ScopeRefusal::NetworkNotAllowed),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What `credential add` and `rotate` are given.
#[derive(Debug, Clone, Default)]
pub struct NewAppPassword {
    pub label: String,
    pub expires_at: Option<i64>,
    pub networks: Vec<ipnet::IpNet>,
    pub senders: Vec<String>,
}

/// Comma-joined text of networks, as stores keep them.
pub(crate) fn join_networks(networks: &[ipnet::IpNet]) -> String {
    networks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn split_networks(id: &str, text: &str) -> Result<Vec<ipnet::IpNet>, StoreError> {
    split_list(text)
        .map(|n| {
            n.parse().map_err(|e| StoreError::InvalidRecord {
                user: format!("app password {id}"),
                reason: format!("network {n:?}: {e}"),
            })
        })
        .collect()
}

pub(crate) fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|s| !s.is_empty())
}

/// Checks a label or sender: non-empty, bounded, no control characters
/// and no comma (the stores' separator).
pub(crate) fn check_scope(new: &NewAppPassword) -> Result<(), StoreError> {
    crate::check_identity("app password", &new.label)?;
    for sender in &new.senders {
        crate::check_identity("app password", sender)?;
    }
    Ok(())
}

/// Stores that keep app passwords.
///
/// Cost: a look-up is one indexed read; may block (disk, network).
pub trait AppPasswordStore: Send + Sync {
    /// The app password with this id, or `None`.
    fn app_password(&self, id: &str) -> Result<Option<AppPassword>, StoreError>;

    /// Records a login with it (time, client address).
    fn app_password_used(&self, id: &str, at: i64, from: &str) -> Result<(), StoreError>;

    /// Adds one for `user` with the stored `hash` of a token with `id`.
    /// `Err(UnknownUser)` if there is no such user.
    fn add_app_password(
        &self,
        user: &str,
        id: &str,
        hash: &StoredPassword,
        new: &NewAppPassword,
    ) -> Result<(), StoreError>;

    /// `user`'s app passwords, oldest first.
    fn list_app_passwords(&self, user: &str) -> Result<Vec<AppPassword>, StoreError>;

    /// Deletes `user`'s app password `id`. `Err(UnknownCredential)` if absent.
    fn revoke_app_password(&self, user: &str, id: &str) -> Result<(), StoreError>;

    /// Replaces the hash of `user`'s app password `id` (a new secret, same
    /// id and scopes). `Err(UnknownCredential)` if absent.
    fn rotate_app_password(
        &self,
        user: &str,
        id: &str,
        hash: &StoredPassword,
    ) -> Result<(), StoreError>;
}

/// Reads the HMAC key from the data directory, making it (32 random
/// bytes, mode 0600) on first use.
pub fn load_or_create_key(data_dir: &Path) -> Result<Secret, std::io::Error> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(key) if key.len() == KEY_LEN => return Ok(Secret::new(key)),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: expected {KEY_LEN} bytes (a new key would invalidate every app password)",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key: [u8; KEY_LEN] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(Secret::new(key.to_vec()))
        }
        // Another process (the CLI beside the server) made it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(data_dir),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_verify() {
        let key = Secret::from("k");
        let (whole, token) = generate();
        let text = String::from_utf8(whole.expose().to_vec()).expect("ascii");
        assert!(text.starts_with("pc_"), "{text}");
        assert_eq!(text.len(), 3 + ID_LEN + 1 + SECRET_LEN + 1);
        let parsed = parse(whole.expose()).expect("parses");
        assert_eq!(parsed.id, token.id);
        let stored = token.hash(&key);
        assert_eq!(parsed.verify(&key, &stored), Verification::Match);
        assert_eq!(
            parsed.verify(&Secret::from("other key"), &stored),
            Verification::Mismatch
        );
        assert!(!format!("{stored:?}").contains(&stored.as_str()[14..]));
    }

    #[test]
    fn the_check_character_catches_typos() {
        let (whole, _) = generate();
        let text = whole.expose().to_vec();
        for i in PREFIX.len()..text.len() {
            if text[i] == b'_' {
                continue;
            }
            let mut typo = text.clone();
            typo[i] = if text[i] == b'a' { b'b' } else { b'a' };
            assert!(parse(&typo).is_none(), "typo at {i} not caught");
        }
        let mut swapped = text.clone();
        let i = PREFIX.len() + ID_LEN + 3;
        if swapped[i] != swapped[i + 1] {
            swapped.swap(i, i + 1);
            assert!(parse(&swapped).is_none(), "swap not caught");
        }
    }

    #[test]
    fn other_passwords_are_not_tokens() {
        for p in ["hunter2", "pc_", "pc_abc_def", &"pc_".repeat(20)] {
            assert!(parse(p.as_bytes()).is_none(), "{p}");
        }
    }

    #[test]
    fn scopes() {
        let credential = AppPassword {
            id: "x".into(),
            user: "alice".into(),
            label: "phone".into(),
            hash: StoredPassword::new(String::new()),
            created_at: 0,
            expires_at: Some(100),
            last_used_at: None,
            last_used_from: None,
            networks: vec!["198.51.100.0/24".parse().expect("net")],
            senders: vec![],
        };
        let inside: IpAddr = "198.51.100.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().expect("ip");
        let outside: IpAddr = "203.0.113.1".parse().expect("ip");
        assert_eq!(credential.admits(Some(inside), 10), Ok(()));
        assert_eq!(credential.admits(Some(mapped), 10), Ok(()));
        assert_eq!(
            credential.admits(Some(outside), 10),
            Err(ScopeRefusal::NetworkNotAllowed)
        );
        assert_eq!(
            credential.admits(None, 10),
            Err(ScopeRefusal::NetworkNotAllowed)
        );
        assert_eq!(
            credential.admits(Some(inside), 100),
            Err(ScopeRefusal::Expired)
        );
    }

    #[test]
    fn the_key_is_made_once() {
        let dir = tempfile::tempdir().expect("dir");
        let a = load_or_create_key(dir.path()).expect("made");
        let b = load_or_create_key(dir.path()).expect("read");
        assert_eq!(a, b);
    }
}

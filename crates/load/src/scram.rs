//! SCRAM-SHA-256 client (RFC 5802, RFC 7677), without channel binding.
//!
//! Two round trips after the initial response: the server's first message
//! (nonce, salt, iterations) is answered with the client proof; the server's
//! final message (`v=`) must carry a signature only a holder of the password
//! could compute, and is answered with an empty line before `235`.
//!
//! PBKDF2 (SCRAM's `Hi()`) is the `pbkdf2` crate's. Its result is cached
//! per (salt, iterations), as real clients do: otherwise 4096 iterations
//! per login would measure the client.

use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::mech::{MechError, Password};

type HmacSha256 = Hmac<Sha256>;

/// A server asking for more than this many PBKDF2 iterations is refused:
/// the client must not be made to burn its CPU.
const MAX_ITERATIONS: u32 = 1_000_000;

/// A salted password with the salt and iteration count it was made with.
struct Salted {
    salt: Vec<u8>,
    rounds: u32,
    key: Zeroizing<[u8; 32]>,
}

/// The last salted password, keyed by salt and iteration count.
#[derive(Default)]
pub struct ScramCache(Mutex<Option<Salted>>);

impl ScramCache {
    fn salted_password(&self, password: &Password, salt: &[u8], rounds: u32) -> [u8; 32] {
        // The lock is never held across an await: this is plain CPU work.
        let mut slot = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(cached) = slot.as_ref() {
            if cached.salt == salt && cached.rounds == rounds {
                return *cached.key;
            }
        }
        let key = pbkdf2_sha256(password.expose().as_bytes(), salt, rounds);
        *slot = Some(Salted {
            salt: salt.to_vec(),
            rounds,
            key: Zeroizing::new(key),
        });
        key
    }
}

enum Phase {
    /// Waiting for server-first.
    First,
    /// Sent client-final; waiting for server-final with this signature.
    Final { expected_signature: [u8; 32] },
    /// Server signature checked; the `334 v=` is answered with an empty line.
    Verified,
}

/// One SCRAM exchange.
pub struct Scram {
    client_first_bare: String,
    nonce: String,
    phase: Phase,
}

impl Scram {
    /// Starts with a random nonce; returns the client-first message.
    pub fn start(user: &str) -> (Scram, String) {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        Scram::with_nonce(user, B64.encode(raw))
    }

    fn with_nonce(user: &str, nonce: String) -> (Scram, String) {
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={nonce}");
        let first = format!("n,,{client_first_bare}");
        let scram = Scram {
            client_first_bare,
            nonce,
            phase: Phase::First,
        };
        (scram, first)
    }

    /// True once the server's signature was checked.
    pub fn verified(&self) -> bool {
        matches!(self.phase, Phase::Verified)
    }

    /// Answers one decoded server message.
    pub fn step(
        &mut self,
        server: &[u8],
        password: &Password,
        cache: &ScramCache,
    ) -> Result<Zeroizing<Vec<u8>>, MechError> {
        let server = std::str::from_utf8(server).map_err(|_| MechError::BadChallenge)?;
        match &self.phase {
            Phase::First => self.client_final(server, password, cache),
            Phase::Final { expected_signature } => {
                let v = attribute(server, 'v').ok_or(MechError::BadChallenge)?;
                let got = B64.decode(v).map_err(|_| MechError::BadChallenge)?;
                if got.as_slice() != expected_signature.as_slice() {
                    return Err(MechError::ServerSignature);
                }
                self.phase = Phase::Verified;
                Ok(Zeroizing::new(Vec::new()))
            }
            Phase::Verified => Err(MechError::UnexpectedChallenge),
        }
    }

    fn client_final(
        &mut self,
        server_first: &str,
        password: &Password,
        cache: &ScramCache,
    ) -> Result<Zeroizing<Vec<u8>>, MechError> {
        let nonce = attribute(server_first, 'r').ok_or(MechError::BadChallenge)?;
        let salt = attribute(server_first, 's').ok_or(MechError::BadChallenge)?;
        let salt = B64.decode(salt).map_err(|_| MechError::BadChallenge)?;
        let rounds: u32 = attribute(server_first, 'i')
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=MAX_ITERATIONS).contains(i))
            .ok_or(MechError::BadChallenge)?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(MechError::BadChallenge);
        }
        let salted = Zeroizing::new(cache.salted_password(password, &salt, rounds));
        let client_key = Zeroizing::new(hmac(&*salted, b"Client Key"));
        let stored_key: [u8; 32] = Sha256::digest(*client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&*salted, b"Server Key");
        self.phase = Phase::Final {
            expected_signature: hmac(&server_key, auth_message.as_bytes()),
        };
        let message = format!("{without_proof},p={}", B64.encode(proof));
        Ok(Zeroizing::new(message.into_bytes()))
    }
}

/// The value of `name=` in a comma-separated SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block: SCRAM's `Hi()`.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, rounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example exchange of RFC 7677 §3.
    #[test]
    fn rfc_7677_exchange() {
        let (mut scram, first) = Scram::with_nonce("user", "rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let password = Password::new("pencil".into());
        let cache = ScramCache::default();
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = scram.step(server_first, &password, &cache).unwrap();
        assert_eq!(
            std::str::from_utf8(&client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(!scram.verified());
        let server_final = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert!(scram
            .step(server_final, &password, &cache)
            .unwrap()
            .is_empty());
        assert!(scram.verified());
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let (mut scram, _) = Scram::with_nonce("user", "abc".into());
        let password = Password::new("pencil".into());
        let cache = ScramCache::default();
        scram
            .step(b"r=abcdef,s=AAAA,i=4096", &password, &cache)
            .unwrap();
        let forged = format!("v={}", B64.encode([0u8; 32]));
        assert_eq!(
            scram
                .step(forged.as_bytes(), &password, &cache)
                .unwrap_err(),
            MechError::ServerSignature
        );
    }

    #[test]
    fn a_server_nonce_must_extend_ours() {
        let (mut scram, _) = Scram::with_nonce("user", "abc".into());
        let password = Password::new("p".into());
        let err = scram
            .step(b"r=xyz123,s=AAAA,i=4096", &password, &ScramCache::default())
            .unwrap_err();
        assert_eq!(err, MechError::BadChallenge);
    }

    #[test]
    fn user_names_are_escaped() {
        let (_, first) = Scram::with_nonce("a=b,c", "n".into());
        assert_eq!(first, "n,,n=a=3Db=2Cc,r=n");
    }
}

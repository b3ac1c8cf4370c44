//! Stored password strings (Dovecot-style `{SCHEME}` prefixes, crypt(3)
//! `$id$` forms, PHC strings) through the load-time check and the verifier.
//!
//! Input: `password\nstored`. Beyond "no panic": a stored value the
//! load-time check refuses is never verified as a match or mismatch (it
//! must be refused at login too), and `{PLAIN}` matches its own text.
//!
//! Verification is skipped when the stored value asks for an expensive
//! hash (bcrypt cost above 5, SHA-crypt rounds above 1000 or left at the
//! default 5000, argon2 above 64 KiB or 2 passes): that is time, not a bug.
#![no_main]

use argon2::password_hash::PasswordHash;
use libfuzzer_sys::fuzz_target;
use portcullis_credentials::{scheme, Secret, StoredPassword, Verification};

fuzz_target!(|input: &[u8]| {
    let Ok(input) = std::str::from_utf8(input) else {
        return;
    };
    let (password, stored) = input.split_once('\n').unwrap_or(("", input));
    let stored_password = StoredPassword::new(stored.to_string());
    let valid = scheme::validate(&stored_password);
    if let Err(error) = &valid {
        let _ = error.to_string();
    }
    if !cheap(stored) {
        return;
    }
    let verified = scheme::verify(&stored_password, &Secret::from(password));
    if valid.is_err() {
        assert!(
            verified.is_err(),
            "validate refused it, verify gave {verified:?}"
        );
    }
    if let Some((name, plain)) = stored.strip_prefix('{').and_then(|s| s.split_once('}')) {
        if ["PLAIN", "CLEARTEXT"].contains(&name.to_ascii_uppercase().as_str()) {
            let own = scheme::verify(&stored_password, &Secret::from(plain));
            assert_eq!(own.ok(), Some(Verification::Match));
        }
    }
});

/// Whether verifying `stored` costs little (see the module docs). Errs on
/// the side of verifying: anything that does not parse is cheap to refuse.
fn cheap(stored: &str) -> bool {
    let value = match stored.strip_prefix('{') {
        Some(rest) => rest.split_once('}').map_or(rest, |(_, value)| value),
        None => stored,
    };
    let mut fields = value.split('$');
    let (Some(""), Some(id), third) = (fields.next(), fields.next(), fields.next()) else {
        return true;
    };
    match id {
        "5" | "6" => match third.and_then(|salt| salt.strip_prefix("rounds=")) {
            Some(count) => count.parse::<u64>().ok().is_none_or(|n| n <= 1000),
            None => third.is_none(),
        },
        "2a" | "2b" | "2y" => third
            .and_then(|c| c.parse::<u32>().ok())
            .is_none_or(|c| c <= 5),
        id if id.starts_with("argon2") => match PasswordHash::new(value) {
            Ok(hash) => argon2::Params::try_from(&hash)
                .ok()
                .is_none_or(|p| p.m_cost() <= 64 && p.t_cost() <= 2 && p.p_cost() <= 2),
            Err(_) => true,
        },
        _ => true,
    }
}

//! One canonical form for user names, applied once at the edge.
//!
//! A user name reaches many places: the store look-up, the verified
//! cache, the brute-force counters, bans and cool-downs, the log and the
//! spool. If each saw the string as the client typed it, `Alice` and
//! `alice` could be one account to the store and two users to the
//! limiter (twice the guesses), or two accounts could share one cache key
//! (Dovecot CVE-2025-30189 is that class of bug). So the session maps the
//! name once, before any of them sees it, with one [`UsernameProfile`]:
//!
//! - [`UsernameProfile::CaseMapped`] (the default): PRECIS
//!   UsernameCaseMapped (RFC 8265 §3.3: width mapping, case folding, NFC,
//!   the IdentifierClass and the Bidi rule), so `Alice`, `ALICE` and
//!   `alice` (and fullwidth `ａｌｉｃｅ`) are one user;
//! - [`UsernameProfile::Exact`]: the bytes as sent, for stores whose names
//!   are case-sensitive.
//!
//! A name the profile refuses (a space, a control character) is left as
//! sent: it cannot name an account the CLI made (which refuses it too),
//! so it fails as an unknown user does, at the same cost, and cannot
//! collide with any canonical name (a canonical name is valid; it is not).

use std::borrow::Cow;

use precis_profiles::precis_core::profile::PrecisFastInvocation;
use precis_profiles::UsernameCaseMapped;

/// How user names are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UsernameProfile {
    /// PRECIS UsernameCaseMapped (RFC 8265).
    #[default]
    CaseMapped,
    /// As sent, byte for byte.
    Exact,
}

/// A name the profile refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user name not allowed by the PRECIS UsernameCaseMapped profile")]
pub struct InvalidUsername;

impl UsernameProfile {
    /// The canonical form of `name`, or `InvalidUsername`.
    pub fn enforce<'a>(&self, name: &'a str) -> Result<Cow<'a, str>, InvalidUsername> {
        match self {
            UsernameProfile::Exact => Ok(Cow::Borrowed(name)),
            UsernameProfile::CaseMapped => match ascii_case_mapped(name) {
                Some(canonical) => Ok(canonical),
                None => UsernameCaseMapped::enforce(name).map_err(|_| InvalidUsername),
            },
        }
    }

    /// The canonical form of `name`, or `name` as sent when the profile
    /// refuses it (see the module docs for why that is safe).
    pub fn canonical(&self, name: &str) -> String {
        self.enforce(name)
            .map(Cow::into_owned)
            .unwrap_or_else(|_| name.to_owned())
    }

    /// `case_mapped` or `exact`, as the config names them.
    pub fn from_name(name: &str) -> Option<UsernameProfile> {
        match name {
            "case_mapped" | "username_case_mapped" => Some(UsernameProfile::CaseMapped),
            "exact" => Some(UsernameProfile::Exact),
            _ => None,
        }
    }
}

/// UsernameCaseMapped of a name of printable ASCII, without the PRECIS
/// tables (about 2 500 instructions a login through them). For these
/// characters every rule of the profile but one is the identity: width
/// mapping and NFC change nothing, all of 0x21-0x7E is valid in the
/// IdentifierClass (RFC 8264 §9.11, ASCII7), and none is right-to-left
/// (the Bidi rule). What is left is case mapping, which for ASCII is
/// ASCII lowercasing. Anything else (empty, a space, a control, any
/// non-ASCII character) goes through the full profile.
fn ascii_case_mapped(name: &str) -> Option<Cow<'_, str>> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    Some(if bytes.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

impl crate::Credentials {
    /// The same credentials with the authentication and authorization
    /// identities in `profile`'s canonical form. Bearer tokens keep the
    /// user they name: the token's issuer spelt it.
    pub fn canonicalized(self, profile: UsernameProfile) -> crate::Credentials {
        use crate::Credentials as C;
        let name = |n: String| profile.canonical(&n);
        let id = |z: Option<String>| z.map(|z| profile.canonical(&z));
        match self {
            C::Password {
                authcid,
                authzid,
                password,
            } => C::Password {
                authcid: name(authcid),
                authzid: id(authzid),
                password,
            },
            C::CramMd5 {
                authcid,
                challenge,
                digest,
            } => C::CramMd5 {
                authcid: name(authcid),
                challenge,
                digest,
            },
            C::Scram {
                authcid,
                authzid,
                hash,
                outcome,
            } => C::Scram {
                authcid: name(authcid),
                authzid: id(authzid),
                hash,
                outcome,
            },
            C::External { authcid, authzid } => C::External {
                authcid: name(authcid),
                authzid: id(authzid),
            },
            other @ C::Bearer { .. } => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_shortcut_agrees_with_the_full_profile() {
        let full = |name: &str| {
            UsernameCaseMapped::enforce(name)
                .map(Cow::into_owned)
                .map_err(|_| InvalidUsername)
        };
        let short = |name: &str| {
            UsernameProfile::CaseMapped
                .enforce(name)
                .map(Cow::into_owned)
        };
        // Every byte alone and between letters (refused ones included:
        // the shortcut must pass them on, not decide).
        for b in 0u8..=0x7f {
            let c = char::from(b);
            for name in [c.to_string(), format!("a{c}B"), format!("{c}{c}")] {
                assert_eq!(short(&name), full(&name), "{name:?}");
            }
        }
        for name in [
            "Bench",
            "u.ser+tag@Example.COM",
            "~!#$%^&*()_=",
            "a\\b\"c'd",
        ] {
            assert_eq!(short(name), full(name), "{name:?}");
            assert!(ascii_case_mapped(name).is_some(), "{name:?}");
        }
        assert!(ascii_case_mapped("").is_none());
        assert!(ascii_case_mapped("caf\u{e9}").is_none());
    }

    #[test]
    fn case_and_width_variants_are_one_name() {
        let p = UsernameProfile::CaseMapped;
        for variant in ["alice", "Alice", "ALICE", "ａｌｉｃｅ"] {
            assert_eq!(p.canonical(variant), "alice", "{variant}");
        }
        assert_eq!(p.canonical("Bob@Example.ORG"), "bob@example.org");
        // NFC: a precomposed and a decomposed é are one name.
        assert_eq!(p.canonical("Jos\u{e9}"), p.canonical("Jose\u{301}"));
        assert_eq!(UsernameProfile::Exact.canonical("Alice"), "Alice");
    }

    #[test]
    fn refused_names_are_left_as_sent() {
        let p = UsernameProfile::CaseMapped;
        for refused in ["", "a b", "a\u{0}b", "tab\there"] {
            assert!(p.enforce(refused).is_err(), "{refused:?}");
            assert_eq!(p.canonical(refused), refused);
        }
    }

    #[test]
    fn profiles_by_name() {
        assert_eq!(
            UsernameProfile::from_name("case_mapped"),
            Some(UsernameProfile::CaseMapped)
        );
        assert_eq!(
            UsernameProfile::from_name("exact"),
            Some(UsernameProfile::Exact)
        );
        assert_eq!(UsernameProfile::from_name("other"), None);
    }
}

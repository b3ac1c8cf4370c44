//! Comparing mailbox addresses, internationalised ones included.
//!
//! With SMTPUTF8 (RFC 6531) an address may be UTF-8, and the same address
//! can arrive as different code point sequences: `ü` precomposed (U+00FC)
//! or as `u` and a combining diaeresis. RFC 6530 §10.1 and RFC 6532 §3.1
//! expect NFC; we compare in NFC, case-folded, so that a sender rule
//! (`jürgen@bücher.example`) and an ownership check match the address
//! however the client composed it. The address itself is stored and
//! relayed as the client sent it: normalising is for comparing only.

use unicode_normalization::UnicodeNormalization;

/// The form two addresses are compared in: NFC, then lower case. ASCII
/// input comes back ASCII-lower-cased, as before SMTPUTF8.
pub fn canonical(address: &str) -> String {
    if address.is_ascii() {
        return address.to_ascii_lowercase();
    }
    address.nfc().collect::<String>().to_lowercase()
}

/// Whether a non-ASCII `address` is acceptable in an SMTPUTF8 envelope:
/// well-formed UTF-8 is given (the command line was decoded as UTF-8), so
/// what is left to refuse is a control character (C0, DEL, C1), which no
/// address may hold and a log or report line must not carry.
pub fn valid_utf8_address(address: &str) -> bool {
    !address.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_and_decomposed_compare_equal() {
        let composed = "j\u{fc}rgen@b\u{fc}cher.example";
        let decomposed = "ju\u{308}rgen@bu\u{308}cher.example";
        assert_ne!(composed, decomposed);
        assert_eq!(canonical(composed), canonical(decomposed));
        assert_eq!(
            canonical("J\u{dc}RGEN@B\u{fc}cher.Example"),
            canonical(composed)
        );
    }

    #[test]
    fn ascii_is_lower_cased_only() {
        assert_eq!(canonical("Alice@Example.COM"), "alice@example.com");
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(valid_utf8_address("j\u{fc}rgen@b\u{fc}cher.example"));
        assert!(!valid_utf8_address("a\u{85}b@x"));
    }
}

//! SMTP AUTH's base64 framing of SASL responses (RFC 4954 §4).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A client response line, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    /// `*`: the client abandons the exchange.
    Cancel,
    /// Decoded octets (possibly empty).
    Data(Vec<u8>),
}

/// Why a response line could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    #[error("the client sent invalid base64")]
    InvalidBase64,
}

/// Decodes the initial response of `AUTH MECH <ir>`: `=` is an empty
/// response, `*` is not special here (RFC 4954 only defines it on its own line).
pub fn decode_initial_response(arg: &[u8]) -> Result<Vec<u8>, FramingError> {
    if arg == b"=" {
        return Ok(Vec::new());
    }
    decode(arg)
}

/// Decodes a response line sent after a `334` challenge. RFC 4954 sends an
/// empty response as an empty line, but curl sends `=` (the initial
/// response form) there too; a lone `=` is never valid base64, so reading
/// it as empty is unambiguous, and Dovecot and Cyrus do the same.
pub fn decode_continuation(line: &[u8]) -> Result<Response, FramingError> {
    match line {
        b"*" => Ok(Response::Cancel),
        b"=" => Ok(Response::Data(Vec::new())),
        _ => decode(line).map(Response::Data),
    }
}

/// Encodes a challenge for a `334` line. An empty challenge is sent as `334 `
/// with nothing after the space, as RFC 4954 §4 says.
pub fn encode_challenge(challenge: &[u8]) -> String {
    STANDARD.encode(challenge)
}

fn decode(text: &[u8]) -> Result<Vec<u8>, FramingError> {
    STANDARD
        .decode(text)
        .map_err(|_| FramingError::InvalidBase64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_sign_is_an_empty_initial_response() {
        assert_eq!(decode_initial_response(b"="), Ok(vec![]));
    }

    #[test]
    fn star_cancels_a_continuation() {
        assert_eq!(decode_continuation(b"*"), Ok(Response::Cancel));
    }

    #[test]
    fn empty_continuation_is_empty_data() {
        assert_eq!(decode_continuation(b""), Ok(Response::Data(vec![])));
    }

    #[test]
    fn equals_sign_continuation_from_curl_is_empty_data() {
        assert_eq!(decode_continuation(b"="), Ok(Response::Data(vec![])));
        assert_eq!(decode_continuation(b"=="), Err(FramingError::InvalidBase64));
    }

    #[test]
    fn invalid_base64_is_an_error() {
        assert_eq!(
            decode_continuation(b"not base64!"),
            Err(FramingError::InvalidBase64)
        );
        assert_eq!(decode_initial_response(b"AA=="), Ok(vec![0]));
    }

    #[test]
    fn round_trip() {
        let s = encode_challenge(b"Username:");
        assert_eq!(s, "VXNlcm5hbWU6");
        assert_eq!(
            decode_continuation(s.as_bytes()),
            Ok(Response::Data(b"Username:".to_vec()))
        );
    }
}

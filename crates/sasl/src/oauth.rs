//! OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's older form of the same):
//! the client sends a bearer token, and whom it is for.
//!
//! Both only parse here; whether the token is good is the `auth` crate's
//! decision. When it is not, RFC 7628 §3.2.2 has the server send an error
//! (JSON, as a challenge) which the client acknowledges before the final
//! failure; [`Credentials::failure_data`](crate::Credentials::failure_data)
//! carries that JSON to the session.

use crate::{Credentials, SaslError, Secret, MAX_IDENTITY_LEN};

/// Longest token we accept, in octets (JWTs with many claims run to a few
/// kilobytes; the SMTP line limit is 12 288 base64 characters anyway).
pub const MAX_TOKEN_LEN: usize = 8192;

/// The error JSON sent before a `535` (RFC 7628 §3.2.2; Gmail sends the
/// same shape for XOAUTH2).
pub const INVALID_TOKEN_JSON: &str =
    r#"{"status":"invalid_token","schemes":"bearer","scope":"email"}"#;

/// `n,a=user,^Aauth=Bearer token^A^A` (kvpairs may also carry host, port).
pub(crate) fn parse_oauthbearer(message: &[u8]) -> Result<Credentials, SaslError> {
    check_len(message)?;
    let text = std::str::from_utf8(message)
        .map_err(|_| SaslError::Malformed("OAUTHBEARER message is not UTF-8"))?;
    let Some((gs2, kvpairs)) = text.split_once('\x01') else {
        return Err(SaslError::Malformed(
            "OAUTHBEARER needs gs2-header ^A kvpairs",
        ));
    };
    let mut fields = gs2.split(',');
    match fields.next() {
        Some("n" | "y") => {}
        Some(flag) if flag.starts_with("p=") => {
            return Err(SaslError::Refused("OAUTHBEARER has no channel binding"))
        }
        _ => return Err(SaslError::Malformed("bad gs2 flag in OAUTHBEARER")),
    }
    let user = match fields.next() {
        Some("") | None => None,
        Some(field) => match field.strip_prefix("a=") {
            Some(name) => Some(crate::scram::message::saslname(name)?),
            None => return Err(SaslError::Malformed("bad gs2 authzid in OAUTHBEARER")),
        },
    };
    let token = bearer(
        kvpairs
            .split('\x01')
            .find_map(|kv| kv.strip_prefix("auth=")),
    )?;
    Ok(Credentials::Bearer {
        user: user.filter(|u| !u.is_empty()),
        token,
    })
}

/// `user=name^Aauth=Bearer token^A^A`.
pub(crate) fn parse_xoauth2(message: &[u8]) -> Result<Credentials, SaslError> {
    check_len(message)?;
    let text = std::str::from_utf8(message)
        .map_err(|_| SaslError::Malformed("XOAUTH2 message is not UTF-8"))?;
    let field = |name: &str| text.split('\x01').find_map(|kv| kv.strip_prefix(name));
    let user = field("user=").ok_or(SaslError::Malformed("XOAUTH2 needs user="))?;
    if user.is_empty() || user.len() > MAX_IDENTITY_LEN {
        return Err(SaslError::Malformed("XOAUTH2 user empty or too long"));
    }
    Ok(Credentials::Bearer {
        user: Some(user.to_string()),
        token: bearer(field("auth="))?,
    })
}

fn check_len(message: &[u8]) -> Result<(), SaslError> {
    match message.len() > MAX_TOKEN_LEN + MAX_IDENTITY_LEN + 256 {
        true => Err(SaslError::TooLong),
        false => Ok(()),
    }
}

/// `Bearer <token>` (the scheme name is case-insensitive, RFC 6750).
fn bearer(auth: Option<&str>) -> Result<Secret, SaslError> {
    let auth = auth.ok_or(SaslError::Malformed("no auth= field"))?;
    let (scheme, token) = auth
        .split_once(' ')
        .ok_or(SaslError::Malformed("auth= needs `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(SaslError::Malformed("auth= needs `Bearer <token>`"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(SaslError::TooLong);
    }
    Ok(Secret::from(token.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(credentials: Credentials) -> (Option<String>, Vec<u8>) {
        match credentials {
            Credentials::Bearer { user, token } => (user, token.expose().to_vec()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc_7628_example() {
        // RFC 7628 §4.1, with the host and port kvpairs.
        let message = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01\
                        auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
        let (user, token) = parts(parse_oauthbearer(message).expect("parses"));
        assert_eq!(user.as_deref(), Some("user@example.com"));
        assert_eq!(token, b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
        let (user, _) = parts(parse_oauthbearer(b"n,,\x01auth=Bearer t\x01\x01").expect("ok"));
        assert_eq!(user, None);
    }

    #[test]
    fn xoauth2_as_google_documents_it() {
        let message = b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2\x01\x01";
        let (user, token) = parts(parse_xoauth2(message).expect("parses"));
        assert_eq!(user.as_deref(), Some("someuser@example.com"));
        assert_eq!(token, b"ya29.vF9dft4qmTc2");
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b"n,,auth=Bearer t"[..],
            b"q,,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic dA==\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"n,b=x,\x01auth=Bearer t\x01\x01",
        ] {
            assert!(
                parse_oauthbearer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse_oauthbearer(b"p=tls-exporter,,\x01auth=Bearer t\x01\x01"),
            Err(SaslError::Refused(_))
        ));
        assert!(parse_xoauth2(b"auth=Bearer t\x01\x01").is_err());
        let long = format!(
            "user=a\x01auth=Bearer {}\x01\x01",
            "t".repeat(MAX_TOKEN_LEN + 1)
        );
        assert_eq!(
            parse_xoauth2(long.as_bytes()).unwrap_err(),
            SaslError::TooLong
        );
    }
}

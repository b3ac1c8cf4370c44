//! Parsing the two client messages of SCRAM (RFC 5802 §7), bounded and
//! strict: anything the grammar does not allow is [`SaslError::Malformed`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::{SaslError, MAX_IDENTITY_LEN};

/// Longest SCRAM message we read. The line limit bounds it already; this
/// keeps the parser honest on its own.
pub(crate) const MAX_MESSAGE_LEN: usize = 4096;
/// Longest client nonce we accept.
const MAX_NONCE_LEN: usize = 256;

/// The gs2 channel-binding flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CbFlag {
    /// `n`: the client does not support channel binding.
    None,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=name`: the client binds to channel `name`.
    Bound(String),
}

/// `gs2-header client-first-message-bare`, taken apart.
#[derive(Debug)]
pub(crate) struct ClientFirst {
    pub flag: CbFlag,
    /// The gs2 header exactly as sent (it is echoed, base64, in `c=`).
    pub gs2_header: String,
    pub authzid: Option<String>,
    /// `client-first-message-bare`, part of the AuthMessage.
    pub bare: String,
    pub username: String,
    pub nonce: String,
}

/// `client-final-message`, taken apart.
#[derive(Debug)]
pub(crate) struct ClientFinal {
    /// Everything before `,p=`: part of the AuthMessage.
    pub without_proof: String,
    pub channel_binding: Vec<u8>,
    pub nonce: String,
    pub proof: Vec<u8>,
}

fn text(message: &[u8]) -> Result<&str, SaslError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(SaslError::TooLong);
    }
    std::str::from_utf8(message).map_err(|_| SaslError::Malformed("SCRAM message is not UTF-8"))
}

pub(crate) fn client_first(message: &[u8]) -> Result<ClientFirst, SaslError> {
    let message = text(message)?;
    let mut parts = message.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Malformed("SCRAM needs gs2-header, client-first"));
    };
    let flag = match flag {
        "n" => CbFlag::None,
        "y" => CbFlag::ClientOnly,
        _ => match flag.strip_prefix("p=") {
            Some(name) if valid_cb_name(name) => CbFlag::Bound(name.to_string()),
            _ => return Err(SaslError::Malformed("bad gs2 channel-binding flag")),
        },
    };
    let authzid = match authzid {
        "" => None,
        _ => match authzid.strip_prefix("a=") {
            Some(name) => Some(saslname(name)?).filter(|n| !n.is_empty()),
            None => return Err(SaslError::Malformed("bad gs2 authzid")),
        },
    };
    let gs2_header = message[..message.len() - bare.len()].to_string();
    let mut fields = bare.split(',');
    let username = match fields.next().and_then(|f| f.strip_prefix("n=")) {
        Some(name) => saslname(name)?,
        // `m=` (reserved-mext) lands here too: RFC 5802 says to fail.
        None => return Err(SaslError::Malformed("SCRAM needs n=username first")),
    };
    let nonce = match fields.next().and_then(|f| f.strip_prefix("r=")) {
        Some(nonce) => printable_nonce(nonce)?,
        None => return Err(SaslError::Malformed("SCRAM needs r=nonce")),
    };
    Ok(ClientFirst {
        flag,
        gs2_header,
        authzid,
        bare: bare.to_string(),
        username,
        nonce,
    })
}

pub(crate) fn client_final(message: &[u8]) -> Result<ClientFinal, SaslError> {
    let message = text(message)?;
    let Some(split) = message.rfind(",p=") else {
        return Err(SaslError::Malformed("SCRAM client-final needs p=proof"));
    };
    let (without_proof, proof) = (&message[..split], &message[split + 3..]);
    let mut fields = without_proof.split(',');
    let channel_binding = match fields.next().and_then(|f| f.strip_prefix("c=")) {
        Some(b64) => base64(b64)?,
        None => return Err(SaslError::Malformed("SCRAM client-final needs c= first")),
    };
    let nonce = match fields.next().and_then(|f| f.strip_prefix("r=")) {
        Some(nonce) => nonce.to_string(),
        None => return Err(SaslError::Malformed("SCRAM client-final needs r=nonce")),
    };
    Ok(ClientFinal {
        without_proof: without_proof.to_string(),
        channel_binding,
        nonce,
        proof: base64(proof)?,
    })
}

fn base64(text: &str) -> Result<Vec<u8>, SaslError> {
    STANDARD
        .decode(text)
        .map_err(|_| SaslError::Malformed("invalid base64 inside SCRAM"))
}

/// RFC 5802 `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
pub(crate) fn saslname(text: &str) -> Result<String, SaslError> {
    if text.len() > MAX_IDENTITY_LEN {
        return Err(SaslError::TooLong);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escaped = rest.get(at..at + 3);
        match escaped {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslError::Malformed("bad escape in SCRAM saslname")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 5802 `c-nonce`: printable ASCII except `,`.
fn printable_nonce(nonce: &str) -> Result<String, SaslError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(SaslError::Malformed("SCRAM nonce empty or too long"));
    }
    if !nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(SaslError::Malformed("SCRAM nonce is not printable"));
    }
    Ok(nonce.to_string())
}

/// RFC 5056 channel-binding type names: letters, digits, `.` and `-`.
fn valid_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_with_authzid_and_binding() {
        let first = client_first(b"p=tls-exporter,a=bob=2Cx=3Dy,n=alice,r=abc,ext=1").expect("ok");
        assert_eq!(first.flag, CbFlag::Bound("tls-exporter".into()));
        assert_eq!(first.gs2_header, "p=tls-exporter,a=bob=2Cx=3Dy,");
        assert_eq!(first.authzid.as_deref(), Some("bob,x=y"));
        assert_eq!(first.username, "alice");
        assert_eq!(first.nonce, "abc");
        assert_eq!(first.bare, "n=alice,r=abc,ext=1");
    }

    #[test]
    fn client_first_rejects_what_the_grammar_does_not_allow() {
        for bad in [
            &b"n,,m=ext,n=a,r=x"[..],
            b"n,,n=a",
            b"q,,n=a,r=x",
            b"n,b=x,n=a,r=x",
            b"n,,n=a=41,r=x",
            b"n,,n=a,r=x y",
            b"n,,n=a,r=",
            b"p=,,n=a,r=x",
            b"n,,r=x,n=a",
            b"\xff,,n=a,r=x",
        ] {
            assert!(
                client_first(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("n,,n={},r=x", "a".repeat(MAX_MESSAGE_LEN));
        assert_eq!(
            client_first(long.as_bytes()).unwrap_err(),
            SaslError::TooLong
        );
    }

    #[test]
    fn client_final_splits_off_the_proof() {
        let last = client_final(b"c=biws,r=abcdef,p=AAEC").expect("ok");
        assert_eq!(last.without_proof, "c=biws,r=abcdef");
        assert_eq!(last.channel_binding, b"n,,");
        assert_eq!(last.nonce, "abcdef");
        assert_eq!(last.proof, [0, 1, 2]);
        assert!(client_final(b"c=biws,r=abc").is_err());
        assert!(client_final(b"r=abc,c=biws,p=AA==").is_err());
        assert!(client_final(b"c=!!,r=abc,p=AA==").is_err());
    }
}

//! EXTERNAL (RFC 4422 appendix A): the client is who the layer below says
//! it is, here the TLS client certificate the server verified against its
//! CA. The only thing the client sends is an optional authorization
//! identity; the authentication identity comes from the driver, through
//! [`crate::StartContext::external_identity`], never from the client.
//!
//! The mechanism refuses to start without that identity, so a connection
//! without a verified certificate cannot reach the decision with an empty
//! or client-chosen name even if a caller forgot to hide the mechanism.

use crate::{Credentials, SaslError, MAX_IDENTITY_LEN};

/// Why EXTERNAL refuses to start: no verified client certificate.
pub(crate) const NO_EXTERNAL_IDENTITY: &str = "no identity from a verified client certificate";

/// The client's message (`authzid`, possibly empty) with the identity the
/// TLS layer vouched for.
pub(crate) fn finish(identity: String, message: &[u8]) -> Result<Credentials, SaslError> {
    if message.len() > MAX_IDENTITY_LEN {
        return Err(SaslError::TooLong);
    }
    if message.contains(&0) {
        return Err(SaslError::Malformed("NUL inside the EXTERNAL authzid"));
    }
    let authzid = String::from_utf8(message.to_vec())
        .map_err(|_| SaslError::Malformed("EXTERNAL authzid is not UTF-8"))?;
    Ok(Credentials::External {
        authcid: identity,
        authzid: (!authzid.is_empty()).then_some(authzid),
    })
}

#[cfg(test)]
mod tests {
    use crate::{Credentials, Exchange, Mechanism, SaslError, StartContext, Step};

    fn context(identity: Option<&str>) -> StartContext<'_> {
        StartContext {
            external_identity: identity,
            ..StartContext::default()
        }
    }

    fn external(step: Result<Step, SaslError>) -> (String, Option<String>) {
        match step {
            Ok(Step::Done(Credentials::External { authcid, authzid })) => (authcid, authzid),
            other => panic!("expected EXTERNAL credentials, got {other:?}"),
        }
    }

    #[test]
    fn empty_initial_response_uses_the_certificate_identity() {
        let step = Exchange::start_with(Mechanism::External, Some(vec![]), &context(Some("alice")));
        assert_eq!(external(step), ("alice".into(), None));
    }

    #[test]
    fn initial_response_is_the_authzid() {
        let step = Exchange::start_with(
            Mechanism::External,
            Some(b"shared@example.test".to_vec()),
            &context(Some("alice")),
        );
        assert_eq!(
            external(step),
            ("alice".into(), Some("shared@example.test".into()))
        );
    }

    #[test]
    fn without_initial_response_an_empty_challenge_asks_for_the_authzid() {
        let step = Exchange::start_with(Mechanism::External, None, &context(Some("alice")));
        let Ok(Step::Challenge(exchange, challenge)) = step else {
            panic!("expected a challenge, got {step:?}");
        };
        assert!(challenge.is_empty());
        assert_eq!(external(exchange.respond(vec![])), ("alice".into(), None));
    }

    #[test]
    fn no_verified_certificate_is_refused_before_anything_is_read() {
        let step = Exchange::start_with(Mechanism::External, Some(vec![]), &context(None));
        assert!(matches!(step, Err(SaslError::Refused(_))), "{step:?}");
    }

    #[test]
    fn nul_in_the_authzid_is_malformed() {
        let step = Exchange::start_with(
            Mechanism::External,
            Some(b"bob\0alice".to_vec()),
            &context(Some("alice")),
        );
        assert!(matches!(step, Err(SaslError::Malformed(_))), "{step:?}");
    }

    #[test]
    fn authcid_is_the_certificate_identity_and_authzid_is_reported() {
        let (authcid, authzid) = ("alice".to_string(), Some("bob".to_string()));
        let credentials = Credentials::External { authcid, authzid };
        assert_eq!(credentials.authcid(), "alice");
        assert_eq!(credentials.authzid(), Some("bob"));
    }
}

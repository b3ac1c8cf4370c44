//! TLS client certificates for SASL EXTERNAL: the optional verifier built
//! from the configured CA, and the facts read from a verified leaf.
//!
//! Verification is rustls's (`WebPkiClientVerifier`, chain to our CA,
//! validity dates, the clientAuth key usage) and happens in the handshake:
//! a certificate the CA does not vouch for fails the handshake, so nothing
//! here ever sees an unverified certificate. `allow_unauthenticated` keeps
//! the certificate optional, so password clients connect as before.
//! Parsing the leaf afterwards (x509-parser) only maps it to a user name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_config::{ClientCertificates, ClientIdentity};
use portcullis_session::ClientCertificate;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

/// Why the client CA could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientCaError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("invalid certificate or key: {path} holds no CA certificate")]
    Empty { path: PathBuf },
    #[error("invalid certificate or key: {path}: {source}")]
    Invalid {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("invalid certificate or key: client CA {path}: {source}")]
    Verifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
}

/// The certificate's SHA-256 fingerprint as colon-separated hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The verifier for `[tls] client_ca`: certificates are optional, and
/// those sent must chain to one of the CA certificates in the file.
pub(crate) fn verifier(
    clients: &ClientCertificates,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ClientCaError> {
    let path = &clients.ca;
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_cas(path)? {
        roots.add(ca).map_err(|source| ClientCaError::Invalid {
            path: path.clone(),
            source,
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|source| ClientCaError::Verifier {
            path: path.clone(),
            source,
        })
}

fn read_cas(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientCaError> {
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|source| ClientCaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if cas.is_empty() {
        return Err(ClientCaError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(cas)
}

/// The facts of the verified leaf `der`, its user mapped by `identity`.
/// `None` if the leaf does not parse (rustls accepted it, so this is not
/// expected; the session then just does not offer EXTERNAL).
pub(crate) fn facts(
    der: &CertificateDer<'_>,
    identity: ClientIdentity,
) -> Option<ClientCertificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mapped = match identity {
        ClientIdentity::CommonName => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        ClientIdentity::Email => cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|name| match name {
                    GeneralName::RFC822Name(email) => Some(email.to_string()),
                    _ => None,
                })
            }),
    };
    Some(ClientCertificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sha256: fingerprint(der),
        identity: mapped.filter(|name| !name.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(cn: &str, email: Option<&str>) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if let Some(email) = email {
            params
                .subject_alt_names
                .push(rcgen::SanType::Rfc822Name(email.try_into().unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn maps_the_common_name_or_the_email() {
        let der = leaf("alice", Some("alice@example.test"));
        let cn = facts(&der, ClientIdentity::CommonName).unwrap();
        assert_eq!(cn.identity.as_deref(), Some("alice"));
        assert_eq!(cn.subject, "CN=alice");
        assert_eq!(cn.issuer, "CN=alice");
        assert_eq!(cn.sha256, fingerprint(&der));
        let email = facts(&der, ClientIdentity::Email).unwrap();
        assert_eq!(email.identity.as_deref(), Some("alice@example.test"));
    }

    #[test]
    fn no_such_field_maps_to_no_user() {
        let der = leaf("alice", None);
        assert_eq!(facts(&der, ClientIdentity::Email).unwrap().identity, None);
        assert_eq!(
            facts(
                &CertificateDer::from(vec![1, 2, 3]),
                ClientIdentity::CommonName
            ),
            None
        );
    }
}

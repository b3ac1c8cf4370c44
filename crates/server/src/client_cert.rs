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
use portcullis_session::{CertificateDetails, ClientCertificate};
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

/// The facts of the leaf `der`, its user mapped by `identity` only when
/// `verify_error` is `None` (it chained to our CA). `None` if the leaf
/// does not parse (the session then just does not offer EXTERNAL).
pub(crate) fn facts(
    der: &CertificateDer<'_>,
    identity: Option<ClientIdentity>,
    verify_error: Option<String>,
) -> Option<ClientCertificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mapped = match identity.filter(|_| verify_error.is_none()) {
        None => None,
        Some(ClientIdentity::CommonName) => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        Some(ClientIdentity::Email) => {
            cert.subject_alternative_name()
                .ok()
                .flatten()
                .and_then(|san| {
                    san.value.general_names.iter().find_map(|name| match name {
                        GeneralName::RFC822Name(email) => Some(email.to_string()),
                        _ => None,
                    })
                })
        }
    };
    Some(ClientCertificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sha256: fingerprint(der),
        identity: mapped.filter(|name| !name.is_empty()),
        details: details(der, &cert, verify_error),
    })
}

/// What Halon's `GetTLS` tells of a peer certificate.
fn details(
    der: &CertificateDer<'_>,
    cert: &x509_parser::certificate::X509Certificate<'_>,
    verify_error: Option<String>,
) -> CertificateDetails {
    use sha2::Digest;
    let colons = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(n) => Some(format!("DNS:{n}")),
                    GeneralName::RFC822Name(n) => Some(format!("email:{n}")),
                    GeneralName::URI(n) => Some(format!("URI:{n}")),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip)
                            .ok()
                            .map(|a| format!("IP:{}", std::net::Ipv4Addr::from(a))),
                        16 => <[u8; 16]>::try_from(*ip)
                            .ok()
                            .map(|a| format!("IP:{}", std::net::Ipv6Addr::from(a))),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let (key_algorithm, key_bits) = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => ("RSA", rsa.key_size() as u32),
        Ok(x509_parser::public_key::PublicKey::EC(ec)) => ("EC", ec.key_size() as u32),
        _ => {
            let oid = cert.public_key().algorithm.algorithm.to_id_string();
            match oid.as_str() {
                "1.3.101.112" => ("Ed25519", 256),
                "1.3.101.113" => ("Ed448", 456),
                _ => ("unknown", 0),
            }
        }
    };
    let bytes = der.as_ref();
    CertificateDetails {
        md5: colons(&md5::Md5::digest(bytes)),
        sha1: colons(&sha1::Sha1::digest(bytes)),
        sha512: colons(&sha2::Sha512::digest(bytes)),
        serial: colons(cert.raw_serial()),
        not_before: cert.validity().not_before.to_rfc2822().unwrap_or_default(),
        not_after: cert.validity().not_after.to_rfc2822().unwrap_or_default(),
        subject_alt_names: sans,
        key_algorithm: key_algorithm.to_string(),
        key_bits,
        verify_error,
    }
}

/// The verifier of a listener with `client_certificate = "request"`: every
/// client is asked for a certificate and any is accepted, whoever issued
/// it; the handshake still checks the client's signature, so the client
/// holds the certificate's key. Dangerous alone: only a policy that pins
/// the certificate (by fingerprint) gives it meaning, and EXTERNAL never
/// accepts one that did not chain to our CA ([`facts`] maps no user).
#[derive(Debug)]
pub(crate) struct DangerousAnyClientCertificate {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl DangerousAnyClientCertificate {
    pub(crate) fn new(provider: &rustls::crypto::CryptoProvider) -> Arc<Self> {
        Arc::new(DangerousAnyClientCertificate {
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ClientCertVerifier for DangerousAnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
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
        let cn = facts(&der, Some(ClientIdentity::CommonName), None).unwrap();
        assert_eq!(cn.identity.as_deref(), Some("alice"));
        assert_eq!(cn.subject, "CN=alice");
        assert_eq!(cn.issuer, "CN=alice");
        assert_eq!(cn.sha256, fingerprint(&der));
        let email = facts(&der, Some(ClientIdentity::Email), None).unwrap();
        assert_eq!(email.identity.as_deref(), Some("alice@example.test"));
    }

    #[test]
    fn no_such_field_maps_to_no_user() {
        let der = leaf("alice", None);
        assert_eq!(
            facts(&der, Some(ClientIdentity::Email), None)
                .unwrap()
                .identity,
            None
        );
        assert_eq!(
            facts(
                &CertificateDer::from(vec![1, 2, 3]),
                Some(ClientIdentity::CommonName),
                None
            ),
            None
        );
    }
}

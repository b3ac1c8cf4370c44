//! rustls client configurations for STARTTLS towards a next hop.
//!
//! By default the next hop's certificate is verified against the Mozilla
//! roots (webpki-roots) and the route's host name. A route to a smarthost
//! with a private CA sets `ca_file`: then only the CA certificates in that
//! file are trusted (not the public roots as well: such a route has no use
//! for them), and the host name is still checked. The files are read once,
//! at start-up, so a missing or empty one stops the server rather than
//! every delivery. A route may instead set `dangerous_accept_invalid_certs`
//! (tests, a next hop on loopback with a self-signed certificate); then any
//! certificate is accepted, but the handshake signatures are still checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_config::delivery::{Relay, Route, Transport};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::DeliveryError;

/// The client configurations, built once: public roots, each route's CA
/// file, and the dangerous one.
#[derive(Debug, Clone)]
pub struct TlsConfigs {
    verified: Arc<ClientConfig>,
    dangerous: Arc<ClientConfig>,
    /// By CA file, one for each file a route names.
    private: HashMap<PathBuf, Arc<ClientConfig>>,
}

impl TlsConfigs {
    /// Reads the CA file of each route that has one.
    pub fn new(routes: &[Route]) -> Result<TlsConfigs, DeliveryError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let verified = verifying(&provider, roots);
        let mut private = HashMap::new();
        let ca_files = routes.iter().filter_map(|r| match &r.transport {
            Transport::Smtp(relay) | Transport::Lmtp(relay) => relay.ca_file.as_ref(),
            Transport::Maildir { .. } => None,
        });
        for path in ca_files {
            if !private.contains_key(path) {
                let config = verifying(&provider, read_roots(path)?);
                private.insert(path.clone(), config);
            }
        }
        let dangerous = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(
                portcullis_dangerous_tls::DangerousAcceptAnyCertificate::new(provider),
            )
            .with_no_client_auth();
        Ok(TlsConfigs {
            verified,
            dangerous: Arc::new(dangerous),
            private,
        })
    }

    /// The configuration for a next hop.
    pub fn get(&self, relay: &Relay) -> Arc<ClientConfig> {
        if relay.dangerous_accept_invalid_certs {
            return self.dangerous.clone();
        }
        match &relay.ca_file {
            // Every route's CA file was read in `new`; a relay from
            // elsewhere falls back to the public roots, never to less.
            Some(path) => self.private.get(path).unwrap_or(&self.verified).clone(),
            None => self.verified.clone(),
        }
    }
}

/// A configuration that verifies against `roots` and the host name.
fn verifying(provider: &Arc<CryptoProvider>, roots: RootCertStore) -> Arc<ClientConfig> {
    // Invariant: ring supports rustls's default protocol versions.
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The CA certificates of a PEM file; at least one.
fn read_roots(path: &Path) -> Result<RootCertStore, DeliveryError> {
    let fail = |detail: String| DeliveryError::CaFile {
        path: path.display().to_string(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(fail(format!(
            "no usable CA certificate ({ignored} unparsable)"
        )));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use portcullis_config::delivery::{Identity, RelayTls, Target};

    use super::*;

    fn route_with_ca_file(path: &Path) -> Route {
        let relay = Relay {
            target: Target::Tcp {
                host: "relay.test".into(),
                port: 25,
            },
            tls: RelayTls::StartTls,
            dangerous_accept_invalid_certs: false,
            ca_file: Some(path.to_path_buf()),
            auth: None,
        };
        Route {
            name: "r".into(),
            domains: vec!["*".into()],
            users: vec![],
            transport: Transport::Smtp(relay),
            workers: 1,
            identity: Identity::None,
            identity_required: true,
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in [missing, empty] {
            let error = TlsConfigs::new(&[route_with_ca_file(&path)]).unwrap_err();
            assert!(
                matches!(error, DeliveryError::CaFile { .. }),
                "{path:?}: {error}"
            );
        }
    }
}

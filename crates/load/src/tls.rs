//! The TLS client configuration every connection shares.
//!
//! rustls with the ring provider, as the server uses. Two knobs matter for
//! measurements: resumption is *off* unless `--tls-resume`, so every STARTTLS
//! session pays the full handshake the table measures; and
//! `--insecure` swaps certificate verification for
//! [`portcullis_dangerous_tls::DangerousAcceptAnyCertificate`]
//! (test servers have self-signed certificates) while still checking the
//! handshake signatures, so the server's CPU work is the same as with a
//! trusted certificate.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::Resumption;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

/// What the sessions need to start TLS.
#[derive(Clone)]
pub struct TlsClient {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

/// Builds the shared client config.
pub fn client(
    server_name: &str,
    insecure: bool,
    ca_file: Option<&Path>,
    resume: bool,
) -> anyhow::Result<TlsClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls refuses its own default protocol versions")?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(
                portcullis_dangerous_tls::DangerousAcceptAnyCertificate::new(provider),
            )
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth()
    };
    if !resume {
        config.resumption = Resumption::disabled();
    }
    let name = ServerName::try_from(server_name.to_string())
        .with_context(|| format!("{server_name:?} is not a valid TLS server name (see --sni)"))?;
    Ok(TlsClient {
        connector: TlsConnector::from(Arc::new(config)),
        name,
    })
}

fn roots(ca_file: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read {}", path.display()))?
            {
                let cert = cert.with_context(|| format!("bad PEM in {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("unusable certificate in {}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

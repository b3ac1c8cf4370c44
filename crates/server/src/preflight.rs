//! Checks made before anything is created or bound: every file the config
//! names opens and parses, and every listening address is free.
//!
//! `check-config` runs [`check_files`] so that "config ok" means the server
//! will find what it needs; `serve` runs both before it makes its data
//! directory, spool, user database or self-signed certificate, so a
//! mistake leaves nothing behind.

use portcullis_config::{Config, TlsSource, UserBackend};

use crate::error::ServerError;
use crate::tls::TlsError;

/// Opens and parses the certificate and key, the client CA, the JWKS file
/// and a file user store, as the server will. Creates nothing: a
/// self-signed certificate is checked only if it already exists.
pub fn check_files(config: &Config) -> Result<(), ServerError> {
    match &config.tls {
        TlsSource::Files { .. } => {
            crate::tls::setup(
                &config.tls,
                &config.hostname,
                config.client_certificates.as_ref(),
            )?;
        }
        TlsSource::SelfSigned { .. } => {
            if let Some(clients) = &config.client_certificates {
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                crate::client_cert::verifier(clients, provider).map_err(TlsError::from)?;
            }
        }
    }
    if let Some(oauth) = &config.oauth {
        crate::oauth::token_validator(oauth)?;
    }
    if let UserBackend::File { path } = &config.users {
        portcullis_credentials::file::FileStore::load(path)?;
    }
    Ok(())
}

/// Binds each listening address once and lets it go: a port that is taken
/// is reported before the data directory is touched. (The real bind comes
/// later; a port taken in between still fails there, with the same error.)
pub fn check_ports(config: &Config) -> Result<(), ServerError> {
    let admin = config.admin.map(|address| ("admin".to_string(), address));
    let listeners = config
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.address))
        .chain(admin);
    for (name, address) in listeners {
        std::net::TcpListener::bind(address).map_err(|source| ServerError::Bind {
            name,
            address,
            source,
        })?;
    }
    Ok(())
}

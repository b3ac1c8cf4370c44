//! Why the server could not start: one typed error, each variant the
//! failure of one part (a port, TLS, the store, the token issuer, the
//! limits backend, the SCRAM key file), with its cause as `source`.

use std::net::SocketAddr;

use crate::scram_key::ScramKeyError;
use crate::tls::TlsError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot listen on {address} ({name}): {source}")]
    Bind {
        name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("credential store: {0}")]
    Store(#[from] portcullis_credentials::StoreError),
    #[error(transparent)]
    OAuth(#[from] portcullis_auth::OAuthError),
    #[error("cannot listen on {address} (auth listener {name}): {source}")]
    AuthBind {
        name: String,
        address: String,
        source: std::io::Error,
    },
    #[error("listener {listener}: unknown SASL mechanism {name:?}")]
    UnknownMechanism { listener: String, name: String },
    #[error("limits backend: {0}")]
    Limits(#[from] portcullis_limits::LimitsError),
    #[error(transparent)]
    ScramKey(#[from] ScramKeyError),
    #[error("app password key file {path}: {source}")]
    AppPasswordKey {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

//! Server certificates: loaded from PEM files, or made once and kept in the
//! data directory for development. Logs the SHA-256 fingerprint either way,
//! so a user can check what a client is shown.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_config::{ClientCertificates, ClientIdentity, TlsSource};
use portcullis_sasl::ChannelBinding;
use portcullis_session::TlsInfo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::client_cert::ClientCaError;
use crate::files::private_dir;

pub use crate::client_cert::fingerprint;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid certificate or key: {0}")]
    Invalid(#[from] rustls::Error),
    #[error("invalid certificate or key: {path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error(transparent)]
    ClientCa(#[from] ClientCaError),
}

/// The rustls configuration and the certificate slot it serves from.
#[derive(Clone)]
pub struct TlsSetup {
    pub config: Arc<rustls::ServerConfig>,
    pub certificate: Arc<ServerCertificate>,
}

/// Builds the rustls server configuration from `source`; with `clients`,
/// clients may present a certificate, which must chain to that CA. The
/// certificate is served from a [`ServerCertificate`] slot, so it can be
/// replaced at run time (SIGHUP) without touching open connections.
pub fn setup(
    source: &TlsSource,
    hostname: &str,
    clients: Option<&ClientCertificates>,
) -> Result<TlsSetup, TlsError> {
    let provider = Arc::new(provider());
    let certificate = Arc::new(ServerCertificate::load(source, hostname, provider.clone())?);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match clients {
        Some(clients) => {
            builder.with_client_cert_verifier(crate::client_cert::verifier(clients, provider)?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate.clone());
    // Our suite order, not the client's: see `provider`.
    config.ignore_client_order = true;
    Ok(TlsSetup {
        config: Arc::new(config),
        certificate,
    })
}

/// ring's provider with the TLS 1.3 suites reordered by measurement, used
/// in our order rather than the client's: rustls's default order, which
/// rustls clients also send, puts AES-256-GCM-SHA384 first. Its key schedule hashes with
/// SHA-384, which has no CPU instructions on x86, while SHA-256 (of
/// AES-128-GCM-SHA256) has them; the handshake is what a short
/// submission session spends most on. Measured on 2 cores, STARTTLS plus one
/// message: SHA-384's block function was 6 % of the server's time.
/// AES-128 is a strong choice for mail submission (it is the suite TLS 1.3
/// makes mandatory); every suite stays available.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite;
    let mut provider = rustls::crypto::ring::default_provider();
    let preferred = [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    let rest: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| !preferred.iter().any(|p| p.suite() == s.suite()))
        .copied()
        .collect();
    provider.cipher_suites = preferred.into_iter().chain(rest).collect();
    provider
}

/// The certificate we present, swappable while the server runs.
pub struct ServerCertificate {
    source: TlsSource,
    hostname: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: std::sync::RwLock<Arc<Loaded>>,
}

/// One loaded certificate and its `tls-server-end-point` hash.
struct Loaded {
    key: Arc<rustls::sign::CertifiedKey>,
    end_point_hash: Vec<u8>,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("source", &self.source)
            .finish()
    }
}

impl ServerCertificate {
    fn load(
        source: &TlsSource,
        hostname: &str,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let loaded = Self::read(source, hostname, &provider)?;
        Ok(ServerCertificate {
            source: source.clone(),
            hostname: hostname.to_string(),
            provider,
            current: std::sync::RwLock::new(Arc::new(loaded)),
        })
    }

    /// Reads the certificate and key again and serves them to new
    /// handshakes; on any error the old pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = Self::read(&self.source, &self.hostname, &self.provider)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        Ok(())
    }

    /// SCRAM's `tls-server-end-point` data for the certificate served now.
    pub fn end_point_hash(&self) -> Vec<u8> {
        self.loaded().end_point_hash.clone()
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn read(
        source: &TlsSource,
        hostname: &str,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Loaded, TlsError> {
        let (cert_path, key_path) = paths(source, hostname)?;
        let certs = read_chain(&cert_path)?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| read_error(&key_path, e))?;
        let signing_key = provider.key_provider.load_private_key(key)?;
        tracing::info!(
            certificate = %cert_path.display(),
            sha256 = %fingerprint(&certs[0]),
            self_signed = matches!(source, TlsSource::SelfSigned { .. }),
            "TLS certificate"
        );
        let end_point_hash = Sha256::digest(certs[0].as_ref()).to_vec();
        let key = rustls::sign::CertifiedKey::new(certs, signing_key);
        key.keys_match()?;
        Ok(Loaded {
            key: Arc::new(key),
            end_point_hash,
        })
    }
}

impl rustls::server::ResolvesServerCert for ServerCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.loaded().key.clone())
    }
}

fn paths(source: &TlsSource, hostname: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    match source {
        TlsSource::Files {
            certificate,
            private_key,
        } => Ok((certificate.clone(), private_key.clone())),
        TlsSource::SelfSigned { dir } => ensure_self_signed(dir, hostname),
    }
}

/// The certificate chain in `path`; never empty.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| read_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// What the session and spool record about a TLS connection, and what
/// SCRAM -PLUS binds to: `tls-exporter` (RFC 9266) on TLS 1.3 only (on
/// TLS 1.2 it is safe only with the extended master secret, which rustls
/// does not report), and `certificate_hash` as `tls-server-end-point`.
/// With `client_identity`, a verified client certificate is mapped to a
/// user by that field (EXTERNAL).
pub fn info(
    conn: &rustls::ServerConnection,
    certificate_hash: Option<&[u8]>,
    client_identity: Option<ClientIdentity>,
) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown")
        .to_string();
    let tls_exporter = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => conn
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
            .map(|out| out.to_vec()),
        _ => None,
    };
    TlsInfo {
        version,
        cipher,
        channel_binding: ChannelBinding {
            tls_exporter,
            tls_server_end_point: certificate_hash.map(<[u8]>::to_vec),
        },
        client_certificate: client_identity.and_then(|identity| {
            let leaf = conn.peer_certificates()?.first()?;
            crate::client_cert::facts(leaf, identity)
        }),
    }
}

/// Makes `cert.pem` and `key.pem` in `dir` unless they are there already.
fn ensure_self_signed(dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    private_dir(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)?;
    write_private(&key_path, generated.key_pair.serialize_pem().as_bytes())?;
    write_private(&cert_path, generated.cert.pem().as_bytes())?;
    tracing::warn!(
        certificate = %cert_path.display(),
        "generated a self-signed certificate; clients will not trust it (development only)"
    );
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(|source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        })
}

fn read_error(path: &Path, source: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Read {
        path: path.to_path_buf(),
        source,
    }
}

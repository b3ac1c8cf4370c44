//! One verifier that accepts any server certificate, for the few places
//! that must talk TLS to a server whose certificate cannot be verified: a
//! delivery route with `dangerous_accept_invalid_certs` (a next hop on
//! loopback with a self-signed certificate), the load generator's
//! `--insecure`, and the test harness's clients.
//!
//! A leaf crate so each of them uses the same, reviewed code (the delivery
//! crate, a tool and the tests cannot depend on one another). What it
//! still checks: that the server signed the handshake with the key of the
//! certificate it sent, with the provider's algorithms; so the TLS work on
//! both sides is what it would be with a trusted certificate, and only
//! *who* the server is goes unchecked. Never use it where that matters.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Accepts any certificate chain and name; checks handshake signatures.
#[derive(Debug)]
pub struct DangerousAcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl DangerousAcceptAnyCertificate {
    /// Signatures are checked with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(DangerousAcceptAnyCertificate { provider })
    }
}

impl ServerCertVerifier for DangerousAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

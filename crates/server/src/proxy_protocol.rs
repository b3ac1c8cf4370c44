//! The PROXY protocol on a listener behind a TCP load balancer: the header
//! is read before anything else (before TLS on an implicit-TLS listener)
//! and names the client. Only the configured load balancers may send one;
//! a connection from anywhere else, or with a bad or missing header, is
//! closed without a word, since its first bytes cannot be trusted to be
//! either a header or SMTP.
//!
//! The pure parser is [`portcullis_proto::proxy`]; this module reads exactly
//! the bytes it asks for, so nothing after the header is consumed.

use std::net::SocketAddr;

use portcullis_proto::proxy::{self, ProxyHeader, ProxyParse};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::telemetry;

/// The header a trusted load balancer sent (within `timeout`), or `None` if the connection
/// must be closed (the reason is logged).
///
/// [`ProxyHeader::Local`] names no client: it is the balancer speaking for
/// itself (HAProxy's health checks send it), and the connection keeps its
/// own addresses.
pub(crate) async fn read_header_from_balancer(
    tcp: &mut (impl AsyncRead + Unpin),
    peer: SocketAddr,
    trusted: &[portcullis_limits::IpNet],
    listener: &str,
    timeout: std::time::Duration,
) -> Option<ProxyHeader> {
    if !trusted.iter().any(|net| net.contains(peer.ip())) {
        tracing::warn!(%peer, %listener, "PROXY header expected from a trusted load balancer; closing");
        metrics::counter!(telemetry::PROXY_REFUSED, "reason" => "untrusted").increment(1);
        return None;
    }
    let read = tokio::time::timeout(timeout, read_header(tcp)).await;
    match read {
        Ok(Ok(header)) => Some(header),
        Ok(Err(error)) => {
            tracing::warn!(%peer, %error, "bad PROXY header; closing");
            metrics::counter!(telemetry::PROXY_REFUSED, "reason" => "malformed").increment(1);
            None
        }
        Err(_elapsed) => {
            tracing::debug!(%peer, "no PROXY header in time; closing");
            None
        }
    }
}

async fn read_header(tcp: &mut (impl AsyncRead + Unpin)) -> std::io::Result<ProxyHeader> {
    let mut buffer = Vec::with_capacity(108);
    loop {
        let step = proxy::parse(&buffer)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        match step {
            ProxyParse::Done { header, .. } => return Ok(header),
            ProxyParse::Incomplete { needed } => {
                let start = buffer.len();
                buffer.resize(start + needed, 0);
                tcp.read_exact(&mut buffer[start..]).await?;
            }
        }
    }
}

//! The facts of one connection, as every other module of the server reads
//! them: who the client is, where it connected, over which listener, with
//! what TLS. A leaf: it imports nothing of the server, so anything may
//! depend on it without a cycle.
//!
//! Addresses are typed from the moment they are read: the PROXY header's
//! client is a [`SocketAddr`] in [`Peer::client`], and the client a trusted
//! proxy names with XCLIENT is parsed once into [`ConnectionFacts::client`]
//! when a front end builds the facts for a request (the session keeps
//! XCLIENT's attributes as the validated text the proxy sent; the protocol
//! parser has already removed Postfix's `IPV6:` prefix). No other module
//! reads an address out of text.
//!
//! [`ConnectionFacts`] is what the auth service takes with every request;
//! it names no SMTP session, so a front end for another protocol builds it
//! from what that protocol says about the client.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;

use portcullis_session::ClientCertificate;

/// One accepted connection, after its PROXY header if any.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The client: the TCP peer, or the one a trusted load balancer named
    /// in its PROXY header.
    pub client: SocketAddr,
    /// Where the client connected (the PROXY header's destination).
    pub local: Option<SocketAddr>,
    /// The listener's name from the config.
    pub listener: String,
    /// What policy hooks of this connection share (`conn_meta`, user data).
    pub meta: portcullis_lua::ConnMeta,
    /// The limiter's ban generation when this connection's address was
    /// last checked (see `Defence::banned_since`).
    pub bans_seen: AtomicU64,
    /// The addresses as text, made at the first message and kept for the
    /// connection's others (formatting an address costs more than a copy).
    pub texts: std::sync::OnceLock<PeerTexts>,
}

/// A connection's addresses as every message's metadata writes them.
#[derive(Debug)]
pub(crate) struct PeerTexts {
    /// The client's IP.
    pub ip: String,
    /// `ip:port`, `[ip]:port` for IPv6.
    pub addr: String,
    /// Where it connected, `ip:port` (empty when unknown).
    pub local: String,
}

impl Peer {
    /// [`PeerTexts`] of this connection.
    pub(crate) fn texts(&self) -> &PeerTexts {
        self.texts.get_or_init(|| PeerTexts {
            ip: portcullis_limits::ip_text(self.client.ip()),
            // Without an IPv6 scope id, as the XCLIENT form below has none.
            addr: match self.client {
                SocketAddr::V4(a) => v4_text(a),
                SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            },
            local: match self.local {
                Some(SocketAddr::V4(a)) => v4_text(a),
                Some(a) => a.to_string(),
                None => String::new(),
            },
        })
    }
}

/// `a.b.c.d:port`, as `Display` writes it, without the formatting
/// machinery (about 1.3k instructions an address, twice a connection).
fn v4_text(addr: std::net::SocketAddrV4) -> String {
    let mut text = String::with_capacity(21);
    portcullis_limits::push_ip(&mut text, std::net::IpAddr::V4(*addr.ip()));
    text.push(':');
    text.push_str(itoa::Buffer::new().format(addr.port()));
    text
}

/// What a front end knows about the client of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// The client as counted and shown to policy: the address a trusted
    /// proxy named (XCLIENT), else [`Peer::client`].
    pub client: SocketAddr,
    /// The proxy that named `client`, when it named another address.
    pub proxy: Option<SocketAddr>,
    /// Where the client connected.
    pub local: Option<SocketAddr>,
    /// The listener's name.
    pub listener: String,
    /// The name the client greeted with, if the protocol has one.
    pub helo: Option<String>,
    /// How the client speaks, for policy (`ESMTPSA`, ...; RFC 3848).
    pub protocol: &'static str,
    /// The TLS session, when there is one.
    pub tls: Option<TlsFacts>,
}

impl ConnectionFacts {
    /// The address the defence counts.
    pub fn client_ip(&self) -> IpAddr {
        self.client.ip()
    }

    /// The address of the host that talks to us: the proxy, else the
    /// client itself.
    pub fn nearest_ip(&self) -> IpAddr {
        self.proxy.unwrap_or(self.client).ip()
    }
}

/// A negotiated TLS session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    pub version: String,
    pub cipher: String,
    /// A client certificate our CA verified.
    pub client_certificate: Option<ClientCertificate>,
}

/// The client a trusted proxy named: its `ADDR` (already validated and
/// without `IPV6:`) and `PORT`, over `connected` (the TCP or PROXY client).
/// The port is the proxy's only when it also gave an address other than
/// its own; an unparsable value (the session lets none through) leaves
/// the connection's client.
pub(crate) fn named_client(
    connected: SocketAddr,
    addr: Option<&str>,
    port: Option<&str>,
) -> (SocketAddr, Option<SocketAddr>) {
    let Some(ip) = addr.and_then(|a| a.parse::<IpAddr>().ok()) else {
        return (connected, None);
    };
    if ip == connected.ip() {
        return (connected, None);
    }
    let port = port.and_then(|p| p.parse().ok()).unwrap_or(0);
    (SocketAddr::new(ip, port), Some(connected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0:0",
            "127.0.0.1:25",
            "192.0.2.1:40000",
            "255.255.255.255:65535",
            "10.9.100.7:587",
        ] {
            let addr: std::net::SocketAddrV4 = text.parse().unwrap();
            assert_eq!(v4_text(addr), addr.to_string());
        }
        for _ in 0..1000 {
            let addr = std::net::SocketAddrV4::new(rand::random::<u32>().into(), rand::random());
            assert_eq!(v4_text(addr), addr.to_string());
        }
    }

    #[test]
    fn a_proxy_names_the_client_once_typed() {
        let proxy: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        assert_eq!(named_client(proxy, None, Some("25")), (proxy, None));
        assert_eq!(
            named_client(proxy, Some("2001:db8::7"), Some("4242")),
            ("[2001:db8::7]:4242".parse().unwrap(), Some(proxy))
        );
        assert_eq!(
            named_client(proxy, Some("198.51.100.9"), None),
            ("198.51.100.9:0".parse().unwrap(), Some(proxy))
        );
        // The proxy naming itself is no proxy.
        assert_eq!(
            named_client(proxy, Some("192.0.2.1"), Some("9")),
            (proxy, None)
        );
    }
}

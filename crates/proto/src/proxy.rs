//! The HAProxy PROXY protocol, versions 1 (text) and 2 (binary): the header
//! a TCP load balancer sends before the client's first byte, naming the
//! client it accepted the connection from.
//!
//! The parser is incremental and never over-reads: [`parse`] answers
//! [`ProxyParse::Incomplete`] with the number of bytes it needs at least, so
//! the driver can read exactly that many and leave whatever follows (an
//! implicit-TLS ClientHello, say) unread on the socket. Whether the sender
//! may send a header at all (trusted networks) is the driver's check.
//!
//! Address types come from `core::net`: plain data, no sockets.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest v1 line, CRLF included (the specification's bound).
const V1_MAX_LEN: usize = 107;
/// Longest v2 address block (addresses and TLVs) we take. The protocol
/// allows 65 535; load balancers send far less, and a bound keeps a
/// trusted but broken peer from making us buffer much.
const V2_MAX_BODY: usize = 4096;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The connection was proxied for this client, to this address.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v2 `LOCAL`: the balancer's own connection (a health check); keep
    /// the connection's own addresses.
    Local,
    /// v1 `UNKNOWN`, or v2 `PROXY` with a family other than TCP over IP
    /// (UNSPEC, UDP, a UNIX socket): a client the balancer cannot name.
    /// Keep the connection's own addresses, but it is a client.
    Unknown,
}

/// How far [`parse`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyParse {
    /// Read at least `needed` more bytes, then call again with all of them.
    Incomplete { needed: usize },
    /// The header, and how many input bytes it took.
    Done {
        header: ProxyHeader,
        consumed: usize,
    },
}

/// Why the input is not a PROXY header we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    #[error("no PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY v1 header: {0}")]
    V1(&'static str),
    #[error("malformed PROXY v2 header: {0}")]
    V2(&'static str),
}

/// Parses a PROXY header at the start of `input`.
pub fn parse(input: &[u8]) -> Result<ProxyParse, ProxyError> {
    let v1_prefix = common_prefix(input, V1_PREFIX);
    let v2_prefix = common_prefix(input, V2_SIGNATURE);
    if input.len() >= V1_PREFIX.len() && v1_prefix == V1_PREFIX.len() {
        return parse_v1(input);
    }
    if input.len() >= V2_SIGNATURE.len() && v2_prefix == V2_SIGNATURE.len() {
        return parse_v2(input);
    }
    if v1_prefix == input.len() && input.len() < V1_PREFIX.len() {
        return Ok(ProxyParse::Incomplete {
            needed: V1_PREFIX.len() - input.len(),
        });
    }
    if v2_prefix == input.len() {
        return Ok(ProxyParse::Incomplete {
            needed: V2_SIGNATURE.len() - input.len(),
        });
    }
    Err(ProxyError::NotProxy)
}

fn common_prefix(input: &[u8], expected: &[u8]) -> usize {
    input
        .iter()
        .zip(expected)
        .take_while(|(a, b)| a == b)
        .count()
}

/// `PROXY TCP4|TCP6 src dst sport dport\r\n` or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(input: &[u8]) -> Result<ProxyParse, ProxyError> {
    let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
        if input.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1("no CRLF within 107 bytes"));
        }
        return Ok(ProxyParse::Incomplete { needed: 1 });
    };
    if end + 2 > V1_MAX_LEN {
        return Err(ProxyError::V1("longer than 107 bytes"));
    }
    let line = core::str::from_utf8(&input[V1_PREFIX.len()..end])
        .map_err(|_| ProxyError::V1("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["UNKNOWN", ..] => ProxyHeader::Unknown,
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v6 = *family == "TCP6";
            ProxyHeader::Proxied {
                source: SocketAddr::new(v1_ip(src, v6)?, v1_port(sport)?),
                destination: SocketAddr::new(v1_ip(dst, v6)?, v1_port(dport)?),
            }
        }
        _ => return Err(ProxyError::V1("expected TCP4|TCP6 src dst sport dport")),
    };
    Ok(ProxyParse::Done {
        header,
        consumed: end + 2,
    })
}

fn v1_ip(text: &str, v6: bool) -> Result<IpAddr, ProxyError> {
    let ip: IpAddr = text.parse().map_err(|_| ProxyError::V1("bad address"))?;
    if ip.is_ipv6() != v6 {
        return Err(ProxyError::V1("address does not match the family"));
    }
    Ok(ip)
}

fn v1_port(text: &str) -> Result<u16, ProxyError> {
    // Decimal without sign or leading zeros, as the specification says.
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyError::V1("bad port"));
    }
    text.parse().map_err(|_| ProxyError::V1("bad port"))
}

/// Signature, version/command, family/transport, length, addresses, TLVs.
fn parse_v2(input: &[u8]) -> Result<ProxyParse, ProxyError> {
    const FIXED: usize = 16;
    if input.len() < FIXED {
        return Ok(ProxyParse::Incomplete {
            needed: FIXED - input.len(),
        });
    }
    let (version, command) = (input[12] >> 4, input[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::V2("version is not 2"));
    }
    let length = usize::from(u16::from_be_bytes([input[14], input[15]]));
    if length > V2_MAX_BODY {
        return Err(ProxyError::V2("address block too long"));
    }
    if input.len() < FIXED + length {
        return Ok(ProxyParse::Incomplete {
            needed: FIXED + length - input.len(),
        });
    }
    let body = &input[FIXED..FIXED + length];
    let header = match command {
        0x0 => ProxyHeader::Local,
        0x1 => v2_addresses(input[13], body)?,
        _ => return Err(ProxyError::V2("unknown command")),
    };
    Ok(ProxyParse::Done {
        header,
        consumed: FIXED + length,
    })
}

fn v2_addresses(family: u8, body: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match family {
        // TCP over IPv4.
        0x11 => {
            if body.len() < 12 {
                return Err(ProxyError::V2("IPv4 address block too short"));
            }
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            Ok(ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        // TCP over IPv6.
        0x21 => {
            if body.len() < 36 {
                return Err(ProxyError::V2("IPv6 address block too short"));
            }
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Ok(ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        // UNSPEC, UDP, UNIX: no client address we can use.
        _ => Ok(ProxyHeader::Unknown),
    }
}

#[cfg(test)]
mod tests;

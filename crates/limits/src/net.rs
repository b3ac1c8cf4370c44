//! Addresses and networks: the allow-list's CIDR blocks (the
//! `portcullis-cidr` leaf crate's, shared with the config), and the network a
//! client is counted in (its /24 for IPv4, its /64 for IPv6, since one
//! subscriber usually holds a whole IPv6 /64 and often several IPv4
//! neighbours).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use portcullis_cidr::{canonical, CidrError, IpNet};

/// The network `ip` is counted in: `a.b.c.0/24` or its `/64`.
pub fn network_of(ip: IpAddr) -> String {
    let (network, prefix) = match canonical(ip) {
        IpAddr::V4(v4) => (IpAddr::V4(mask_v4(v4, 24)), "/24"),
        IpAddr::V6(v6) => (IpAddr::V6(mask_v6(v6, 64)), "/64"),
    };
    let mut text = ip_text(network);
    text.push_str(prefix);
    text
}

/// `ip` as its `Display` writes it. An IPv4 address is written by hand:
/// through the formatting machinery it cost about a thousand instructions,
/// and a session writes its client's address several times (log fields,
/// the login history, the networks it is counted in).
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, &octet) in v4.octets().iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(ip);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let bits = u128::from(ip);
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    Ipv6Addr::from(bits & mask)
}

//! Addresses and networks: the allow-list's CIDR blocks (the
//! `portcullis-cidr` leaf crate's, shared with the config), and the network a
//! client is counted in (its /24 for IPv4, its /64 for IPv6, since one
//! subscriber usually holds a whole IPv6 /64 and often several IPv4
//! neighbours).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use portcullis_cidr::{canonical, CidrError, IpNet};

/// The network `ip` is counted in: `a.b.c.0/24` or its `/64`.
pub fn network_of(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => format!("{}/24", mask_v4(v4, 24)),
        IpAddr::V6(v6) => format!("{}/64", mask_v6(v6, 64)),
    }
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

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
    let mut text = String::with_capacity(15);
    push_ip(&mut text, ip);
    text
}

/// Appends `ip` to `text` as [`ip_text`] writes it.
pub fn push_ip(text: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        use std::fmt::Write;
        // Invariant: writing to a String cannot fail.
        let _ = write!(text, "{ip}");
        return;
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_writes_what_display_writes() {
        for octet in 0..=255u8 {
            for v4 in [
                Ipv4Addr::new(octet, 0, 0, 1),
                Ipv4Addr::new(10, octet, 99, 100),
                Ipv4Addr::new(192, 0, octet, 255),
                Ipv4Addr::new(255, 9, 10, octet),
            ] {
                assert_eq!(ip_text(IpAddr::V4(v4)), v4.to_string());
            }
        }
        for v6 in ["::1", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1:2:3:4"] {
            let ip: IpAddr = v6.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn networks_are_the_24_and_the_64() {
        assert_eq!(network_of("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(
            network_of("::ffff:192.0.2.77".parse().unwrap()),
            "192.0.2.0/24"
        );
        assert_eq!(
            network_of("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}

//! Networks as the config writes them: `10.0.0.0/8`, `2001:db8::/32`, or a
//! bare address meaning a block of one.
//!
//! A leaf crate on purpose: the config crate parses these (XCLIENT and
//! PROXY trust lists, the brute-force allow-list) and the limits crate
//! matches client addresses against them, and neither should depend on
//! the other for it. The arithmetic is the `ipnet` crate's; what this adds
//! is the reading of the config (a bare address is a /32 or /128), a typed
//! error, and one rule both sides must agree on: an IPv4-mapped IPv6
//! address (`::ffff:192.0.2.1`, what a dual-stack socket reports) is the
//! IPv4 address it carries, in a network and in a block.

use std::net::IpAddr;
use std::str::FromStr;

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is
/// a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet(ipnet::IpNet);

/// Why a text is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    #[error("{0:?} is not an address or CIDR block")]
    NotAnAddress(String),
    #[error("{0:?}: bad prefix length")]
    BadPrefix(String),
}

impl IpNet {
    /// Whether `ip` is inside the block. IPv4-mapped IPv6 addresses count
    /// as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }

    /// The block as the `ipnet` crate has it.
    pub fn as_ipnet(&self) -> ipnet::IpNet {
        self.0
    }
}

impl FromStr for IpNet {
    type Err = CidrError;
    fn from_str(text: &str) -> Result<IpNet, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| CidrError::NotAnAddress(text.to_string()))?;
        let bad_prefix = || CidrError::BadPrefix(text.to_string());
        let prefix = match prefix {
            None => None,
            Some(p) => Some(p.trim().parse::<u8>().map_err(|_| bad_prefix())?),
        };
        // A mapped address is its IPv4 address; its prefix counts the
        // IPv4 bits after the 96 of the mapping.
        let (addr, prefix) = match (addr, canonical(addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) => (
                IpAddr::V4(v4),
                match prefix {
                    None => None,
                    Some(p) => Some(p.checked_sub(96).ok_or_else(bad_prefix)?),
                },
            ),
            _ => (addr, prefix),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let net = ipnet::IpNet::new(addr, prefix.unwrap_or(max)).map_err(|_| bad_prefix())?;
        Ok(IpNet(net))
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0.addr(), self.0.prefix_len())
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_and_bare_addresses() {
        assert!(net("10.0.0.0/8").contains("10.1.2.3".parse().unwrap()));
        assert!(!net("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        let one = net("2001:db8::1");
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
        assert!(net("0.0.0.0/0").contains("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_address() {
        assert!(net("127.0.0.0/8").contains("::ffff:127.0.0.1".parse().unwrap()));
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(net("::ffff:10.0.0.1").to_string(), "10.0.0.1/32");
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<IpNet>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            "nonsense".parse::<IpNet>(),
            Err(CidrError::NotAnAddress(_))
        ));
        assert!(matches!(
            "::ffff:1.2.3.4/64".parse::<IpNet>(),
            Err(CidrError::BadPrefix(_))
        ));
    }

    #[test]
    fn deserializes_from_a_string() {
        #[derive(serde::Deserialize)]
        struct T {
            nets: Vec<IpNet>,
        }
        let t: T = toml::from_str("nets = [\"10.0.0.0/8\", \"::1\"]").unwrap();
        assert_eq!(t.nets.len(), 2);
        let err = toml::from_str::<T>("nets = [\"10.0.0.0/99\"]")
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad prefix length"), "{err}");
    }
}

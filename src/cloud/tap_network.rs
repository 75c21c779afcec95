//! The expert network path: an instance's virtio-net on a tap the user
//! names, with a fixed IPv4 address given at launch (`gureum run --tap
//! NAME --ip ADDR/PREFIX --gateway ADDR`) on the kernel command line, for
//! images that read it there (images/busybox/init). No DHCP or metadata
//! service answers on such a tap: the VPC layer's subnets do that.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_TAP_NAME: usize = 15;

/// A fixed address for the instance's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl StaticIp {
    /// The kernel command line's words that give the guest the address
    /// where no DHCP server answers (images/busybox/init reads them).
    pub fn kernel_args(&self) -> String {
        let mut args = format!(" gureum.ip={}/{}", self.address, self.prefix_len);
        if let Some(gateway) = self.gateway {
            args.push_str(&format!(" gureum.gw={gateway}"));
        }
        args
    }
}

/// What `--tap`, `--ip` and `--gateway` ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapNic {
    pub tap: String,
    pub static_ip: Option<StaticIp>,
}

/// A bad `--tap`, `--ip` or `--gateway`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "--tap '{0}' is not a usable interface name: use 1 to {MAX_TAP_NAME} letters, digits, \
         '_', '-' or '.'"
    )]
    TapName(String),
    #[error("--ip and --gateway need --tap NAME: the interface they configure")]
    NoTap,
    #[error("--gateway needs --ip ADDRESS/PREFIX")]
    GatewayWithoutIp,
    #[error("--ip '{0}' is not ADDRESS/PREFIX, e.g. 10.0.0.2/24")]
    NotCidr(String),
    #[error("--ip {0}: the prefix length must be 1 to 32")]
    Prefix(String),
    #[error("--ip {0} is its subnet's network or broadcast address; pick a host address")]
    NotHost(String),
    #[error("--gateway '{0}' is not an IPv4 address")]
    NotAddress(String),
    #[error(
        "--gateway {gateway} is not inside {cidr}; the gateway must be on the instance's subnet"
    )]
    GatewayOutside { gateway: Ipv4Addr, cidr: String },
    #[error("--gateway {0} is the instance's own address")]
    GatewayIsSelf(Ipv4Addr),
}

fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl StaticIp {
    /// Parses `ADDR/PREFIX` and an optional gateway on that subnet.
    pub fn parse(cidr: &str, gateway: Option<&str>) -> Result<Self, Error> {
        let (addr, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| Error::NotCidr(cidr.into()))?;
        let address: Ipv4Addr = addr.parse().map_err(|_| Error::NotCidr(cidr.into()))?;
        let prefix_len: u8 = prefix.parse().map_err(|_| Error::NotCidr(cidr.into()))?;
        if !(1..=32).contains(&prefix_len) {
            return Err(Error::Prefix(cidr.into()));
        }
        let m = mask(prefix_len);
        let host = u32::from(address) & !m;
        // /31 and /32 have no network or broadcast address (RFC 3021).
        if prefix_len <= 30 && (host == 0 || host == !m) {
            return Err(Error::NotHost(cidr.into()));
        }
        let gateway = gateway
            .map(|g| {
                g.parse::<Ipv4Addr>()
                    .map_err(|_| Error::NotAddress(g.into()))
            })
            .transpose()?;
        if let Some(gw) = gateway {
            if gw == address {
                return Err(Error::GatewayIsSelf(gw));
            }
            if u32::from(gw) & m != u32::from(address) & m {
                return Err(Error::GatewayOutside {
                    gateway: gw,
                    cidr: cidr.into(),
                });
            }
        }
        Ok(Self {
            address,
            prefix_len,
            gateway,
        })
    }

    /// `ADDR/PREFIX`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix_len)
    }
}

impl TapNic {
    /// The interface the flags describe; None when no flag is given.
    pub fn from_flags(
        tap: Option<&str>,
        ip: Option<&str>,
        gateway: Option<&str>,
    ) -> Result<Option<Self>, Error> {
        let Some(tap) = tap else {
            return match (ip, gateway) {
                (None, None) => Ok(None),
                _ => Err(Error::NoTap),
            };
        };
        let valid = !tap.is_empty()
            && tap.len() <= MAX_TAP_NAME
            && tap
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid {
            return Err(Error::TapName(tap.into()));
        }
        let static_ip = match (ip, gateway) {
            (Some(ip), gateway) => Some(StaticIp::parse(ip, gateway)?),
            (None, Some(_)) => return Err(Error::GatewayWithoutIp),
            (None, None) => None,
        };
        Ok(Some(Self {
            tap: tap.into(),
            static_ip,
        }))
    }
}

/// The MAC of an instance's interface: locally administered unicast
/// (0x02 first), the rest from the instance ID's hex digits, so it is
/// stable across boots and differs between instances.
pub fn mac_for(instance_id: &str) -> String {
    let hex: Vec<u8> = instance_id
        .bytes()
        .skip_while(|&b| b != b'-')
        .skip(1)
        .chain(std::iter::repeat(b'0'))
        .take(10)
        .collect();
    let mut mac = String::from("02");
    for pair in hex.chunks(2) {
        mac.push(':');
        mac.push_str(&String::from_utf8_lossy(pair));
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_gateways_and_taps_parse() {
        let nic = TapNic::from_flags(Some("gtap0"), Some("10.0.0.2/24"), Some("10.0.0.1"))
            .unwrap()
            .unwrap();
        assert_eq!(nic.tap, "gtap0");
        let ip = nic.static_ip.unwrap();
        assert_eq!(ip.cidr(), "10.0.0.2/24");
        assert_eq!(ip.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(TapNic::from_flags(None, None, None), Ok(None));
        let bare = TapNic::from_flags(Some("t"), None, None).unwrap().unwrap();
        assert_eq!(bare.static_ip, None);
        assert!(StaticIp::parse("192.168.1.1/32", None).is_ok());
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        // --tap, --ip, --gateway, and what the error says.
        type Flags<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str);
        let cases: [Flags<'_>; 10] = [
            (None, Some("10.0.0.2/24"), None, "need --tap"),
            (
                Some("a-very-long-tap-name"),
                None,
                None,
                "not a usable interface name",
            ),
            (Some("tap,0"), None, None, "not a usable interface name"),
            (Some("t"), None, Some("10.0.0.1"), "needs --ip"),
            (Some("t"), Some("10.0.0.2"), None, "not ADDRESS/PREFIX"),
            (Some("t"), Some("10.0.0.2/33"), None, "prefix length"),
            (Some("t"), Some("10.0.0.0/24"), None, "network or broadcast"),
            (
                Some("t"),
                Some("10.0.0.255/24"),
                None,
                "network or broadcast",
            ),
            (
                Some("t"),
                Some("10.0.0.2/24"),
                Some("10.0.1.1"),
                "not inside",
            ),
            (
                Some("t"),
                Some("10.0.0.2/24"),
                Some("10.0.0.2"),
                "own address",
            ),
        ];
        for (tap, ip, gateway, want) in cases {
            let err = TapNic::from_flags(tap, ip, gateway)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{tap:?} {ip:?} {gateway:?}: {err}");
        }
        let err = TapNic::from_flags(Some("t"), Some("10.0.0.2/24"), Some("gw")).unwrap_err();
        assert_eq!(err, Error::NotAddress("gw".into()));
    }

    #[test]
    fn macs_are_local_unicast_and_follow_the_instance_id() {
        assert_eq!(mac_for("i-0123456789abcdef0"), "02:01:23:45:67:89");
        assert_ne!(
            mac_for("i-0123456789abcdef0"),
            mac_for("i-1123456789abcdef0")
        );
    }
}

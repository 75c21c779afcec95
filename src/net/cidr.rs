//! IPv4 CIDR blocks: parsing, containment and overlap, the VPC netmask
//! rule, and a subnet's reserved and allocatable host addresses.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Smallest VPC and subnet netmask length (the largest block).
pub const MIN_VPC_PREFIX: u8 = 16;
/// Largest VPC and subnet netmask length (the smallest block).
pub const MAX_VPC_PREFIX: u8 = 28;
/// A subnet reserves its first four addresses (network, router, two for
/// services, as AWS does) and its last one (broadcast).
const RESERVED_AT_START: u32 = 4;

/// What is wrong with a CIDR the user gave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("'{0}' is not an IPv4 CIDR: write it as ADDRESS/PREFIX, e.g. 10.0.0.0/16")]
    Syntax(String),
    #[error("'{text}' has host bits set: did you mean {canonical}?")]
    HostBits { text: String, canonical: Ipv4Cidr },
    #[error("{cidr}: a {what} netmask must be /{MIN_VPC_PREFIX} to /{MAX_VPC_PREFIX}")]
    PrefixOutOfRange { cidr: Ipv4Cidr, what: &'static str },
    #[error("subnet {subnet} is not inside its VPC's block {vpc}")]
    NotInside { subnet: Ipv4Cidr, vpc: Ipv4Cidr },
    #[error("subnet {subnet} overlaps subnet {other} of the same VPC: pick a block that does not")]
    Overlap { subnet: Ipv4Cidr, other: Ipv4Cidr },
    #[error(
        "{address} is not a usable host address of subnet {subnet} (its first four and last are reserved)"
    )]
    NotAssignable { address: Ipv4Addr, subnet: Ipv4Cidr },
    #[error("{address} is already in use in subnet {subnet}")]
    InUse { address: Ipv4Addr, subnet: Ipv4Cidr },
    #[error(
        "subnet {subnet} is full: all {capacity} usable addresses are in use; use another subnet"
    )]
    Full { subnet: Ipv4Cidr, capacity: u32 },
}

/// An IPv4 block: a network address with no host bits set, and a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Every address: the destination of a default route.
pub const ANY: Ipv4Cidr = Ipv4Cidr {
    network: Ipv4Addr::UNSPECIFIED,
    prefix: 0,
};

/// The block of every default VPC, as AWS's.
pub const DEFAULT_VPC: Ipv4Cidr = Ipv4Cidr {
    network: Ipv4Addr::new(172, 31, 0, 0),
    prefix: 16,
};

/// The first /20 of [`DEFAULT_VPC`]: its default subnet, as AWS's in its
/// first zone.
pub const DEFAULT_SUBNET: Ipv4Cidr = Ipv4Cidr {
    network: Ipv4Addr::new(172, 31, 0, 0),
    prefix: 20,
};

impl Ipv4Cidr {
    /// The block holding just `address`.
    pub fn host(address: Ipv4Addr) -> Self {
        Self {
            network: address,
            prefix: 32,
        }
    }

    /// The block of `address/prefix`, or `None` when the prefix is over 32
    /// or `address` has host bits set.
    pub fn new(address: Ipv4Addr, prefix: u8) -> Option<Self> {
        let cidr = Self::containing(address, prefix)?;
        (cidr.network == address).then_some(cidr)
    }

    /// The block of `prefix` bits that contains `address`.
    pub fn containing(address: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix)),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The block's netmask, as DHCP's option 1 writes it.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// The last address of the block (its broadcast address).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// How many addresses the block spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether `other` lies wholly inside this block.
    pub fn contains_cidr(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network)
    }

    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }

    /// Whether the block lies inside an RFC 1918 private range, as VPC
    /// blocks are recommended to.
    pub fn is_private(&self) -> bool {
        PRIVATE_RANGES.iter().any(|(network, prefix)| {
            Self::containing(*network, *prefix).is_some_and(|range| range.contains_cidr(self))
        })
    }

    /// The address at `offset` from the network address, if inside.
    pub fn nth(&self, offset: u32) -> Option<Ipv4Addr> {
        (u64::from(offset) < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + offset))
    }
}

const PRIVATE_RANGES: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
];

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let syntax = || Error::Syntax(text.to_owned());
        let (address, prefix) = text.trim().split_once('/').ok_or_else(syntax)?;
        let address: Ipv4Addr = address.parse().map_err(|_| syntax())?;
        // u8::from_str accepts "+8"; a CIDR never has a sign.
        if !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        let canonical = Self::containing(address, prefix).ok_or_else(syntax)?;
        if canonical.network != address {
            return Err(Error::HostBits {
                text: text.to_owned(),
                canonical,
            });
        }
        Ok(canonical)
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A VPC block that passed the netmask rule, with the warning to show when
/// it is not a private range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedVpcCidr {
    pub cidr: Ipv4Cidr,
    pub public_range_warning: bool,
}

/// Checks a VPC block: /16 to /28; outside RFC 1918 is allowed but warned.
pub fn check_vpc(cidr: Ipv4Cidr) -> Result<CheckedVpcCidr, Error> {
    check_prefix(cidr, "VPC")?;
    Ok(CheckedVpcCidr {
        cidr,
        public_range_warning: !cidr.is_private(),
    })
}

/// Checks a subnet block against its VPC's block and its siblings.
pub fn check_subnet<'a>(
    subnet: Ipv4Cidr,
    vpc: Ipv4Cidr,
    siblings: impl IntoIterator<Item = &'a Ipv4Cidr>,
) -> Result<(), Error> {
    check_prefix(subnet, "subnet")?;
    if !vpc.contains_cidr(&subnet) {
        return Err(Error::NotInside { subnet, vpc });
    }
    match siblings.into_iter().find(|other| other.overlaps(&subnet)) {
        Some(other) => Err(Error::Overlap {
            subnet,
            other: *other,
        }),
        None => Ok(()),
    }
}

fn check_prefix(cidr: Ipv4Cidr, what: &'static str) -> Result<(), Error> {
    if (MIN_VPC_PREFIX..=MAX_VPC_PREFIX).contains(&cidr.prefix) {
        Ok(())
    } else {
        Err(Error::PrefixOutOfRange { cidr, what })
    }
}

/// The subnet's router address: the network address plus one.
pub fn router(subnet: Ipv4Cidr) -> Option<Ipv4Addr> {
    subnet.nth(1)
}

/// The VPC's DNS resolver (EC2's "AmazonProvidedDNS"): the VPC block's
/// network address plus two.
pub fn resolver(vpc: Ipv4Cidr) -> Option<Ipv4Addr> {
    vpc.nth(2)
}

/// Whether `address` is one an instance may hold in `subnet`.
pub fn is_assignable(subnet: Ipv4Cidr, address: Ipv4Addr) -> bool {
    let offset = u32::from(address).wrapping_sub(u32::from(subnet.network));
    subnet.contains(address) && offset >= RESERVED_AT_START && address != subnet.last()
}

/// How many addresses instances can hold in `subnet`.
pub fn capacity(subnet: Ipv4Cidr) -> u32 {
    let usable = subnet
        .size()
        .saturating_sub(u64::from(RESERVED_AT_START) + 1);
    u32::try_from(usable).unwrap_or(u32::MAX)
}

/// Picks an instance address in `subnet`: `wanted` when given (it must be
/// assignable and free), else the lowest free assignable address.
pub fn allocate(
    subnet: Ipv4Cidr,
    in_use: &BTreeSet<Ipv4Addr>,
    wanted: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, Error> {
    if let Some(address) = wanted {
        if !is_assignable(subnet, address) {
            return Err(Error::NotAssignable { address, subnet });
        }
        if in_use.contains(&address) {
            return Err(Error::InUse { address, subnet });
        }
        return Ok(address);
    }
    let first = u32::from(subnet.network) + RESERVED_AT_START;
    let last = u32::from(subnet.last());
    (first..last)
        .map(Ipv4Addr::from)
        .find(|address| !in_use.contains(address))
        .ok_or(Error::Full {
            subnet,
            capacity: capacity(subnet),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(cidr("10.0.0.0/16").to_string(), "10.0.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(cidr("10.1.2.3/32").last(), Ipv4Addr::new(10, 1, 2, 3));
        for bad in [
            "10.0.0.0",
            "10.0.0/16",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "x/8",
        ] {
            assert_eq!(
                bad.parse::<Ipv4Cidr>(),
                Err(Error::Syntax(bad.to_owned())),
                "{bad}"
            );
        }
        let err = "10.0.0.1/16".parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "'10.0.0.1/16' has host bits set: did you mean 10.0.0.0/16?"
        );
    }

    #[test]
    fn containment_and_overlap() {
        let vpc = cidr("10.0.0.0/16");
        assert!(vpc.contains(Ipv4Addr::new(10, 0, 255, 255)));
        assert!(!vpc.contains(Ipv4Addr::new(10, 1, 0, 0)));
        assert!(vpc.contains_cidr(&cidr("10.0.4.0/24")));
        assert!(!cidr("10.0.4.0/24").contains_cidr(&vpc));
        assert!(vpc.overlaps(&cidr("10.0.4.0/24")) && cidr("10.0.4.0/24").overlaps(&vpc));
        assert!(!cidr("10.0.4.0/24").overlaps(&cidr("10.0.5.0/24")));
        assert!(cidr("0.0.0.0/0").contains_cidr(&vpc));
    }

    #[test]
    fn vpc_netmask_rule_and_private_warning() {
        assert!(!check_vpc(cidr("10.0.0.0/16")).unwrap().public_range_warning);
        assert!(
            !check_vpc(cidr("172.31.0.0/16"))
                .unwrap()
                .public_range_warning
        );
        assert!(
            !check_vpc(cidr("192.168.10.0/28"))
                .unwrap()
                .public_range_warning
        );
        assert!(
            check_vpc(cidr("100.64.0.0/16"))
                .unwrap()
                .public_range_warning
        );
        assert!(
            check_vpc(cidr("172.32.0.0/16"))
                .unwrap()
                .public_range_warning
        );
        let err = check_vpc(cidr("10.0.0.0/8")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.0.0.0/8: a VPC netmask must be /16 to /28"
        );
        assert!(check_vpc(cidr("10.0.0.0/29")).is_err());
    }

    #[test]
    fn subnet_inside_vpc_without_overlap() {
        let vpc = cidr("10.0.0.0/16");
        let siblings = [cidr("10.0.1.0/24")];
        check_subnet(cidr("10.0.2.0/24"), vpc, &siblings).unwrap();
        assert_eq!(
            check_subnet(cidr("10.0.1.128/25"), vpc, &siblings),
            Err(Error::Overlap {
                subnet: cidr("10.0.1.128/25"),
                other: siblings[0]
            })
        );
        assert!(matches!(
            check_subnet(cidr("10.1.0.0/24"), vpc, &siblings),
            Err(Error::NotInside { .. })
        ));
        assert!(matches!(
            check_subnet(cidr("10.0.0.0/29"), vpc, &siblings),
            Err(Error::PrefixOutOfRange { .. })
        ));
    }

    #[test]
    fn reserved_addresses() {
        let subnet = cidr("10.0.1.0/24");
        assert_eq!(router(subnet), Some(Ipv4Addr::new(10, 0, 1, 1)));
        for last_octet in [0, 1, 2, 3, 255] {
            assert!(!is_assignable(subnet, Ipv4Addr::new(10, 0, 1, last_octet)));
        }
        assert!(is_assignable(subnet, Ipv4Addr::new(10, 0, 1, 4)));
        assert!(is_assignable(subnet, Ipv4Addr::new(10, 0, 1, 254)));
        assert!(!is_assignable(subnet, Ipv4Addr::new(10, 0, 2, 4)));
        assert_eq!(capacity(subnet), 251);
        assert_eq!(capacity(cidr("10.0.0.0/28")), 11);
    }

    #[test]
    fn allocation_takes_lowest_free_and_reports_full() {
        let subnet = cidr("10.0.0.16/28");
        let mut used = BTreeSet::new();
        for expected in 20..=30 {
            let address = allocate(subnet, &used, None).unwrap();
            assert_eq!(address, Ipv4Addr::new(10, 0, 0, expected));
            used.insert(address);
        }
        let err = allocate(subnet, &used, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 10.0.0.16/28 is full: all 11 usable addresses are in use; use another subnet"
        );
        used.remove(&Ipv4Addr::new(10, 0, 0, 25));
        assert_eq!(
            allocate(subnet, &used, None),
            Ok(Ipv4Addr::new(10, 0, 0, 25))
        );
    }

    #[test]
    fn allocation_of_a_chosen_address() {
        let subnet = cidr("10.0.1.0/24");
        let used = BTreeSet::from([Ipv4Addr::new(10, 0, 1, 9)]);
        assert_eq!(
            allocate(subnet, &used, Some(Ipv4Addr::new(10, 0, 1, 10))),
            Ok(Ipv4Addr::new(10, 0, 1, 10))
        );
        assert!(matches!(
            allocate(subnet, &used, Some(Ipv4Addr::new(10, 0, 1, 9))),
            Err(Error::InUse { .. })
        ));
        assert!(matches!(
            allocate(subnet, &used, Some(Ipv4Addr::new(10, 0, 1, 1))),
            Err(Error::NotAssignable { .. })
        ));
    }
}

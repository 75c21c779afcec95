//! Instance types: EC2's names (`t2.micro`, `c7i.xlarge`) mapped to vCPUs
//! and memory, with AWS's numbers.
//!
//! A name is a family (letters: `t` burstable, `m` general purpose, `c`
//! compute, `r` memory optimised), a generation digit, optional capability
//! letters (`i` Intel, `g` Graviton/arm64, `n` network ...), a dot and a
//! size.

use serde::{Deserialize, Serialize};

use crate::vmm::devices::virtio::net::NetLimits;
use crate::vmm::devices::virtio::rate_limit::RateLimit;

/// One instance type of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceType {
    pub name: String,
    pub vcpus: u16,
    pub memory_mib: u64,
}

/// A family's sizes: (size, vCPUs, memory in MiB).
type Sizes = &'static [(&'static str, u16, u64)];

const GIB: u64 = 1024;

/// T2's and T3's sizes differ only in vCPUs of the small ones.
const T2_SIZES: Sizes = &[
    ("nano", 1, GIB / 2),
    ("micro", 1, GIB),
    ("small", 1, 2 * GIB),
    ("medium", 2, 4 * GIB),
    ("large", 2, 8 * GIB),
    ("xlarge", 4, 16 * GIB),
    ("2xlarge", 8, 32 * GIB),
];
const T3_SIZES: Sizes = &[
    ("nano", 2, GIB / 2),
    ("micro", 2, GIB),
    ("small", 2, 2 * GIB),
    ("medium", 2, 4 * GIB),
    ("large", 2, 8 * GIB),
    ("xlarge", 4, 16 * GIB),
    ("2xlarge", 8, 32 * GIB),
];
/// m: 4 GiB per vCPU.
const M_SIZES: Sizes = &[
    ("large", 2, 8 * GIB),
    ("xlarge", 4, 16 * GIB),
    ("2xlarge", 8, 32 * GIB),
    ("4xlarge", 16, 64 * GIB),
];
/// c: 2 GiB per vCPU.
const C_SIZES: Sizes = &[
    ("large", 2, 4 * GIB),
    ("xlarge", 4, 8 * GIB),
    ("2xlarge", 8, 16 * GIB),
    ("4xlarge", 16, 32 * GIB),
];
/// r: 8 GiB per vCPU.
const R_SIZES: Sizes = &[
    ("large", 2, 16 * GIB),
    ("xlarge", 4, 32 * GIB),
    ("2xlarge", 8, 64 * GIB),
    ("4xlarge", 16, 128 * GIB),
];

/// The x86_64 families this host can run, in the order they are listed.
const FAMILIES: &[(&str, Sizes)] = &[
    ("t2", T2_SIZES),
    ("t3", T3_SIZES),
    ("m5", M_SIZES),
    ("m6i", M_SIZES),
    ("m7i", M_SIZES),
    ("c5", C_SIZES),
    ("c6i", C_SIZES),
    ("c7i", C_SIZES),
    ("r5", R_SIZES),
    ("r6i", R_SIZES),
    ("r7i", R_SIZES),
    // The 8th-generation Intel types: those that offer nested
    // virtualization (cloud::cpu_options).
    ("m8i", M_SIZES),
    ("c8i", C_SIZES),
    ("r8i", R_SIZES),
];

/// The type `gureum run` uses when none is given.
pub const DEFAULT: &str = "t2.micro";

/// Why an instance type name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "'{name}' is not an instance type name: expected FAMILY GENERATION [CAPABILITIES] '.' SIZE, \
         like t2.micro or c7i.xlarge; `gureum types` lists them"
    )]
    Malformed { name: String },
    #[error(
        "instance type '{name}' is an arm64 (Graviton) type; this host runs x86_64 guests only. \
         Pick an x86_64 type instead, e.g. {x86_twin}; `gureum types` lists them"
    )]
    Arm { name: String, x86_twin: String },
    #[error("unknown instance type '{name}'; valid types: {valid}")]
    Unknown { name: String, valid: String },
}

/// The parts of an instance type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name<'a> {
    pub family: &'a str,
    pub generation: u8,
    pub capabilities: &'a str,
    pub size: &'a str,
}

impl<'a> Name<'a> {
    /// Splits `name` into its parts, checking only its shape.
    pub fn parse(name: &'a str) -> Result<Self, Error> {
        let malformed = || Error::Malformed { name: name.into() };
        let (class, size) = name.split_once('.').ok_or_else(malformed)?;
        let digit_at = class
            .find(|c: char| c.is_ascii_digit())
            .ok_or_else(malformed)?;
        let (family, rest) = class.split_at(digit_at);
        let (generation, capabilities) = rest.split_at(1);
        let lower = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase());
        let size_ok = !size.is_empty() && size.bytes().all(|b| b.is_ascii_alphanumeric());
        if family.is_empty() || !lower(family) || !lower(capabilities) || !size_ok {
            return Err(malformed());
        }
        let generation = generation.parse().map_err(|_| malformed())?;
        Ok(Self {
            family,
            generation,
            capabilities,
            size,
        })
    }

    /// Graviton types carry a `g` among their capability letters.
    fn is_arm(&self) -> bool {
        self.capabilities.contains('g')
    }
}

/// Every type this host runs, in table order.
pub fn all() -> Vec<InstanceType> {
    FAMILIES
        .iter()
        .flat_map(|(family, sizes)| {
            sizes
                .iter()
                .map(move |(size, vcpus, memory_mib)| InstanceType {
                    name: format!("{family}.{size}"),
                    vcpus: *vcpus,
                    memory_mib: *memory_mib,
                })
        })
        .collect()
}

/// The x86_64 type closest to an arm64 one: same family letters and
/// size, Intel generation first.
fn x86_twin(arm: &Name<'_>, types: &[InstanceType]) -> String {
    let same_size = |family: &str| {
        types.iter().find(|t| {
            t.name
                .split_once('.')
                .is_some_and(|(f, s)| s == arm.size && f.starts_with(family))
        })
    };
    let intel = format!("{}{}i", arm.family, arm.generation);
    same_size(&intel)
        .or_else(|| same_size(arm.family))
        .map_or_else(|| DEFAULT.to_string(), |t| t.name.clone())
}

/// The device rate limits of an instance type: EBS-like disk bandwidth
/// and IOPS, and network bandwidth each way, from AWS's "up to" figures
/// for the size (nano to small: 2,085 Mbit/s and 11,800 IOPS of EBS, 5
/// Gbit/s of network; larger: 4,750 Mbit/s and 18,750 IOPS, 10 Gbit/s).
/// A type not in the table gets no limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoLimits {
    pub disk: RateLimit,
    pub net: NetLimits,
}

/// Bytes per second of `mbit` megabits per second.
const fn mbit(mbit: u64) -> u64 {
    mbit * 1_000_000 / 8
}

/// An instance's own rate limits (`run --limits`), each replacing its
/// type's (0 lifts that limit); what is not given stays the type's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bw: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bw: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_pps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bw: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_pps: Option<u64>,
}

impl LimitOverrides {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl IoLimits {
    /// These limits with `o`'s figures in place of theirs.
    pub fn with(mut self, o: &LimitOverrides) -> Self {
        for (figure, over) in [
            (&mut self.disk.bytes_per_sec, o.disk_bw),
            (&mut self.disk.ops_per_sec, o.disk_iops),
            (&mut self.net.rx.bytes_per_sec, o.rx_bw),
            (&mut self.net.rx.ops_per_sec, o.rx_pps),
            (&mut self.net.tx.bytes_per_sec, o.tx_bw),
            (&mut self.net.tx.ops_per_sec, o.tx_pps),
        ] {
            if let Some(v) = over {
                *figure = v;
            }
        }
        self
    }
}

pub fn io_limits(name: &str) -> IoLimits {
    let Ok(parsed) = Name::parse(name) else {
        return IoLimits::default();
    };
    if lookup(name).is_err() {
        return IoLimits::default();
    }
    let small = matches!(parsed.size, "nano" | "micro" | "small");
    let (disk_mbit, iops, net_mbit) = if small {
        (2_085, 11_800, 5_000)
    } else {
        (4_750, 18_750, 10_000)
    };
    let net = RateLimit {
        bytes_per_sec: mbit(net_mbit),
        ops_per_sec: 0,
    };
    IoLimits {
        disk: RateLimit {
            bytes_per_sec: mbit(disk_mbit),
            ops_per_sec: iops,
        },
        net: NetLimits { rx: net, tx: net },
    }
}

/// Looks `name` up, with an error that says what to use instead.
pub fn lookup(name: &str) -> Result<InstanceType, Error> {
    let parsed = Name::parse(name)?;
    let types = all();
    if parsed.is_arm() {
        return Err(Error::Arm {
            name: name.into(),
            x86_twin: x86_twin(&parsed, &types),
        });
    }
    types
        .iter()
        .find(|t| t.name == name)
        .cloned()
        .ok_or_else(|| Error::Unknown {
            name: name.into(),
            valid: types
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_limits_grow_with_the_size_and_unknown_types_have_none() {
        let micro = io_limits("t2.micro");
        assert_eq!(micro.disk.bytes_per_sec, 260_625_000);
        assert_eq!(micro.disk.ops_per_sec, 11_800);
        assert_eq!(micro.net.rx.bytes_per_sec, 625_000_000);
        assert_eq!(micro.net.rx, micro.net.tx);
        let large = io_limits("m5.large");
        assert!(large.disk.bytes_per_sec > micro.disk.bytes_per_sec);
        assert!(large.net.tx.bytes_per_sec > micro.net.tx.bytes_per_sec);
        assert_eq!(io_limits("x9.huge"), IoLimits::default());
    }

    #[test]
    fn names_split_into_family_generation_capabilities_size() {
        assert_eq!(
            Name::parse("c7gn.xlarge").unwrap(),
            Name {
                family: "c",
                generation: 7,
                capabilities: "gn",
                size: "xlarge"
            }
        );
        assert_eq!(Name::parse("t2.micro").unwrap().capabilities, "");
        assert_eq!(Name::parse("m6i.2xlarge").unwrap().size, "2xlarge");
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "t2",
            "t2.",
            ".micro",
            "2.micro",
            "t.micro",
            "T2.micro",
            "t2.mi-cro",
            "t2x.micro.",
            "t2 .micro",
        ] {
            assert!(
                matches!(lookup(bad), Err(Error::Malformed { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn aws_numbers() {
        let t = |n| lookup(n).unwrap();
        assert_eq!((t("t2.nano").vcpus, t("t2.nano").memory_mib), (1, 512));
        assert_eq!((t("t2.micro").vcpus, t("t2.micro").memory_mib), (1, 1024));
        assert_eq!((t("t3.micro").vcpus, t("t3.micro").memory_mib), (2, 1024));
        assert_eq!(
            (t("t2.2xlarge").vcpus, t("t2.2xlarge").memory_mib),
            (8, 32768)
        );
        assert_eq!((t("m5.large").vcpus, t("m5.large").memory_mib), (2, 8192));
        assert_eq!(
            (t("c7i.xlarge").vcpus, t("c7i.xlarge").memory_mib),
            (4, 8192)
        );
        assert_eq!(
            (t("r6i.2xlarge").vcpus, t("r6i.2xlarge").memory_mib),
            (8, 65536)
        );
    }

    #[test]
    fn table_has_every_family_from_large_to_2xlarge_once() {
        let all = all();
        for family in [
            "t2", "t3", "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "r6i", "r7i",
        ] {
            for size in ["large", "xlarge", "2xlarge"] {
                let name = format!("{family}.{size}");
                assert_eq!(all.iter().filter(|t| t.name == name).count(), 1, "{name}");
            }
        }
    }

    #[test]
    fn arm_types_parse_but_are_refused_with_an_x86_twin() {
        let err = lookup("c7gn.xlarge").unwrap_err();
        assert!(
            matches!(&err, Error::Arm { x86_twin, .. } if x86_twin == "c7i.xlarge"),
            "{err}"
        );
        assert!(err.to_string().contains("x86_64"));
        assert!(matches!(lookup("t4g.micro"), Err(Error::Arm { .. })));
    }

    #[test]
    fn unknown_types_list_the_valid_ones() {
        let err = lookup("p4d.24xlarge").unwrap_err().to_string();
        assert!(
            err.contains("unknown instance type 'p4d.24xlarge'"),
            "{err}"
        );
        assert!(
            err.contains("t2.micro") && err.contains("r7i.2xlarge"),
            "{err}"
        );
        assert!(matches!(lookup("t2.huge"), Err(Error::Unknown { .. })));
    }

    #[test]
    fn an_instances_own_limits_replace_just_those_of_its_type() {
        let of_type = io_limits("t2.micro");
        let own = of_type.with(&LimitOverrides {
            disk_iops: Some(50),
            tx_bw: Some(0),
            ..LimitOverrides::default()
        });
        assert_eq!(own.disk.ops_per_sec, 50);
        assert_eq!(own.disk.bytes_per_sec, of_type.disk.bytes_per_sec);
        assert_eq!(own.net.tx.bytes_per_sec, 0, "0 lifts the limit");
        assert_eq!(own.net.rx, of_type.net.rx);
        assert_eq!(of_type.with(&LimitOverrides::default()), of_type);
    }
}

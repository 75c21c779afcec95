//! SMBIOS tables: what the guest's "firmware" says the machine is. Linux
//! finds them by scanning 0xF0000-0xFFFFF for the `_SM3_` anchor and
//! shows them under /sys/class/dmi/id, where cloud-init's `ds-identify`
//! and systemd look for the cloud they run in. Like an EC2 instance's,
//! the vendor is "Amazon EC2", the product the instance type, the system
//! UUID begins with "ec2" and the board's asset tag is the instance ID.

use vm_memory::{Bytes, GuestAddress};

use super::super::layout::{SMBIOS_ADDR, SMBIOS_END};
use super::super::memory::GuestMemory;

/// The vendor EC2 instances report for their BIOS, system, board and
/// chassis.
pub const VENDOR: &str = "Amazon EC2";

/// Errors of writing the tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the SMBIOS tables need {needed} bytes; {available} are reserved for them")]
    TooLarge { needed: usize, available: u64 },
    #[error("cannot write the SMBIOS tables to guest memory: {0}")]
    Write(vm_memory::GuestMemoryError),
}

/// A system UUID, in the order it is written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uuid(pub [u8; 16]);

/// What `Uuid::parse` refuses.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a UUID: expected 32 hex digits as 8-4-4-4-12, e.g. ec2a0b1c-...")]
pub struct BadUuid(pub String);

impl Uuid {
    /// Reads `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn parse(text: &str) -> Result<Self, BadUuid> {
        let bad = || BadUuid(text.to_string());
        let groups: Vec<&str> = text.split('-').collect();
        if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let digits: String = groups.concat();
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(digits.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Self(bytes))
    }

    /// A random UUID whose text begins with "ec2".
    pub fn ec2_random() -> std::io::Result<Self> {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
        let mut uuid = Self::parse(text.trim()).map_err(std::io::Error::other)?;
        uuid.0[0] = 0xec;
        uuid.0[1] = 0x20 | (uuid.0[1] & 0x0f);
        Ok(uuid)
    }

    /// The bytes as SMBIOS 2.6 and later store them: the first three
    /// fields little-endian.
    fn smbios_bytes(&self) -> [u8; 16] {
        let mut b = self.0;
        b[..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The machine as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub uuid: Uuid,
    /// The system's product name: the instance type.
    pub product: String,
    /// The baseboard's asset tag: the instance ID, if any.
    pub asset_tag: Option<String>,
}

/// SMBIOS structure types written.
const BIOS_INFORMATION: u8 = 0;
const SYSTEM_INFORMATION: u8 = 1;
const BASEBOARD_INFORMATION: u8 = 2;
const CHASSIS_INFORMATION: u8 = 3;
const SYSTEM_BOOT_INFORMATION: u8 = 32;
const END_OF_TABLE: u8 = 127;

/// One structure: its formatted area and its strings, numbered from 1 in
/// the order added.
struct Structure {
    bytes: Vec<u8>,
    strings: Vec<String>,
}

impl Structure {
    fn new(kind: u8, handle: u16) -> Self {
        // The length byte is filled in by `finish`.
        let mut bytes = vec![kind, 0];
        bytes.extend_from_slice(&handle.to_le_bytes());
        Self {
            bytes,
            strings: Vec::new(),
        }
    }

    fn byte(mut self, value: u8) -> Self {
        self.bytes.push(value);
        self
    }

    fn bytes(mut self, value: &[u8]) -> Self {
        self.bytes.extend_from_slice(value);
        self
    }

    /// A string field: its number, or 0 for none. NULs cannot be stored
    /// and are dropped.
    fn string(mut self, value: Option<&str>) -> Self {
        let number = match value.filter(|v| !v.is_empty()) {
            Some(v) => {
                self.strings.push(v.replace('\0', ""));
                u8::try_from(self.strings.len()).unwrap_or(0)
            }
            None => 0,
        };
        self.byte(number)
    }

    fn finish(mut self, out: &mut Vec<u8>) {
        // Formatted areas here are a few dozen bytes.
        let formatted = u8::try_from(self.bytes.len()).unwrap_or(u8::MAX);
        if let Some(len) = self.bytes.get_mut(1) {
            *len = formatted;
        }
        out.append(&mut self.bytes);
        for s in &self.strings {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        // The string set ends with a second NUL (two when it is empty).
        if self.strings.is_empty() {
            out.push(0);
        }
        out.push(0);
    }
}

/// The structure table for `platform`.
fn structures(platform: &Platform) -> Vec<u8> {
    let mut out = Vec::new();
    let vendor = Some(VENDOR);
    Structure::new(BIOS_INFORMATION, 0)
        .string(vendor)
        .string(Some("1.0"))
        .bytes(&0xe800u16.to_le_bytes()) // starting segment
        .string(Some("10/16/2017"))
        .byte(0) // ROM size: 64 KiB
        .bytes(&0x08u64.to_le_bytes()) // characteristics not supported
        .byte(0)
        .byte(1 << 4) // extension byte 2: a virtual machine
        .bytes(&[1, 0, 0xff, 0xff]) // BIOS 1.0, no embedded controller
        .finish(&mut out);
    let uuid = platform.uuid.to_string();
    Structure::new(SYSTEM_INFORMATION, 1)
        .string(vendor)
        .string(Some(&platform.product))
        .string(None) // version
        .string(Some(&uuid)) // serial number, as EC2's
        .bytes(&platform.uuid.smbios_bytes())
        .byte(6) // woken by power switch
        .string(None) // SKU
        .string(None) // family
        .finish(&mut out);
    Structure::new(BASEBOARD_INFORMATION, 2)
        .string(vendor)
        .string(None)
        .string(None)
        .string(None)
        .string(platform.asset_tag.as_deref())
        .byte(1) // a hosting board
        .string(None) // location in chassis
        .bytes(&3u16.to_le_bytes()) // the chassis's handle
        .byte(0x0a) // motherboard
        .byte(0) // no contained objects
        .finish(&mut out);
    Structure::new(CHASSIS_INFORMATION, 3)
        .string(vendor)
        .byte(1) // other
        .string(None)
        .string(None)
        .string(vendor) // asset tag, as EC2's
        .bytes(&[3, 3, 3, 3]) // boot-up, power supply, thermal: safe; security: none
        .bytes(&[0; 4]) // OEM
        .bytes(&[0, 0, 0, 0]) // height, power cords, no contained elements
        .finish(&mut out);
    Structure::new(SYSTEM_BOOT_INFORMATION, 4)
        .bytes(&[0; 6])
        .byte(0) // no errors
        .finish(&mut out);
    Structure::new(END_OF_TABLE, 5).finish(&mut out);
    out
}

/// The checksum byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// The length of the SMBIOS 3.0 entry point.
const ENTRY_POINT_LEN: u8 = 0x18;

/// Writes the SMBIOS 3.0 entry point at `SMBIOS_ADDR` and the structure
/// table after it.
pub fn write_tables(mem: &GuestMemory, platform: &Platform) -> Result<(), Error> {
    let table = structures(platform);
    let table_addr = SMBIOS_ADDR + 0x20;
    let available = SMBIOS_END - table_addr;
    let too_large = || Error::TooLarge {
        needed: table.len(),
        available,
    };
    let table_len = u32::try_from(table.len()).map_err(|_| too_large())?;
    if u64::from(table_len) > available {
        return Err(too_large());
    }
    let mut entry = Vec::with_capacity(usize::from(ENTRY_POINT_LEN));
    entry.extend_from_slice(b"_SM3_");
    entry.push(0); // checksum, below
    entry.extend_from_slice(&[ENTRY_POINT_LEN, 3, 0, 0, 1, 0]);
    entry.extend_from_slice(&table_len.to_le_bytes());
    entry.extend_from_slice(&table_addr.to_le_bytes());
    let sum = checksum(&entry);
    if let Some(byte) = entry.get_mut(5) {
        *byte = sum;
    }
    mem.write_slice(&entry, GuestAddress(SMBIOS_ADDR))
        .map_err(Error::Write)?;
    mem.write_slice(&table, GuestAddress(table_addr))
        .map_err(Error::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::memory;

    fn platform() -> Platform {
        Platform {
            uuid: Uuid::parse("ec2a0b1c-2d3e-4f50-6172-8394a5b6c7d8").unwrap(),
            product: "t3.micro".into(),
            asset_tag: Some("i-0123456789abcdef0".into()),
        }
    }

    /// The structures of a table: (type, formatted area, strings).
    fn parse(mut table: &[u8]) -> Vec<(u8, Vec<u8>, Vec<String>)> {
        let mut found = Vec::new();
        while !table.is_empty() {
            let len = usize::from(table[1]);
            let formatted = table[..len].to_vec();
            let mut rest = &table[len..];
            let mut strings = Vec::new();
            loop {
                let end = rest.iter().position(|&b| b == 0).unwrap();
                if end == 0 {
                    rest = &rest[1..];
                    if strings.is_empty() {
                        // An empty set is two NULs.
                        rest = &rest[1..];
                    }
                    break;
                }
                strings.push(String::from_utf8(rest[..end].to_vec()).unwrap());
                rest = &rest[end + 1..];
            }
            found.push((formatted[0], formatted, strings));
            table = rest;
        }
        found
    }

    fn string(strings: &[String], number: u8) -> &str {
        &strings[usize::from(number) - 1]
    }

    #[test]
    fn a_uuid_reads_and_prints_the_same_and_bad_ones_are_refused() {
        let text = "ec2a0b1c-2d3e-4f50-6172-8394a5b6c7d8";
        assert_eq!(Uuid::parse(text).unwrap().to_string(), text);
        for bad in [
            "",
            "ec2",
            "ec2a0b1c2d3e4f5061728394a5b6c7d8",
            "ec2a0b1c-2d3e-4f50-6172-8394a5b6c7dz",
        ] {
            assert!(Uuid::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_uuids_begin_with_ec2_and_differ() {
        let (a, b) = (Uuid::ec2_random().unwrap(), Uuid::ec2_random().unwrap());
        assert!(a.to_string().starts_with("ec2"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_tables_say_ec2_with_the_instance_type_uuid_and_id() {
        let table = structures(&platform());
        let parsed = parse(&table);
        let kinds: Vec<u8> = parsed.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(kinds, [0, 1, 2, 3, 32, 127]);
        let (_, bios, strings) = &parsed[0];
        assert_eq!(bios.len(), 0x18);
        assert_eq!(string(strings, bios[4]), VENDOR);
        let (_, system, strings) = &parsed[1];
        assert_eq!(system.len(), 0x1b);
        assert_eq!(string(strings, system[4]), VENDOR);
        assert_eq!(string(strings, system[5]), "t3.micro");
        // Linux prints the first three fields little-endian.
        assert_eq!(&system[8..12], &[0x1c, 0x0b, 0x2a, 0xec]);
        assert_eq!(&system[12..14], &[0x3e, 0x2d]);
        assert_eq!(
            &system[16..24],
            &[0x61, 0x72, 0x83, 0x94, 0xa5, 0xb6, 0xc7, 0xd8]
        );
        let (_, board, strings) = &parsed[2];
        assert_eq!(board.len(), 0x0f);
        assert_eq!(string(strings, board[8]), "i-0123456789abcdef0");
        let (_, chassis, strings) = &parsed[3];
        assert_eq!(chassis.len(), 0x15);
        assert_eq!(string(strings, chassis[8]), VENDOR);
        assert_eq!(parsed[4].1.len(), 11);
        assert_eq!(parsed[5].1.len(), 4);
    }

    #[test]
    fn no_asset_tag_is_string_zero_and_nuls_in_names_are_dropped() {
        let mut p = platform();
        p.asset_tag = None;
        p.product = "t3.\0micro".into();
        let parsed = parse(&structures(&p));
        assert_eq!(parsed[2].1[8], 0);
        assert_eq!(string(&parsed[1].2, parsed[1].1[5]), "t3.micro");
    }

    #[test]
    fn the_entry_point_checks_out_and_points_at_the_table() {
        let mem = memory::create(64).unwrap();
        write_tables(&mem, &platform()).unwrap();
        let mut entry = [0u8; 24];
        mem.read_slice(&mut entry, GuestAddress(SMBIOS_ADDR))
            .unwrap();
        assert_eq!(&entry[..5], b"_SM3_");
        assert_eq!(checksum(&entry), 0);
        let len = u32::from_le_bytes(entry[12..16].try_into().unwrap());
        let addr = u64::from_le_bytes(entry[16..24].try_into().unwrap());
        let mut table = vec![0u8; len as usize];
        mem.read_slice(&mut table, GuestAddress(addr)).unwrap();
        assert_eq!(table, structures(&platform()));
    }
}

//! ACPI tables: how the guest learns its CPUs, its legacy devices, and how
//! to power off and reset.
//!
//! The platform is "hardware-reduced" ACPI (no PM timer, no SCI, no GPE
//! blocks): power-off and reset are single-byte registers in I/O space
//! that the FADT names and `devices::acpi_power` implements; the power
//! button is a control-method device (`PNP0C0C`) that a Generic Event
//! Device (`devices::acpi_ged`) notifies. ACPI rather
//! than an MP table because a stock distribution kernel also finds
//! virtio-mmio devices through the DSDT, which later devices need.

use acpi_tables::Aml;
use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress};

use crate::vmm::devices::acpi_ged::EVENT_POWER_BUTTON;
use crate::vmm::layout::{
    ACPI_GED_GSI, ACPI_GED_PORT, ACPI_RESET_PORT, ACPI_RESET_VALUE, ACPI_S5_SLEEP_TYPE,
    ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT, ACPI_TABLES_ADDR, ACPI_TABLES_END, COM1_IRQ,
    COM1_PORT, IOAPIC_ADDR, LAPIC_ADDR,
};
use crate::vmm::memory::GuestMemory;

const OEM_ID: [u8; 6] = *b"GUREUM";
const OEM_TABLE_ID: [u8; 8] = *b"GUREUMVM";
const OEM_REVISION: u32 = 1;
/// IA-PC boot architecture flags: no VGA, no MSI, no CMOS RTC.
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3) | (1 << 5);

/// Errors writing the ACPI tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ACPI tables need {needed} bytes but only {available} are reserved for them")]
    TooLarge { needed: u64, available: u64 },
    #[error("cannot write ACPI tables to guest memory: {0}")]
    Write(vm_memory::GuestMemoryError),
    #[error("{0} vCPUs cannot be described in the MADT (at most 255)")]
    TooManyVcpus(u8),
}

/// Serialises an ACPI object into bytes.
fn bytes_of(table: &dyn Aml) -> Vec<u8> {
    let mut out = Vec::new();
    table.to_aml_bytes(&mut out);
    out
}

/// A virtio-mmio device as the DSDT describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmioDevice {
    pub base: u64,
    pub size: u64,
    pub gsi: u32,
}

/// `_SB_.VRnn`: a virtio-mmio device with the ACPI ID Linux's
/// virtio_mmio driver matches (`LNRO0005`), its window and interrupt.
fn virtio_device_aml(index: usize, dev: &VirtioMmioDevice, out: &mut Vec<u8>) {
    let base = u32::try_from(dev.base).unwrap_or_default();
    let size = u32::try_from(dev.size).unwrap_or_default();
    let window = aml::Memory32Fixed::new(true, base, size);
    let irq = aml::Interrupt::new(true, true, false, false, dev.gsi);
    let hid = aml::Name::new("_HID".into(), &"LNRO0005");
    let uid_value = u32::try_from(index).unwrap_or_default();
    let uid = aml::Name::new("_UID".into(), &uid_value);
    let crs = aml::Name::new(
        "_CRS".into(),
        &aml::ResourceTemplate::new(vec![&window, &irq]),
    );
    let path = format!("_SB_.VR{:02X}", index & 0xff);
    aml::Device::new(path.as_str().into(), vec![&hid, &uid, &crs]).to_aml_bytes(out);
}

/// `_SB_.PWRB`, the power button as a control-method device (the FADT
/// says there is no fixed-feature one), and `_SB_.GED_`, the Generic
/// Event Device whose `_EVT` reads the event register and notifies the
/// button: Linux's `button` driver then reports KEY_POWER.
fn power_button_aml(out: &mut Vec<u8>) {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C0C"));
    let uid = aml::Name::new("_UID".into(), &0u8);
    aml::Device::new("_SB_.PWRB".into(), vec![&hid, &uid]).to_aml_bytes(out);

    // Linux's GED driver wants interrupts only in _CRS; the register is
    // an operation region of the device instead.
    let hid = aml::Name::new("_HID".into(), &"ACPI0013");
    let irq = aml::Interrupt::new(true, true, false, false, ACPI_GED_GSI);
    let crs = aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(vec![&irq]));
    let region = aml::OpRegion::new(
        "GDST".into(),
        aml::OpRegionSpace::SystemIO,
        &ACPI_GED_PORT,
        &1u8,
    );
    let field = aml::Field::new(
        "GDST".into(),
        aml::FieldAccessType::Byte,
        aml::FieldLockRule::NoLock,
        aml::FieldUpdateRule::WriteAsZeroes,
        vec![aml::FieldEntry::Named(*b"GDAT", 8)],
    );
    // Read once: the read clears the register.
    let events = aml::Local(0);
    let register = aml::Path::new("GDAT");
    let read = aml::Store::new(&events, &register);
    let button = aml::Path::new("\\_SB_.PWRB");
    let notify = aml::Notify::new(&button, &0x80u8);
    let pressed = aml::And::new(&aml::ZERO, &events, &EVENT_POWER_BUTTON);
    let if_pressed = aml::If::new(&pressed, vec![&notify]);
    let evt = aml::Method::new("_EVT".into(), 1, true, vec![&read, &if_pressed]);
    aml::Device::new("_SB_.GED_".into(), vec![&hid, &crs, &region, &field, &evt]).to_aml_bytes(out);
}

/// The DSDT: the `_S5_` soft-off sleep type, COM1, the power button and
/// the virtio devices.
fn dsdt(virtio: &[VirtioMmioDevice]) -> Vec<u8> {
    let s5 = aml::Name::new("_S5_".into(), &aml::Package::new(vec![&ACPI_S5_SLEEP_TYPE]));
    let com1_io = aml::IO::new(COM1_PORT, COM1_PORT, 1, 8);
    let com1_irq = aml::Interrupt::new(true, true, false, false, COM1_IRQ);
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501"));
    let uid = aml::Name::new("_UID".into(), &0u8);
    let crs = aml::Name::new(
        "_CRS".into(),
        &aml::ResourceTemplate::new(vec![&com1_io, &com1_irq]),
    );
    let com1 = aml::Device::new("_SB_.COM1".into(), vec![&hid, &uid, &crs]);
    let mut body = bytes_of(&s5);
    com1.to_aml_bytes(&mut body);
    power_button_aml(&mut body);
    for (index, dev) in virtio.iter().enumerate() {
        virtio_device_aml(index, dev, &mut body);
    }
    let mut table = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    table.append_slice(&body);
    table.as_slice().to_vec()
}

fn io_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.reset_reg = io_register(ACPI_RESET_PORT);
    fadt.reset_value = ACPI_RESET_VALUE;
    fadt.sleep_control_reg = io_register(ACPI_SLEEP_CONTROL_PORT);
    fadt.sleep_status_reg = io_register(ACPI_SLEEP_STATUS_PORT);
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"GUREUMVM").into();
    bytes_of(&fadt.finalize())
}

fn madt(vcpus: u8) -> Result<Vec<u8>, Error> {
    if vcpus == u8::MAX {
        return Err(Error::TooManyVcpus(vcpus));
    }
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    // The IOAPIC takes the first APIC ID no CPU uses.
    madt.add_structure(IoApic::new(vcpus, IOAPIC_ADDR, 0));
    Ok(bytes_of(&madt))
}

/// Writes RSDP, XSDT, FADT, MADT and DSDT into the ACPI area and returns
/// the RSDP's address.
pub fn write_tables(
    mem: &GuestMemory,
    vcpus: u8,
    virtio: &[VirtioMmioDevice],
) -> Result<u64, Error> {
    // RSDP first, at the start of the area the kernel scans.
    let rsdp_addr = ACPI_TABLES_ADDR;
    let mut next = rsdp_addr + Rsdp::len() as u64;
    let mut place = |len: usize| {
        let addr = (next + 7) & !7;
        next = addr + len as u64;
        addr
    };
    let dsdt = dsdt(virtio);
    let dsdt_addr = place(dsdt.len());
    let fadt = fadt(dsdt_addr);
    let fadt_addr = place(fadt.len());
    let madt = madt(vcpus)?;
    let madt_addr = place(madt.len());
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt = bytes_of(&xsdt);
    let xsdt_addr = place(xsdt.len());
    let end = next;
    if end > ACPI_TABLES_END {
        return Err(Error::TooLarge {
            needed: end - ACPI_TABLES_ADDR,
            available: ACPI_TABLES_END - ACPI_TABLES_ADDR,
        });
    }
    let rsdp = bytes_of(&Rsdp::new(OEM_ID, xsdt_addr));
    for (addr, bytes) in [
        (rsdp_addr, &rsdp),
        (dsdt_addr, &dsdt),
        (fadt_addr, &fadt),
        (madt_addr, &madt),
        (xsdt_addr, &xsdt),
    ] {
        mem.write_slice(bytes, GuestAddress(addr))
            .map_err(Error::Write)?;
    }
    Ok(rsdp_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(table: &[u8]) -> bool {
        table.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    fn read_table(mem: &GuestMemory, addr: u64) -> Vec<u8> {
        let mut header = [0u8; 8];
        mem.read_slice(&mut header, GuestAddress(addr)).unwrap();
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
        let mut table = vec![0u8; len];
        mem.read_slice(&mut table, GuestAddress(addr)).unwrap();
        table
    }

    #[test]
    fn tables_are_linked_and_checksummed() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let virtio = [VirtioMmioDevice {
            base: 0xd000_0000,
            size: 0x1000,
            gsi: 5,
        }];
        let rsdp_addr = write_tables(&mem, 2, &virtio).unwrap();
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(rsdp_addr)).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(&rsdp));

        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let xsdt = read_table(&mem, xsdt_addr);
        assert_eq!(&xsdt[..4], b"XSDT");
        assert!(checksum_ok(&xsdt));
        let entries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(entries.len(), 2);

        let fadt = read_table(&mem, entries[0]);
        assert_eq!(&fadt[..4], b"FACP");
        assert!(checksum_ok(&fadt));
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_ne!(flags & (1 << 20), 0, "hardware-reduced flag");
        let dsdt_addr = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        let dsdt = read_table(&mem, dsdt_addr);
        assert_eq!(&dsdt[..4], b"DSDT");
        assert!(checksum_ok(&dsdt));
        assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
        assert!(dsdt.windows(4).any(|w| w == b"COM1"));
        assert!(dsdt.windows(8).any(|w| w == b"LNRO0005"));
        assert!(dsdt.windows(4).any(|w| w == b"VR00"));

        let madt = read_table(&mem, entries[1]);
        assert_eq!(&madt[..4], b"APIC");
        assert!(checksum_ok(&madt));
        // Header (44 bytes), two local APICs (8 each), one IOAPIC (12).
        assert_eq!(madt.len(), 44 + 2 * 8 + 12);
        assert_eq!(madt[44], 0, "local APIC entry");
        assert_eq!(madt[44 + 3], 0, "APIC ID 0");
        assert_eq!(madt[52 + 3], 1, "APIC ID 1");
        assert_eq!(madt[60], 1, "IOAPIC entry");
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_dsdt_has_a_power_button_that_the_event_device_notifies() {
        let dsdt = dsdt(&[]);
        // PNP0C0C as an EISA ID (a DWord) and the GED's string ID.
        assert!(contains(&dsdt, &[0x0c, 0x41, 0xd0, 0x0c, 0x0c]), "PNP0C0C");
        assert!(contains(&dsdt, b"PWRB"));
        assert!(contains(&dsdt, b"\x0dACPI0013\0"));
        // The GED's interrupt: consumer, edge, active high, its GSI.
        let [g0, g1, g2, g3] = ACPI_GED_GSI.to_le_bytes();
        assert!(contains(&dsdt, &[0x89, 6, 0, 0x03, 1, g0, g1, g2, g3]));
        // OperationRegion (GDST, SystemIO, ACPI_GED_PORT, 1).
        let [p0, p1] = ACPI_GED_PORT.to_le_bytes();
        let mut region = vec![0x5b, 0x80];
        region.extend_from_slice(b"GDST\x01\x0b");
        region.extend_from_slice(&[p0, p1, 0x01]);
        assert!(contains(&dsdt, &region), "event register region");
        // _EVT: one argument, serialized; it tests the button's bit and
        // sends Notify (\_SB_.PWRB, 0x80).
        assert!(contains(&dsdt, b"_EVT\x09"));
        let mut and = vec![0x7b, 0x60];
        and.extend(bytes_of(&EVENT_POWER_BUTTON));
        and.push(0x00);
        assert!(contains(&dsdt, &and), "And (Local0, bit, Zero)");
        assert!(contains(&dsdt, b"\x86\\\x2e_SB_PWRB\x0a\x80"), "Notify");
    }
}

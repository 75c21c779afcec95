//! Where things live in guest physical memory and I/O space.
//!
//! The low megabyte follows the PC conventions Linux expects; everything
//! below `HIMEM_START` except the first 640 KiB is left out of the e820
//! RAM map so the kernel never hands it out.

/// GDT used for the 64-bit entry (Linux boot protocol: CS 0x10, DS 0x18).
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT; the kernel installs its own before enabling interrupts.
pub const IDT_ADDR: u64 = 0x520;
/// The "zero page": `struct boot_params`.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer (grows down, below the page tables).
pub const BOOT_STACK_ADDR: u64 = 0x8ff0;
/// Identity-mapping page tables for the first GiB: PML4, PDPT, PD.
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xa000;
pub const PD_ADDR: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Longest command line we hand over (Linux x86 `COMMAND_LINE_SIZE`).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the Extended BIOS Data Area: end of usable conventional memory.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables, inside the BIOS read-only area the kernel scans for the RSDP.
pub const ACPI_TABLES_ADDR: u64 = 0xe0000;
/// End of the ACPI area (exclusive), where the SMBIOS area begins.
pub const ACPI_TABLES_END: u64 = SMBIOS_ADDR;
/// The SMBIOS entry point and tables: the kernel scans 0xF0000-0xFFFFF.
pub const SMBIOS_ADDR: u64 = 0xf0000;
/// End of the SMBIOS area and of the reserved BIOS area (exclusive).
pub const SMBIOS_END: u64 = 0x100000;
/// First byte above the legacy hole; kernels load here or higher.
pub const HIMEM_START: u64 = 0x100000;

/// The 32-bit MMIO hole: no RAM between these (LAPIC, IOAPIC, later
/// virtio-mmio devices).
pub const MMIO_GAP_START: u64 = 0xc000_0000;
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// IOAPIC and local APIC base addresses (the in-kernel irqchip's defaults).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const LAPIC_ADDR: u32 = 0xfee0_0000;

/// I/O ports of the legacy devices.
pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const I8042_PORT: u16 = 0x60;
/// The ACPI power device: sleep control/status and reset registers
/// (hardware-reduced ACPI), one byte each.
pub const ACPI_SLEEP_CONTROL_PORT: u16 = 0x600;
pub const ACPI_SLEEP_STATUS_PORT: u16 = 0x601;
pub const ACPI_RESET_PORT: u16 = 0x602;
/// Value the guest writes to the reset register (announced in the FADT).
pub const ACPI_RESET_VALUE: u8 = 0x1;
/// The sleep type our DSDT's `_S5_` object names (soft off).
pub const ACPI_S5_SLEEP_TYPE: u8 = 5;
/// The ACPI Generic Event Device: its one-byte event register and its
/// interrupt line (the last IOAPIC pin, kept from the virtio range).
pub const ACPI_GED_PORT: u16 = 0x603;
pub const ACPI_GED_GSI: u32 = 23;

/// virtio-mmio devices: one register window each, from here up.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Interrupt lines for virtio-mmio devices (IOAPIC pins; 4 is COM1, 23
/// the ACPI GED).
pub const VIRTIO_FIRST_GSI: u32 = 5;
pub const VIRTIO_LAST_GSI: u32 = 22;

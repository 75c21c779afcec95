//! The Linux x86 "zero page" (`struct boot_params`) with its e820 map.

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::vmm::layout::{
    ACPI_TABLES_ADDR, CMDLINE_ADDR, EBDA_START, HIMEM_START, SMBIOS_END, ZERO_PAGE_ADDR,
};
use crate::vmm::memory::GuestMemory;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// `type_of_loader`: an unregistered boot loader.
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// Physical alignment a relocatable kernel expects (Linux default 16 MiB).
const KERNEL_MIN_ALIGNMENT: u32 = 0x100_0000;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// Errors building the zero page.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("too many e820 entries ({0}) for the zero page")]
    TooManyE820Entries(usize),
    #[error("cannot write boot_params to guest memory: {0}")]
    Write(linux_loader::configurator::Error),
}

/// Where the initrd was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdPlacement {
    pub addr: u64,
    pub size: u64,
}

/// Builds the e820 map: conventional memory below the EBDA, the ACPI
/// and SMBIOS tables, and every RAM region from 1 MiB up.
pub fn e820_map(mem: &GuestMemory) -> Vec<boot_e820_entry> {
    let mut map = vec![
        boot_e820_entry {
            addr: 0,
            size: EBDA_START,
            r#type: E820_RAM,
        },
        boot_e820_entry {
            addr: ACPI_TABLES_ADDR,
            size: SMBIOS_END - ACPI_TABLES_ADDR,
            r#type: E820_RESERVED,
        },
    ];
    for region in mem.iter() {
        let start = region.start_addr().raw_value().max(HIMEM_START);
        let end = region.start_addr().raw_value() + region.len();
        if end > start {
            map.push(boot_e820_entry {
                addr: start,
                size: end - start,
                r#type: E820_RAM,
            });
        }
    }
    map
}

/// The setup header for an ELF kernel, which has none of its own.
fn elf_setup_header() -> setup_header {
    setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        kernel_alignment: KERNEL_MIN_ALIGNMENT,
        ..Default::default()
    }
}

/// Everything that goes into the zero page.
#[derive(Debug)]
pub struct ZeroPage<'a> {
    pub kernel_header: Option<setup_header>,
    pub cmdline_len: usize,
    pub initrd: Option<InitrdPlacement>,
    pub rsdp_addr: u64,
    pub e820: &'a [boot_e820_entry],
}

/// Writes `boot_params` at `ZERO_PAGE_ADDR`.
pub fn write(mem: &GuestMemory, page: &ZeroPage<'_>) -> Result<(), Error> {
    let mut params = boot_params {
        hdr: page.kernel_header.unwrap_or_else(elf_setup_header),
        ..Default::default()
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    // Both fit in 32 bits by construction of the layout.
    params.hdr.cmd_line_ptr = u32::try_from(CMDLINE_ADDR).unwrap_or_default();
    params.hdr.cmdline_size = u32::try_from(page.cmdline_len).unwrap_or(u32::MAX);
    if let Some(initrd) = page.initrd {
        // The initrd is placed below 4 GiB (see `place_initrd`).
        params.hdr.ramdisk_image = u32::try_from(initrd.addr).unwrap_or_default();
        params.hdr.ramdisk_size = u32::try_from(initrd.size).unwrap_or_default();
    }
    params.acpi_rsdp_addr = page.rsdp_addr;

    let count = page.e820.len();
    if count > params.e820_table.len() {
        return Err(Error::TooManyE820Entries(count));
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(page.e820) {
        *slot = *entry;
    }
    params.e820_entries = u8::try_from(count).map_err(|_| Error::TooManyE820Entries(count))?;

    LinuxBootConfigurator::write_bootparams::<GuestMemory>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_ADDR)),
        mem,
    )
    .map_err(Error::Write)
}

/// Picks the highest page-aligned address for an initrd of `size` bytes
/// that lies above the kernel, inside low RAM, and below the kernel's
/// `initrd_addr_max`. `None` when it does not fit.
pub fn place_initrd(
    size: u64,
    kernel_end: u64,
    low_ram_end: u64,
    initrd_addr_max: u64,
) -> Option<InitrdPlacement> {
    let ceiling = low_ram_end.min(initrd_addr_max.saturating_add(1));
    let addr = ceiling.checked_sub(size)? & !0xfff;
    (addr >= kernel_end).then_some(InitrdPlacement { addr, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn initrd_goes_to_the_top_of_low_memory() {
        let p = place_initrd(0x10_0800, 0x200_0000, 512 << 20, 0x7fff_ffff).unwrap();
        assert_eq!(p.addr % 4096, 0);
        assert!(p.addr + p.size <= 512 << 20);
        assert!(p.addr >= (512 << 20) - 0x10_0800 - 4096);
    }

    #[test]
    fn initrd_respects_initrd_addr_max() {
        let p = place_initrd(0x1000, 0x200_0000, 3 << 30, 0x3fff_ffff).unwrap();
        assert!(p.addr + p.size <= 0x4000_0000);
    }

    #[test]
    fn initrd_that_overlaps_the_kernel_does_not_fit() {
        assert_eq!(
            place_initrd(100 << 20, 0x200_0000, 64 << 20, 0x7fff_ffff),
            None
        );
        assert_eq!(place_initrd(1 << 40, 0, 64 << 20, 0x7fff_ffff), None);
    }

    #[test]
    fn zero_page_holds_header_cmdline_initrd_and_e820() {
        let mem = crate::vmm::memory::create(64).unwrap();
        let e820 = e820_map(&mem);
        assert_eq!(e820.len(), 3);
        assert_eq!({ e820[2].addr }, HIMEM_START);
        assert_eq!({ e820[2].size }, (64 << 20) - HIMEM_START);
        let page = ZeroPage {
            kernel_header: None,
            cmdline_len: 12,
            initrd: Some(InitrdPlacement {
                addr: 0x300_0000,
                size: 0x1234,
            }),
            rsdp_addr: ACPI_TABLES_ADDR,
            e820: &e820,
        };
        write(&mem, &page).unwrap();
        let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        assert_eq!({ params.hdr.boot_flag }, KERNEL_BOOT_FLAG_MAGIC);
        assert_eq!({ params.hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ params.hdr.type_of_loader }, KERNEL_LOADER_OTHER);
        assert_eq!(
            { params.hdr.cmd_line_ptr },
            u32::try_from(CMDLINE_ADDR).unwrap()
        );
        assert_eq!({ params.hdr.ramdisk_image }, 0x300_0000);
        assert_eq!({ params.hdr.ramdisk_size }, 0x1234);
        assert_eq!({ params.acpi_rsdp_addr }, ACPI_TABLES_ADDR);
        assert_eq!(params.e820_entries, 3);
        assert_eq!({ params.e820_table[0].size }, EBDA_START);
        assert_eq!({ params.e820_table[1].r#type }, E820_RESERVED);
    }
}

//! The vCPU state for the Linux 64-bit boot protocol: long mode with an
//! identity-mapped first GiB, flat segments, `rsi` pointing at
//! `boot_params`.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};

use crate::vmm::layout::{
    BOOT_STACK_ADDR, GDT_ADDR, IDT_ADDR, PD_ADDR, PDPT_ADDR, PML4_ADDR, ZERO_PAGE_ADDR,
};
use crate::vmm::memory::GuestMemory;

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Page-table entry bits: present, writable, page size (2 MiB leaf).
const PTE_PRESENT_RW: u64 = 0x3;
const PDE_LARGE: u64 = 0x80;

/// GDT indices required by the boot protocol (selectors 0x10 and 0x18),
/// and a TSS so that VMX accepts the state.
const GDT_CODE: usize = 2;
const GDT_DATA: usize = 3;
const GDT_TSS: usize = 4;

/// Errors of register setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write boot page tables or GDT to guest memory: {0}")]
    Write(vm_memory::GuestMemoryError),
}

/// Builds a GDT descriptor from its flags, base and limit.
const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The GDT: null, null, 64-bit code, data, TSS.
const GDT: [u64; 5] = [
    0,
    0,
    gdt_entry(0xa09b, 0, 0xfffff), // code: present, DPL0, exec/read, L=1, G=1
    gdt_entry(0xc093, 0, 0xfffff), // data: present, DPL0, read/write, D/B=1, G=1
    gdt_entry(0x808b, 0, 0xfffff), // TSS: present, busy 64-bit TSS
];

/// Decodes a GDT entry into the segment KVM loads.
fn segment_from_gdt(entry: u64, index: usize) -> kvm_segment {
    let bits = |shift: u32, mask: u64| u8::try_from((entry >> shift) & mask).unwrap_or_default();
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit = (entry & 0xffff) | ((entry >> 32) & 0x000f_0000);
    let granular = bits(55, 1) == 1;
    kvm_segment {
        base,
        // A page-granular limit counts 4 KiB units.
        limit: u32::try_from(if granular {
            (limit << 12) | 0xfff
        } else {
            limit
        })
        .unwrap_or(u32::MAX),
        selector: u16::try_from(index * 8).unwrap_or_default(),
        type_: bits(40, 0xf),
        present: bits(47, 1),
        dpl: bits(45, 0x3),
        db: bits(54, 1),
        s: bits(44, 1),
        l: bits(53, 1),
        g: bits(55, 1),
        avl: bits(52, 1),
        unusable: u8::from(bits(47, 1) == 0),
        padding: 0,
    }
}

/// Writes the GDT, an empty IDT and the identity-mapping page tables
/// (first GiB, 2 MiB pages) into guest memory.
pub fn write_boot_structures(mem: &GuestMemory) -> Result<(), Error> {
    for (i, entry) in GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(Error::Write)?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_ADDR))
        .map_err(Error::Write)?;
    mem.write_obj(PDPT_ADDR | PTE_PRESENT_RW, GuestAddress(PML4_ADDR))
        .map_err(Error::Write)?;
    mem.write_obj(PD_ADDR | PTE_PRESENT_RW, GuestAddress(PDPT_ADDR))
        .map_err(Error::Write)?;
    for i in 0..512u64 {
        mem.write_obj(
            (i << 21) | PTE_PRESENT_RW | PDE_LARGE,
            GuestAddress(PD_ADDR + i * 8),
        )
        .map_err(Error::Write)?;
    }
    Ok(())
}

/// Special registers for long mode, starting from what KVM reports.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let code = segment_from_gdt(GDT[GDT_CODE], GDT_CODE);
    let data = segment_from_gdt(GDT[GDT_DATA], GDT_DATA);
    let tss = segment_from_gdt(GDT[GDT_TSS], GDT_TSS);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = u16::try_from(std::mem::size_of_val(&GDT) - 1).unwrap_or_default();
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// General registers at the kernel's 64-bit entry point.
pub fn boot_regs(entry: GuestAddress) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry.0,
        rsp: BOOT_STACK_ADDR,
        rbp: BOOT_STACK_ADDR,
        rsi: ZERO_PAGE_ADDR,
        ..Default::default()
    }
}

/// The FPU in its power-on state (x87 control word, SSE exceptions masked).
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_64_bit_flat() {
        let cs = segment_from_gdt(GDT[GDT_CODE], GDT_CODE);
        assert_eq!(cs.selector, 0x10);
        assert_eq!(cs.l, 1);
        assert_eq!(cs.db, 0);
        assert_eq!(cs.present, 1);
        assert_eq!(cs.type_, 0xb);
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = segment_from_gdt(GDT[GDT_DATA], GDT_DATA);
        assert_eq!(ds.selector, 0x18);
        assert_eq!(ds.type_, 0x3);
        assert_eq!(ds.db, 1);
    }

    #[test]
    fn page_tables_identity_map_the_first_gib() {
        let mem = crate::vmm::memory::create(16).unwrap();
        write_boot_structures(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4 & !0xfff, PDPT_ADDR);
        let pde: u64 = mem.read_obj(GuestAddress(PD_ADDR + 511 * 8)).unwrap();
        assert_eq!(pde & !0xfff, 511 << 21);
        assert_ne!(pde & PDE_LARGE, 0);
    }

    #[test]
    fn sregs_enable_long_mode() {
        let s = long_mode_sregs(kvm_sregs::default());
        assert_ne!(s.efer & EFER_LMA, 0);
        assert_ne!(s.cr0 & X86_CR0_PG, 0);
        assert_eq!(s.cr3, PML4_ADDR);
        assert_eq!(s.cs.selector, 0x10);
        assert_eq!(s.ss.selector, 0x18);
    }
}

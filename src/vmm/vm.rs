//! The KVM virtual machine: memory slots, in-kernel irqchip and PIT.

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::memory::GuestMemory;

/// Where KVM puts the three pages of the real-mode TSS it needs on Intel;
/// just below the IOAPIC, inside the MMIO hole.
const TSS_ADDR: usize = 0xfffb_d000;

/// Errors of VM setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the KVM VM: {0}")]
    Create(kvm_ioctls::Error),
    #[error("cannot set the TSS address: {0}")]
    Tss(kvm_ioctls::Error),
    #[error("cannot create the in-kernel interrupt controller: {0}")]
    Irqchip(kvm_ioctls::Error),
    #[error("cannot create the in-kernel PIT: {0}")]
    Pit(kvm_ioctls::Error),
    #[error("cannot register guest memory slot {slot} with KVM: {source}")]
    MemorySlot {
        slot: u32,
        source: kvm_ioctls::Error,
    },
    #[error("cannot route interrupt {gsi} through an irqfd: {source}")]
    Irqfd { gsi: u32, source: kvm_ioctls::Error },
}

/// Creates a VM with an in-kernel IOAPIC/PIC/LAPIC and PIT, and gives it
/// `mem` as its RAM.
pub fn create(kvm: &Kvm, mem: &GuestMemory) -> Result<VmFd, Error> {
    let vm = kvm.create_vm().map_err(Error::Create)?;
    vm.set_tss_address(TSS_ADDR).map_err(Error::Tss)?;
    vm.create_irq_chip().map_err(Error::Irqchip)?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(Error::Pit)?;
    register_memory(&vm, mem)?;
    Ok(vm)
}

/// Registers every region of `mem` as a KVM memory slot.
pub fn register_memory(vm: &VmFd, mem: &GuestMemory) -> Result<(), Error> {
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let host = region.as_ptr() as u64;
        let region_desc = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host,
        };
        // SAFETY: the region is a live mmap of `memory_size` bytes owned by
        // `mem`, which the caller keeps mapped for as long as a vCPU may
        // run: `RunningVm` unmaps it only after joining every vCPU thread,
        // and leaks it when one does not stop.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(|source| Error::MemorySlot { slot, source })?;
    }
    Ok(())
}

/// Routes `evt` to interrupt line `gsi`.
pub fn register_irqfd(vm: &VmFd, evt: &EventFd, gsi: u32) -> Result<(), Error> {
    vm.register_irqfd(evt, gsi)
        .map_err(|source| Error::Irqfd { gsi, source })
}

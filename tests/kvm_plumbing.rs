//! KVM plumbing on this machine's own `/dev/kvm`, with hand-assembled
//! 64-bit guests: memory slots, long-mode entry state, port-I/O and MMIO
//! exits, the ACPI power-off register, and crash reporting.
//!
//! These need no real kernel, so they run wherever `/dev/kvm` answers,
//! including KVMs that emulate instructions rather than run them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gureum::vmm::cpu::{Vcpu, regs};
use gureum::vmm::devices::acpi_power::{self, AcpiPower};
use gureum::vmm::devices::bus::{BusDevice, Buses};
use gureum::vmm::exit::{ExitSignal, VmExit};
use gureum::vmm::layout::{ACPI_SLEEP_CONTROL_PORT, ZERO_PAGE_ADDR};
use gureum::vmm::{kvm, memory, vm};
use vm_memory::{Bytes, GuestAddress};

const ENTRY: u64 = 0x10_0000;
const DATA_ADDR: u64 = 0x20_0000;
const TEST_PORT: u64 = 0x4f0;

/// Records bytes the guest writes to the test port.
struct Recorder(Sender<u8>);

impl BusDevice for Recorder {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        self.0.send(data[0]).unwrap();
    }
}

/// Boots `code` at `ENTRY` on one vCPU in the state the Linux boot
/// protocol gets, and returns the bytes sent to the test port and the
/// VM's exit channel.
fn run_guest(code: &[u8]) -> (Receiver<u8>, Receiver<VmExit>) {
    let kvm = kvm::open().expect("these tests need a working /dev/kvm");
    let mem = memory::create(64).unwrap();
    regs::write_boot_structures(&mem).unwrap();
    mem.write_slice(code, GuestAddress(ENTRY)).unwrap();
    mem.write_obj(0x5au8, GuestAddress(DATA_ADDR)).unwrap();
    let vm_fd = vm::create(&kvm, &mem).unwrap();

    let (exit_tx, exit_rx) = ExitSignal::new();
    let (port_tx, port_rx) = channel();
    let mut buses = Buses::default();
    buses
        .pio
        .insert(TEST_PORT, 1, Arc::new(Mutex::new(Recorder(port_tx))))
        .unwrap();
    buses
        .pio
        .insert(
            u64::from(ACPI_SLEEP_CONTROL_PORT),
            acpi_power::PORTS,
            Arc::new(Mutex::new(AcpiPower::new(exit_tx.clone()))),
        )
        .unwrap();

    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .unwrap();
    let vcpu = Vcpu::new(&vm_fd, 0).unwrap();
    vcpu.configure(&supported, 1, GuestAddress(ENTRY)).unwrap();
    vcpu.spawn(Arc::new(buses), exit_tx).unwrap();
    // The VM and its memory must outlive the vCPU thread, which runs
    // until the test process ends.
    std::mem::forget(vm_fd);
    std::mem::forget(mem);
    (port_rx, exit_rx)
}

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn long_mode_guest_does_port_io_reads_memory_and_mmio_then_powers_off() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xba, 0xf0, 0x04,             // mov dx, 0x4f0
        0x48, 0x89, 0xf0,                   // mov rax, rsi (boot_params)
        0x48, 0xc1, 0xe8, 0x08,             // shr rax, 8
        0xee,                               // out dx, al
        0x8a, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, // mov al, [0x200000]
        0xee,                               // out dx, al
        0x48, 0xb8, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0, // mov rax, 0x8000000
        0x8a, 0x00,                         // mov al, [rax] (no RAM: MMIO)
        0xee,                               // out dx, al
        0x66, 0xba, 0x00, 0x06,             // mov dx, 0x600 (sleep control)
        0xb0, 0x34,                         // mov al, SLP_EN | S5 << 2
        0xee,                               // out dx, al
        0xf4,                               // hlt
        0xeb, 0xfd,                         // jmp back to hlt
    ];
    let (port, exits) = run_guest(&code);
    let byte = || {
        port.recv_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("no port output ({e}); VM exit: {:?}", exits.try_recv()))
    };
    assert_eq!(
        u64::from(byte()),
        ZERO_PAGE_ADDR >> 8,
        "rsi points at boot_params"
    );
    assert_eq!(byte(), 0x5a, "guest reads the memory slot");
    assert_eq!(byte(), 0xff, "an unbacked MMIO read floats high");
    assert_eq!(exits.recv_timeout(TIMEOUT).unwrap(), VmExit::PowerOff);
}

#[test]
fn triple_fault_is_reported_as_a_crash_with_registers() {
    // ud2 with an empty IDT: #UD cannot be delivered, nor #DF: triple fault.
    let code = [0x0f, 0x0b];
    let (_port, exits) = run_guest(&code);
    match exits.recv_timeout(TIMEOUT).unwrap() {
        VmExit::Crash(what) => {
            assert!(what.contains("triple fault"), "{what}");
            assert!(what.contains("rip="), "{what}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
}

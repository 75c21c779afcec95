//! KVM plumbing on this machine's own `/dev/kvm`, with hand-assembled
//! 64-bit guests: memory slots, long-mode entry state, port-I/O and MMIO
//! exits, the ACPI power-off register, the power button's event register,
//! crash reporting, vCPUs kicked out of the guest, a hostile virtio
//! request, and a console client that stops reading.
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

use gureum::vmm::console::SocketConsole;
use gureum::vmm::console_queue::BufferedOutput;
use gureum::vmm::cpu::{Vcpu, VcpuHandle, regs};
use gureum::vmm::devices::acpi_ged::{self, AcpiGed, EVENT_POWER_BUTTON, PowerButton};
use gureum::vmm::devices::acpi_power::{self, AcpiPower};
use gureum::vmm::devices::bus::{BusDevice, Buses};
use gureum::vmm::devices::serial::SerialPort;
use gureum::vmm::devices::virtio::VirtioDevice;
use gureum::vmm::devices::virtio::block::Block;
use gureum::vmm::exit::{ExitSignal, VmExit};
use gureum::vmm::layout::{ACPI_GED_GSI, ACPI_GED_PORT, ACPI_SLEEP_CONTROL_PORT, ZERO_PAGE_ADDR};
use gureum::vmm::layout::{PDPT_ADDR, VIRTIO_MMIO_BASE};
use gureum::vmm::memory::GuestMemory;
use gureum::vmm::{kvm, memory, vm};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
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

/// A running test guest: the bytes it sends to the test port, why its VM
/// stopped, and its power button.
struct Guest {
    port: Receiver<u8>,
    exits: Receiver<VmExit>,
    power_button: PowerButton,
    stopper: ExitSignal,
    vcpu: VcpuHandle,
}

/// Boots `code` at `ENTRY` on one vCPU in the state the Linux boot
/// protocol gets.
fn run_guest(code: &[u8]) -> Guest {
    run_guest_with(code, Vec::new(), |_| {})
}

/// A port-I/O device for a test guest: base port, length, device.
type PioDevice = (u64, u64, Arc<Mutex<dyn BusDevice>>);

/// Like `run_guest`, with virtio devices on the MMIO bus and `prepare`
/// writing whatever else the guest needs into its memory.
fn run_guest_with(
    code: &[u8],
    devices: Vec<Box<dyn VirtioDevice>>,
    prepare: impl FnOnce(&GuestMemory),
) -> Guest {
    boot_guest(code, devices, Vec::new(), prepare)
}

/// Like `run_guest_with`, with port-I/O devices too.
fn boot_guest(
    code: &[u8],
    devices: Vec<Box<dyn VirtioDevice>>,
    pio: Vec<PioDevice>,
    prepare: impl FnOnce(&GuestMemory),
) -> Guest {
    let kvm = kvm::open().expect("these tests need a working /dev/kvm");
    let mem = memory::create(64).unwrap();
    regs::write_boot_structures(&mem).unwrap();
    mem.write_slice(code, GuestAddress(ENTRY)).unwrap();
    mem.write_obj(0x5au8, GuestAddress(DATA_ADDR)).unwrap();
    prepare(&mem);
    let vm_fd = vm::create(&kvm, &mem).unwrap();

    let (exit_tx, exit_rx) = ExitSignal::new();
    let (port_tx, port_rx) = channel();
    let mut buses = Buses::default();
    gureum::vmm::attach_virtio(&vm_fd, &mem, &mut buses, devices).unwrap();
    buses
        .pio
        .insert(TEST_PORT, 1, Arc::new(Mutex::new(Recorder(port_tx))))
        .unwrap();
    for (base, len, device) in pio {
        buses.pio.insert(base, len, device).unwrap();
    }
    buses
        .pio
        .insert(
            u64::from(ACPI_SLEEP_CONTROL_PORT),
            acpi_power::PORTS,
            Arc::new(Mutex::new(AcpiPower::new(exit_tx.clone()))),
        )
        .unwrap();
    let ged_irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
    vm::register_irqfd(&vm_fd, &ged_irq, ACPI_GED_GSI).unwrap();
    let ged = Arc::new(Mutex::new(AcpiGed::new(ged_irq)));
    buses
        .pio
        .insert(u64::from(ACPI_GED_PORT), acpi_ged::PORTS, ged.clone())
        .unwrap();

    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .unwrap();
    let vcpu = Vcpu::new(&vm_fd, 0).unwrap();
    vcpu.configure(&supported, 1, GuestAddress(ENTRY)).unwrap();
    let handle = vcpu.spawn(Arc::new(buses), exit_tx.clone()).unwrap();
    // The VM and its memory must outlive the vCPU thread, which runs
    // until the test process ends (or a test stops it).
    std::mem::forget(vm_fd);
    std::mem::forget(mem);
    Guest {
        port: port_rx,
        exits: exit_rx,
        power_button: PowerButton::new(ged),
        stopper: exit_tx,
        vcpu: handle,
    }
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
    let Guest { port, exits, .. } = run_guest(&code);
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
fn the_guest_reads_a_power_button_press_from_the_event_register_once() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xba, 0xf0, 0x04,             // mov dx, 0x4f0
        0xb0, 0x01,                         // mov al, 1
        0xee,                               // out dx, al (ready)
        0x66, 0xba, 0x03, 0x06,             // mov dx, 0x603 (GED events)
        0xec,                               // in al, dx
        0x84, 0xc0,                         // test al, al
        0x74, 0xfb,                         // jz back to in
        0x88, 0xc3,                         // mov bl, al
        0xec,                               // in al, dx (read again)
        0x88, 0xc1,                         // mov cl, al
        0x66, 0xba, 0xf0, 0x04,             // mov dx, 0x4f0
        0x88, 0xd8,                         // mov al, bl
        0xee,                               // out dx, al (the event)
        0x88, 0xc8,                         // mov al, cl
        0xee,                               // out dx, al (after it)
        0x66, 0xba, 0x00, 0x06,             // mov dx, 0x600 (sleep control)
        0xb0, 0x34,                         // mov al, SLP_EN | S5 << 2
        0xee,                               // out dx, al
        0xf4,                               // hlt
        0xeb, 0xfd,                         // jmp back to hlt
    ];
    let guest = run_guest(&code);
    let byte = || {
        guest.port.recv_timeout(TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "no port output ({e}); VM exit: {:?}",
                guest.exits.try_recv()
            )
        })
    };
    assert_eq!(byte(), 1, "the guest polls the event register");
    guest.power_button.press();
    assert_eq!(byte(), EVENT_POWER_BUTTON, "the guest sees the press");
    assert_eq!(byte(), 0, "reading the register cleared it");
    assert_eq!(guest.exits.recv_timeout(TIMEOUT).unwrap(), VmExit::PowerOff);
}

#[test]
fn triple_fault_is_reported_as_a_crash_with_registers() {
    // ud2 with an empty IDT: #UD cannot be delivered, nor #DF: triple fault.
    let code = [0x0f, 0x0b];
    let Guest { exits, .. } = run_guest(&code);
    match exits.recv_timeout(TIMEOUT).unwrap() {
        VmExit::Crash(what) => {
            assert!(what.contains("triple fault"), "{what}");
            assert!(what.contains("rip="), "{what}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[test]
fn hostile_virtio_request_fails_alone_and_the_device_carries_on() {
    // The guest drives the virtio-mmio transport of a virtio-blk device
    // at 0xd0000000 by hand: negotiates VERSION_1, sets up queue 0 whose
    // only request points far outside guest RAM, notifies (through KVM's
    // ioeventfd), then waits for the device to return it used.
    #[rustfmt::skip]
    let code = [
        0x48, 0xb8, 0x00, 0x00, 0x00, 0xd0, 0, 0, 0, 0,       // mov rax, 0xd0000000
        0xc7, 0x40, 0x70, 0x01, 0, 0, 0,                      // status = ACKNOWLEDGE
        0xc7, 0x40, 0x70, 0x03, 0, 0, 0,                      // status |= DRIVER
        0xc7, 0x40, 0x24, 0x01, 0, 0, 0,                      // driver features sel = 1
        0xc7, 0x40, 0x20, 0x01, 0, 0, 0,                      // VIRTIO_F_VERSION_1
        0xc7, 0x40, 0x70, 0x0b, 0, 0, 0,                      // status |= FEATURES_OK
        0xc7, 0x40, 0x30, 0x00, 0, 0, 0,                      // queue sel = 0
        0xc7, 0x40, 0x38, 0x10, 0, 0, 0,                      // queue num = 16
        0xc7, 0x80, 0x80, 0, 0, 0, 0x00, 0x00, 0x30, 0x00,    // desc = 0x300000
        0xc7, 0x80, 0x90, 0, 0, 0, 0x00, 0x10, 0x30, 0x00,    // avail = 0x301000
        0xc7, 0x80, 0xa0, 0, 0, 0, 0x00, 0x20, 0x30, 0x00,    // used = 0x302000
        0xc7, 0x40, 0x44, 0x01, 0, 0, 0,                      // queue ready
        0xc7, 0x40, 0x70, 0x0f, 0, 0, 0,                      // status |= DRIVER_OK
        0xc7, 0x40, 0x50, 0x00, 0, 0, 0,                      // notify queue 0
        0x0f, 0xb7, 0x0c, 0x25, 0x02, 0x20, 0x30, 0x00,       // loop: movzx ecx, [used idx]
        0x85, 0xc9,                                           // test ecx, ecx
        0x74, 0xf4,                                           // jz loop
        0x8b, 0x48, 0x70,                                     // mov ecx, [status]
        0x66, 0xba, 0xf0, 0x04,                               // mov dx, 0x4f0
        0x88, 0xc8,                                           // mov al, cl
        0xee,                                                 // out dx, al (status)
        0xb8, 0x00, 0x00, 0x00, 0xd0,                         // mov eax, 0xd0000000 again
        0x8b, 0x48, 0x60,                                     // mov ecx, [interrupt status]
        0x88, 0xc8,                                           // mov al, cl
        0xee,                                                 // out dx, al
        0x66, 0xba, 0x00, 0x06,                               // mov dx, 0x600
        0xb0, 0x34,                                           // mov al, SLP_EN | S5 << 2
        0xee,                                                 // out dx, al
        0xf4,                                                 // hlt
    ];
    let disk = tempfile::NamedTempFile::new().unwrap();
    disk.as_file().set_len(1 << 20).unwrap();
    let block = Block::open(disk.path(), false, "vda").unwrap();
    let prepare = |mem: &GuestMemory| {
        // Map 3-4 GiB (the MMIO hole) with one more page directory.
        const PD_HIGH: u64 = 0xc000;
        mem.write_obj(PD_HIGH | 0x3, GuestAddress(PDPT_ADDR + 3 * 8))
            .unwrap();
        let slot = (VIRTIO_MMIO_BASE - 0xc000_0000) >> 21;
        mem.write_obj(VIRTIO_MMIO_BASE | 0x83, GuestAddress(PD_HIGH + slot * 8))
            .unwrap();
        // Descriptor 0: a 16-byte request header at 0xdead_0000_0000.
        mem.write_obj(0xdead_0000_0000u64, GuestAddress(0x30_0000))
            .unwrap();
        mem.write_obj(16u32, GuestAddress(0x30_0008)).unwrap();
        // Available ring: idx 1, ring[0] = descriptor 0.
        mem.write_obj(1u16, GuestAddress(0x30_1002)).unwrap();
        mem.write_obj(0u16, GuestAddress(0x30_1004)).unwrap();
    };
    let Guest { port, exits, .. } = run_guest_with(&code, vec![Box::new(block)], prepare);
    let byte = || {
        port.recv_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("no port output ({e}); VM exit: {:?}", exits.try_recv()))
    };
    let status = byte();
    assert_eq!(
        status, 0x0f,
        "DRIVER_OK and no DEVICE_NEEDS_RESET: {status:#x}"
    );
    let interrupt = byte();
    assert_eq!(interrupt, 0x1, "a used-ring interrupt only: {interrupt:#x}");
    // The VMM carried on and served the guest's power-off.
    assert_eq!(exits.recv_timeout(TIMEOUT).unwrap(), VmExit::PowerOff);
}

#[test]
fn a_spinning_or_halted_vcpu_is_kicked_out_of_the_guest_and_joined() {
    #[rustfmt::skip]
    let spin = [
        0x66, 0xba, 0xf0, 0x04,             // mov dx, 0x4f0
        0xee,                               // out dx, al (running)
        0xeb, 0xfe,                         // jmp $
    ];
    #[rustfmt::skip]
    let halt = [
        0x66, 0xba, 0xf0, 0x04,             // mov dx, 0x4f0
        0xee,                               // out dx, al (running)
        0xfa,                               // cli
        0xf4,                               // hlt: no interrupt ever wakes it
        0xeb, 0xfc,                         // jmp back to cli
    ];
    for code in [&spin[..], &halt[..]] {
        let Guest {
            port,
            exits,
            stopper,
            mut vcpu,
            ..
        } = run_guest(code);
        port.recv_timeout(TIMEOUT).unwrap();
        stopper.stop(VmExit::Terminated);
        assert!(
            vcpu.stop(std::time::Instant::now() + TIMEOUT),
            "the vCPU thread ended"
        );
        assert!(vcpu.is_finished());
        assert_eq!(exits.try_recv(), Ok(VmExit::Terminated));
    }
}

/// Writes `marker` through `out` until `client` reads it: the client is
/// attached to the console.
fn attach_console_client(out: &mut BufferedOutput, client: &mut UnixStream, marker: u8) {
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    loop {
        out.write_all(&[marker]).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = client.read(&mut buf) {
            if buf[..n].contains(&marker) {
                return;
            }
        }
    }
}

#[test]
fn a_stalled_console_client_does_not_stop_the_guest() {
    // The guest prints 256 KiB on COM1, more than a console socket holds,
    // to a client that never reads, then powers off.
    #[rustfmt::skip]
    let code = [
        0x66, 0xba, 0xf8, 0x03,             // mov dx, 0x3f8 (COM1 data)
        0xb9, 0x00, 0x00, 0x04, 0x00,       // mov ecx, 256 KiB
        0xb0, 0x78,                         // mov al, 'x'
        0xee,                               // loop: out dx, al
        0xff, 0xc9,                         // dec ecx
        0x75, 0xfb,                         // jnz loop
        0x66, 0xba, 0xf0, 0x04,             // mov dx, 0x4f0
        0xee,                               // out dx, al (done)
        0x66, 0xba, 0x00, 0x06,             // mov dx, 0x600 (sleep control)
        0xb0, 0x34,                         // mov al, SLP_EN | S5 << 2
        0xee,                               // out dx, al
        0xf4,                               // hlt
    ];
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("console.sock");
    let log = dir.path().join("console.log");
    let (console, out) = SocketConsole::bind(&socket, Some(&log)).unwrap();
    console.serve_with(|_| {}).unwrap();
    let mut out = BufferedOutput::start(Box::new(out)).unwrap();
    let mut stalled = UnixStream::connect(&socket).unwrap();
    attach_console_client(&mut out, &mut stalled, b'a');
    let serial = SerialPort::new(
        vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        Box::new(out.clone()),
    );
    let guest = boot_guest(
        &code,
        Vec::new(),
        vec![(0x3f8, 8, Arc::new(Mutex::new(serial)))],
        |_| {},
    );
    guest.port.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(guest.exits.recv_timeout(TIMEOUT).unwrap(), VmExit::PowerOff);
    // A new client replaces the stalled one, which is disconnected.
    let mut fresh = UnixStream::connect(&socket).unwrap();
    attach_console_client(&mut out, &mut fresh, b'b');
    stalled.set_read_timeout(None).unwrap();
    let mut rest = Vec::new();
    stalled.read_to_end(&mut rest).unwrap();
    assert!(
        rest.len() < 256 << 10,
        "the stalled client got {} bytes",
        rest.len()
    );
}

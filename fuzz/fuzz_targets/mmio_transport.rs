//! The virtio-mmio transport: any sequence of register reads and writes
//! (feature negotiation, queue setup, status changes, resets) leaves the
//! VMM standing.

#![no_main]

use std::sync::{Arc, OnceLock};

use gureum::vmm::devices::bus::BusDevice;
use gureum::vmm::devices::virtio::Interrupt;
use gureum::vmm::devices::virtio::block::Block;
use gureum::vmm::devices::virtio::mmio::MmioTransport;
use gureum_fuzz::guest;
use libfuzzer_sys::fuzz_target;
use vmm_sys_util::eventfd::EventFd;

fn disk() -> &'static tempfile::NamedTempFile {
    static DISK: OnceLock<tempfile::NamedTempFile> = OnceLock::new();
    DISK.get_or_init(|| {
        let file = tempfile::NamedTempFile::new().expect("a temporary disk");
        file.as_file().set_len(1 << 20).expect("a 1 MiB disk");
        file
    })
}

fuzz_target!(|data: &[u8]| {
    // Guest memory from the first 4 KiB (rings and buffers), register
    // accesses from the rest: op, 2-byte offset, 4-byte value.
    let split = data.len().min(4096);
    let (memory, ops) = data.split_at(split);
    let mem = guest(memory);
    // Read-only: the image's shared lock lets every iteration open it.
    let block = Block::open(disk().path(), true, "vda").expect("the disk opens");
    let irq = EventFd::new(libc::EFD_NONBLOCK).expect("an eventfd");
    let interrupt = Arc::new(Interrupt::new(irq));
    let Ok(mut transport) = MmioTransport::new(Box::new(block), mem, interrupt) else {
        return;
    };
    for op in ops.chunks_exact(7) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]) & 0x1ff);
        let value = [op[3], op[4], op[5], op[6]];
        match op[0] % 4 {
            0 => transport.write(offset, &value),
            1 => transport.write(offset, &value[..1 + usize::from(op[0] >> 6)]),
            2 => {
                let mut out = [0u8; 4];
                transport.read(offset, &mut out);
            }
            _ => {
                let mut out = [0u8; 8];
                transport.read(offset, &mut out[..1 + usize::from(op[0] >> 5)]);
            }
        }
    }
    // Reset, so an activated worker retires before the next iteration.
    transport.write(0x70, &[0, 0, 0, 0]);
});

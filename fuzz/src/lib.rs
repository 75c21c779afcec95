//! What the fuzz targets share: a small guest whose memory starts with
//! the fuzzer's bytes, and split queues laid out in it. The code under
//! test is gureum's own, reached through its library.

use gureum::vmm::memory::{self, GuestMemory};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

/// Guest RAM of every fuzz guest: 1 MiB.
pub const GUEST_MIB: u64 = 1;
/// Bytes of fuzzer input copied to the start of guest memory.
pub const MEMORY_BYTES: usize = 64 << 10;
/// Size of every fuzzed queue.
pub const QUEUE_SIZE: u16 = 16;

/// A guest whose memory starts with (up to 64 KiB of) `data`.
pub fn guest(data: &[u8]) -> GuestMemory {
    let mem = memory::create(GUEST_MIB).expect("1 MiB of guest memory");
    let head = &data[..data.len().min(MEMORY_BYTES)];
    mem.write_slice(head, GuestAddress(0))
        .expect("the input fits guest memory");
    mem
}

/// A ready split queue of `QUEUE_SIZE` entries whose descriptor table,
/// available ring and used ring start at `base`, `base + 0x400` and
/// `base + 0x800`: what a driver would have set up.
pub fn queue(base: u64) -> Queue {
    let mut q = Queue::new(QUEUE_SIZE).expect("a valid queue size");
    let split = |a: u64| (Some((a & 0xffff_ffff) as u32), Some((a >> 32) as u32));
    let (lo, hi) = split(base);
    q.set_desc_table_address(lo, hi);
    let (lo, hi) = split(base + 0x400);
    q.set_avail_ring_address(lo, hi);
    let (lo, hi) = split(base + 0x800);
    q.set_used_ring_address(lo, hi);
    q.set_ready(true);
    q
}

//! The VMM against a hostile guest, on the host itself: a guest asking
//! for a 4 GiB disk request does not grow the VMM's memory, and a raw
//! block device shows its real size.
//!
//! One test per concern in this file; the RSS test measures the whole
//! process, so nothing else here allocates much.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;

use gureum::vmm::devices::virtio::block::{
    Block, MAX_REQUEST_BYTES, SIZE_MAX, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
};
use gureum::vmm::memory::{self, GuestMemory};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const HEADER_AT: u64 = 0x10_0000;
const STATUS_AT: u64 = 0x10_1000;
/// Where every data buffer points: the same guest pages, over and over.
const DATA_AT: u64 = 16 << 20;

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// The process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Serves one read request of `count` buffers of `len` bytes, all on the
/// same guest pages, and returns its status.
fn read_request(block: &Block, mem: &GuestMemory, count: u16, len: u32) -> u8 {
    let vq = MockSplitQueue::create(mem, GuestAddress(0), 256);
    let mut descs = vec![desc(HEADER_AT, 16, NEXT, 1)];
    descs.extend((0..count).map(|i| desc(DATA_AT, len, NEXT | WRITE, i + 2)));
    descs.push(desc(STATUS_AT, 1, WRITE, 0));
    vq.add_desc_chains(&descs, 0).unwrap();
    // IN (0) at sector 0.
    mem.write_obj([0u32, 0, 0, 0], GuestAddress(HEADER_AT))
        .unwrap();
    mem.write_obj(0xffu8, GuestAddress(STATUS_AT)).unwrap();
    let mut server = block.queue_server(mem.clone(), vq.create_queue().unwrap());
    server.process().unwrap();
    assert_eq!(vq.used().idx().load(), 1, "the request was completed");
    mem.read_obj(GuestAddress(STATUS_AT)).unwrap()
}

/// The bound this test states: serving the requests below grows the
/// VMM's resident memory by less than 8 MiB (the guest pages the data
/// lands on are 1 MiB of it; a copy through a host buffer would be
/// 126 MiB, and 4 GiB for the refused request).
const RSS_BOUND_KIB: u64 = 8 << 10;

#[test]
fn a_4_gib_request_does_not_grow_the_vmm_and_a_full_one_streams_through_guest_memory() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    disk.as_file().set_len(8 << 30).unwrap();
    let block = Block::open(disk.path(), false, "vda").unwrap();
    let mem = memory::create(32).unwrap();
    let before = rss_kib();

    // 254 buffers of 16 MiB: 4064 MiB in one request, over the cap.
    let status = read_request(&block, &mem, 254, 16 << 20);
    assert_eq!(status, VIRTIO_BLK_S_IOERR);

    // The largest request the device advertises: 126 buffers of 1 MiB.
    let count = u16::try_from(MAX_REQUEST_BYTES / u64::from(SIZE_MAX)).unwrap();
    let status = read_request(&block, &mem, count, SIZE_MAX);
    assert_eq!(status, VIRTIO_BLK_S_OK);

    let grown = rss_kib().saturating_sub(before);
    eprintln!("RSS grew by {grown} KiB (bound {RSS_BOUND_KIB} KiB)");
    assert!(grown < RSS_BOUND_KIB, "RSS grew by {grown} KiB");
}

/// A loop device over a file, detached when dropped.
struct LoopDevice(String);

impl LoopDevice {
    fn attach(file: &std::path::Path) -> Self {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("this test needs losetup (util-linux) and root");
        assert!(
            out.status.success(),
            "losetup failed (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn a_raw_block_device_has_its_size() {
    let backing = tempfile::NamedTempFile::new().unwrap();
    backing.as_file().set_len(3 << 20).unwrap();
    let device = LoopDevice::attach(backing.path());
    let meta = std::fs::metadata(&device.0).unwrap();
    assert_eq!(meta.len(), 0, "a block device's metadata says 0 bytes");
    let block = Block::open(std::path::Path::new(&device.0), false, "vda").unwrap();
    assert_eq!(block.sectors(), (3 << 20) / 512);
    // And it is locked like an image file.
    assert!(Block::open(std::path::Path::new(&device.0), false, "vdb").is_err());
}

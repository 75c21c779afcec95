//! virtio-blk: whatever the guest puts in its queue and buffers, the
//! device serves or fails each request without crashing, allocating per
//! request or touching memory outside guest RAM.

#![no_main]

use std::sync::OnceLock;

use gureum::vmm::devices::virtio::block::Block;
use gureum_fuzz::{guest, queue};
use libfuzzer_sys::fuzz_target;

struct Disk {
    _file: tempfile::NamedTempFile,
    block: Block,
}

fn disk() -> &'static Disk {
    static DISK: OnceLock<Disk> = OnceLock::new();
    DISK.get_or_init(|| {
        let file = tempfile::NamedTempFile::new().expect("a temporary disk");
        file.as_file().set_len(1 << 20).expect("a 1 MiB disk");
        let block = Block::open(file.path(), false, "vda").expect("the disk opens");
        Disk { _file: file, block }
    })
}

fuzz_target!(|data: &[u8]| {
    let mem = guest(data);
    let mut server = disk().block.queue_server(mem, queue(0));
    let _ = server.process();
});

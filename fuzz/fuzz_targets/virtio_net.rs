//! virtio-net: guest queues from the fuzzer's bytes, frames (with their
//! virtio-net headers) from the host end too, and the features the
//! driver accepted; receive and transmit interleave without crashing.

#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;

use gureum::vmm::devices::virtio::chain::Buffers;
use gureum::vmm::devices::virtio::net::{Datapath, FEATURES, FrameIo};
use gureum::vmm::memory::GuestMemory;
use gureum_fuzz::{MEMORY_BYTES, guest, queue};
use libfuzzer_sys::fuzz_target;

/// A host end handing over frames cut from the input.
struct Frames(RefCell<VecDeque<Vec<u8>>>);

// The datapath is used on this one thread only; FrameIo asks for Send
// because the VMM moves it to a worker.
unsafe impl Send for Frames {}

impl FrameIo for Frames {
    fn read_frame(&self, mem: &GuestMemory, into: &Buffers) -> std::io::Result<usize> {
        let frame = self
            .0
            .borrow_mut()
            .pop_front()
            .ok_or(std::io::ErrorKind::WouldBlock)?;
        let n = frame.len().min(usize::try_from(into.len()).unwrap_or(usize::MAX));
        into.write_from(mem, &frame[..n])
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        Ok(frame.len())
    }

    fn write_frame(
        &self,
        header: &[u8],
        _mem: &GuestMemory,
        frame: &Buffers,
    ) -> std::io::Result<usize> {
        Ok(header.len() + usize::try_from(frame.len()).unwrap_or(usize::MAX))
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = guest(data);
    // After guest memory: the features accepted (2 bytes masking the
    // offered ones), then frames, each a 2-byte length and its bytes.
    let mut frames = VecDeque::new();
    let mut rest = data.get(MEMORY_BYTES..).unwrap_or_default();
    let mut features = 0;
    if let [a, b, tail @ ..] = rest {
        features = FEATURES & u64::from(u16::from_le_bytes([*a, *b]));
        rest = tail;
    }
    while let [a, b, tail @ ..] = rest {
        let len = (usize::from(*a) << 8 | usize::from(*b)).min(tail.len());
        frames.push_back(tail[..len].to_vec());
        rest = &tail[len..];
    }
    let io = Frames(RefCell::new(frames));
    let mut path = Datapath::new(io, mem, queue(0), queue(0x1000), features);
    for _ in 0..3 {
        let _ = path.receive();
        let _ = path.transmit();
    }
});

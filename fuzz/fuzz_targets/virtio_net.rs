//! virtio-net: guest queues from the fuzzer's bytes, frames from the
//! host end too; receive and transmit interleave without crashing, and
//! a frame waiting to be received is never mixed with a transmitted one.

#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;

use gureum::vmm::devices::virtio::net::{Datapath, FrameIo};
use gureum_fuzz::{MEMORY_BYTES, guest, queue};
use libfuzzer_sys::fuzz_target;

/// A host end handing over frames cut from the input.
struct Frames(RefCell<VecDeque<Vec<u8>>>);

// The datapath is used on this one thread only; FrameIo asks for Send
// because the VMM moves it to a worker.
unsafe impl Send for Frames {}

impl FrameIo for Frames {
    fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let frame = self
            .0
            .borrow_mut()
            .pop_front()
            .ok_or(std::io::ErrorKind::WouldBlock)?;
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(n)
    }

    fn write_frame(&self, frame: &[u8]) -> std::io::Result<usize> {
        Ok(frame.len())
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = guest(data);
    // After guest memory: frames, each a 2-byte length and its bytes.
    let mut frames = VecDeque::new();
    let mut rest = data.get(MEMORY_BYTES..).unwrap_or_default();
    while let [a, b, tail @ ..] = rest {
        let len = (usize::from(*a) << 8 | usize::from(*b)).min(tail.len());
        frames.push_back(tail[..len].to_vec());
        rest = &tail[len..];
    }
    let io = Frames(RefCell::new(frames));
    let mut path = Datapath::new(io, mem, queue(0), queue(0x1000));
    for _ in 0..3 {
        let _ = path.receive();
        let _ = path.transmit();
    }
});

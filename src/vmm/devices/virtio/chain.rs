//! Descriptor chains as a device sees them: walked once, checked, and
//! turned into the guest buffers the device reads and writes.
//!
//! The walk is ours rather than virtio-queue's `DescriptorChain` because
//! that one follows `VIRTQ_DESC_F_INDIRECT` tables unconditionally, and
//! no device here offers `VIRTIO_RING_F_INDIRECT_DESC`: a driver that
//! sets the flag anyway gets its chain refused, not a 65,535-entry table
//! walked. Everything else (ring indices, the used ring) stays
//! virtio-queue's.

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use crate::vmm::memory::GuestMemory;

const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Size of one split-ring descriptor in the table.
const DESC_SIZE: u64 = 16;

/// Why a chain was refused. Each fails that chain only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("descriptor {0} is outside the descriptor table")]
    IndexOutOfRange(u16),
    #[error("cannot read descriptor {0} from guest memory")]
    Unreadable(u16),
    #[error("descriptor {0} is indirect, a feature the device does not offer")]
    Indirect(u16),
    #[error("the chain is longer than the queue (a loop)")]
    Loop,
    #[error("the chain's buffers add up to more than 4 GiB")]
    TooLong,
    #[error("buffer at {addr:#x} of {len} bytes is not in guest RAM")]
    NotInRam { addr: u64, len: u32 },
    #[error("a device-readable buffer follows a device-writable one")]
    ReadAfterWrite,
}

/// One guest buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A chain's buffers: the device-readable ones, then the device-writable
/// ones, as the virtio spec orders them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub readable: Buffers,
    pub writable: Buffers,
}

/// The descriptor layout `walk` reads, as the queue registers give it.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub addr: GuestAddress,
    pub size: u16,
}

impl Table {
    /// The descriptor table of `queue`.
    pub fn of(queue: &impl virtio_queue::QueueT) -> Self {
        Self {
            addr: GuestAddress(queue.desc_table()),
            size: queue.size(),
        }
    }
}

/// Raw split-ring descriptor as it lies in guest memory.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct RawDesc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

// SAFETY: plain old data of four integers, no padding, any bit pattern valid.
unsafe impl vm_memory::ByteValued for RawDesc {}

/// Walks the chain starting at `head`: at most `table.size` descriptors,
/// no indirect ones, every buffer inside guest RAM, readable before
/// writable, 4 GiB in all at most.
pub fn walk(mem: &GuestMemory, table: Table, head: u16) -> Result<Chain, ChainError> {
    let mut chain = Chain {
        head,
        ..Chain::default()
    };
    let mut total: u32 = 0;
    let mut index = head;
    for _ in 0..table.size {
        if index >= table.size {
            return Err(ChainError::IndexOutOfRange(index));
        }
        let at = table
            .addr
            .checked_add(u64::from(index) * DESC_SIZE)
            .ok_or(ChainError::Unreadable(index))?;
        let desc: RawDesc = mem
            .read_obj(at)
            .map_err(|_| ChainError::Unreadable(index))?;
        let (addr, len, flags) = (
            u64::from_le(desc.addr),
            u32::from_le(desc.len),
            u16::from_le(desc.flags),
        );
        if flags & VIRTQ_DESC_F_INDIRECT != 0 {
            return Err(ChainError::Indirect(index));
        }
        total = total.checked_add(len).ok_or(ChainError::TooLong)?;
        let segment = Segment {
            addr: GuestAddress(addr),
            len,
        };
        if !in_ram(mem, segment) {
            return Err(ChainError::NotInRam { addr, len });
        }
        if flags & VIRTQ_DESC_F_WRITE != 0 {
            chain.writable.push(segment);
        } else if chain.writable.is_empty() {
            chain.readable.push(segment);
        } else {
            return Err(ChainError::ReadAfterWrite);
        }
        if flags & VIRTQ_DESC_F_NEXT == 0 {
            return Ok(chain);
        }
        index = u16::from_le(desc.next);
    }
    Err(ChainError::Loop)
}

/// Whether every byte of `segment` is guest RAM.
fn in_ram(mem: &GuestMemory, segment: Segment) -> bool {
    let Ok(len) = usize::try_from(segment.len) else {
        return false;
    };
    mem.get_slices(segment.addr, len).all(|slice| slice.is_ok())
}

/// A list of guest buffers read or written as one stream of bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buffers(Vec<Segment>);

impl Buffers {
    pub fn push(&mut self, segment: Segment) {
        if segment.len > 0 {
            self.0.push(segment);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Total bytes of all buffers.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Splits off the first `at` bytes; `self` keeps the rest. Returns
    /// `None` (and leaves `self` alone) when there are fewer bytes.
    pub fn split_front(&mut self, at: u64) -> Option<Buffers> {
        if at > self.len() {
            return None;
        }
        let mut front = Buffers::default();
        let mut left = at;
        let mut rest = Vec::new();
        for segment in self.0.drain(..) {
            let take = left.min(u64::from(segment.len));
            left -= take;
            let take32 = u32::try_from(take).unwrap_or(segment.len);
            if take32 > 0 {
                front.push(Segment {
                    addr: segment.addr,
                    len: take32,
                });
            }
            if take32 < segment.len {
                rest.push(Segment {
                    addr: segment.addr.unchecked_add(u64::from(take32)),
                    len: segment.len - take32,
                });
            }
        }
        self.0 = rest;
        Some(front)
    }

    /// Splits off the last `n` bytes and returns them; `self` keeps the
    /// front.
    pub fn split_back(&mut self, n: u64) -> Option<Buffers> {
        let front_len = self.len().checked_sub(n)?;
        let front = self.split_front(front_len)?;
        Some(std::mem::replace(self, front))
    }

    /// Copies the first `out.len()` bytes of the buffers into `out`.
    pub fn read_into(&self, mem: &GuestMemory, out: &mut [u8]) -> Option<()> {
        let mut filled = 0usize;
        for segment in &self.0 {
            if filled == out.len() {
                break;
            }
            let want = (out.len() - filled).min(usize::try_from(segment.len).ok()?);
            let dst = out.get_mut(filled..filled + want)?;
            mem.read_slice(dst, segment.addr).ok()?;
            filled += want;
        }
        (filled == out.len()).then_some(())
    }

    /// Copies `data` into the front of the buffers.
    pub fn write_from(&self, mem: &GuestMemory, data: &[u8]) -> Option<()> {
        let mut done = 0usize;
        for segment in &self.0 {
            if done == data.len() {
                break;
            }
            let n = (data.len() - done).min(usize::try_from(segment.len).ok()?);
            mem.write_slice(data.get(done..done + n)?, segment.addr)
                .ok()?;
            done += n;
        }
        (done == data.len()).then_some(())
    }

    /// The buffers as host iovecs over guest memory, split where a buffer
    /// crosses from one memory region into the next.
    pub fn iovecs(&self, mem: &GuestMemory) -> Option<Vec<libc::iovec>> {
        let mut iovs = Vec::with_capacity(self.0.len());
        for segment in &self.0 {
            let len = usize::try_from(segment.len).ok()?;
            for slice in mem.get_slices(segment.addr, len) {
                let slice = slice.ok()?;
                iovs.push(libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                    iov_len: slice.len(),
                });
            }
        }
        Some(iovs)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueOwnedT};

    pub const NEXT: u16 = VIRTQ_DESC_F_NEXT;
    pub const WRITE: u16 = VIRTQ_DESC_F_WRITE;

    pub fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
    }

    fn walk_one(mem: &GuestMemory, descs: &[RawDescriptor]) -> Result<Chain, ChainError> {
        let vq = MockSplitQueue::new(mem, 16);
        vq.build_desc_chain(descs).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let head = q.iter(mem).unwrap().next().unwrap().head_index();
        walk(mem, Table::of(&q), head)
    }

    #[test]
    fn a_chain_splits_into_readable_then_writable_buffers() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let chain = walk_one(
            &mem,
            &[
                desc(0x1000, 16, NEXT, 1),
                desc(0x2000, 512, NEXT | WRITE, 2),
                desc(0x3000, 1, WRITE, 0),
            ],
        )
        .unwrap();
        assert_eq!(chain.readable.len(), 16);
        assert_eq!(chain.writable.len(), 513);
        let mut w = chain.writable.clone();
        let status = w.split_back(1).unwrap();
        assert_eq!(status.segments()[0].addr, GuestAddress(0x3000));
        assert_eq!(w.len(), 512);
    }

    #[test]
    fn indirect_and_out_of_ram_and_misordered_chains_are_refused() {
        let mem = crate::vmm::memory::create(16).unwrap();
        assert_eq!(
            walk_one(&mem, &[desc(0x1000, 32, VIRTQ_DESC_F_INDIRECT, 0)]),
            Err(ChainError::Indirect(0))
        );
        assert!(matches!(
            walk_one(&mem, &[desc(0xdead_0000_0000, 16, 0, 0)]),
            Err(ChainError::NotInRam { .. })
        ));
        assert_eq!(
            walk_one(
                &mem,
                &[desc(0x1000, 1, WRITE | NEXT, 1), desc(0x2000, 1, 0, 0)]
            ),
            Err(ChainError::ReadAfterWrite)
        );
        assert_eq!(
            walk_one(
                &mem,
                &[
                    desc(0x1000, u32::MAX, NEXT, 1),
                    desc(0x1000, u32::MAX, 0, 0)
                ]
            ),
            Err(ChainError::NotInRam {
                addr: 0x1000,
                len: u32::MAX
            })
        );
    }

    #[test]
    fn split_front_cuts_inside_a_segment() {
        let mut b = Buffers::default();
        b.push(Segment {
            addr: GuestAddress(0x1000),
            len: 10,
        });
        b.push(Segment {
            addr: GuestAddress(0x2000),
            len: 10,
        });
        let front = b.split_front(15).unwrap();
        assert_eq!(front.len(), 15);
        assert_eq!(
            b.segments(),
            &[Segment {
                addr: GuestAddress(0x2005),
                len: 5
            }]
        );
        assert!(b.split_front(6).is_none());
        assert_eq!(b.len(), 5);
    }
}

//! Descriptor chains as a device sees them: walked once, checked, and
//! turned into the guest buffers the device reads and writes.
//!
//! The walk is ours rather than virtio-queue's `DescriptorChain` because
//! that one follows `VIRTQ_DESC_F_INDIRECT` tables whatever was
//! negotiated and however long the guest says they are. Here a table is
//! followed only when the driver accepted `VIRTIO_RING_F_INDIRECT_DESC`
//! (see [`Table::with_features`]); it must lie in guest RAM, hold whole
//! descriptors, no more than the queue has, none of them indirect again,
//! so a walk reads at most two queues' worth of descriptors. Everything
//! else (ring indices, the used ring) stays virtio-queue's.

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use crate::vmm::memory::GuestMemory;

const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Feature bit of indirect descriptor tables: one ring entry carries a
/// whole chain, so a request of many buffers takes one slot of the ring.
/// A device offers it and passes the accepted features to
/// [`Table::with_features`]; nothing else is needed.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// Size of one split-ring descriptor in the table.
const DESC_SIZE: u64 = 16;

/// Why a chain was refused. Each fails that chain only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("descriptor {0} is outside the descriptor table")]
    IndexOutOfRange(u16),
    #[error("cannot read descriptor {0} from guest memory")]
    Unreadable(u16),
    #[error("descriptor {0} is indirect, a feature the driver did not negotiate")]
    Indirect(u16),
    #[error("indirect descriptor {0} also has NEXT set")]
    IndirectWithNext(u16),
    #[error("entry {0} of an indirect table is itself indirect")]
    NestedIndirect(u16),
    #[error(
        "indirect table of {len} bytes is not 1 to {max} whole descriptors \
         (the queue size)"
    )]
    IndirectTableLength { len: u32, max: u16 },
    #[error("indirect table at {addr:#x} of {len} bytes is not in guest RAM")]
    IndirectTableNotInRam { addr: u64, len: u32 },
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

/// The descriptor layout `walk` reads, as the queue registers give it,
/// and whether indirect tables were negotiated.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub addr: GuestAddress,
    pub size: u16,
    pub indirect: bool,
}

impl Table {
    /// The descriptor table of `queue`, indirect descriptors refused.
    pub fn of(queue: &impl virtio_queue::QueueT) -> Self {
        Self {
            addr: GuestAddress(queue.desc_table()),
            size: queue.size(),
            indirect: false,
        }
    }

    /// Follows indirect tables if `features` (the ones the driver
    /// accepted) include [`VIRTIO_RING_F_INDIRECT_DESC`].
    pub fn with_features(self, features: u64) -> Self {
        Self {
            indirect: features & VIRTIO_RING_F_INDIRECT_DESC != 0,
            ..self
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

/// A descriptor read from a table, in host byte order.
#[derive(Debug, Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// Reads entry `index` of the `entries`-long table at `base`.
fn read_desc(
    mem: &GuestMemory,
    base: GuestAddress,
    entries: u16,
    index: u16,
) -> Result<Desc, ChainError> {
    if index >= entries {
        return Err(ChainError::IndexOutOfRange(index));
    }
    let at = base
        .checked_add(u64::from(index) * DESC_SIZE)
        .ok_or(ChainError::Unreadable(index))?;
    let raw: RawDesc = mem
        .read_obj(at)
        .map_err(|_| ChainError::Unreadable(index))?;
    Ok(Desc {
        addr: u64::from_le(raw.addr),
        len: u32::from_le(raw.len),
        flags: u16::from_le(raw.flags),
        next: u16::from_le(raw.next),
    })
}

/// Walks the chain starting at `head`: at most `table.size` descriptors
/// in the queue's table, indirect ones only as [`Table`] allows, every
/// buffer inside guest RAM, readable before writable, 4 GiB in all at
/// most.
pub fn walk(mem: &GuestMemory, table: Table, head: u16) -> Result<Chain, ChainError> {
    let mut chain = Chain {
        head,
        ..Chain::default()
    };
    let mut total: u32 = 0;
    let mut index = head;
    for _ in 0..table.size {
        let desc = read_desc(mem, table.addr, table.size, index)?;
        if desc.flags & VIRTQ_DESC_F_INDIRECT != 0 {
            if !table.indirect {
                return Err(ChainError::Indirect(index));
            }
            // The spec forbids NEXT here: the table ends the chain.
            if desc.flags & VIRTQ_DESC_F_NEXT != 0 {
                return Err(ChainError::IndirectWithNext(index));
            }
            walk_indirect(mem, table.size, desc, &mut chain, &mut total)?;
            return Ok(chain);
        }
        add(mem, desc, &mut chain, &mut total)?;
        if desc.flags & VIRTQ_DESC_F_NEXT == 0 {
            return Ok(chain);
        }
        index = desc.next;
    }
    Err(ChainError::Loop)
}

/// Walks the indirect table `desc` points at, of at most `max` entries
/// (the queue size: a chain is no longer than the queue), into `chain`.
fn walk_indirect(
    mem: &GuestMemory,
    max: u16,
    desc: Desc,
    chain: &mut Chain,
    total: &mut u32,
) -> Result<(), ChainError> {
    let bad_length = ChainError::IndirectTableLength { len: desc.len, max };
    let entries = u16::try_from(u64::from(desc.len) / DESC_SIZE).map_err(|_| bad_length.clone())?;
    if u64::from(desc.len) % DESC_SIZE != 0 || entries == 0 || entries > max {
        return Err(bad_length);
    }
    let base = GuestAddress(desc.addr);
    let whole = Segment {
        addr: base,
        len: desc.len,
    };
    if !in_ram(mem, whole) {
        return Err(ChainError::IndirectTableNotInRam {
            addr: desc.addr,
            len: desc.len,
        });
    }
    let mut index = 0u16;
    // Each entry is visited at most once in `entries` steps, so a loop
    // of `next` links ends here.
    for _ in 0..entries {
        let entry = read_desc(mem, base, entries, index)?;
        if entry.flags & VIRTQ_DESC_F_INDIRECT != 0 {
            return Err(ChainError::NestedIndirect(index));
        }
        add(mem, entry, chain, total)?;
        if entry.flags & VIRTQ_DESC_F_NEXT == 0 {
            return Ok(());
        }
        index = entry.next;
    }
    Err(ChainError::Loop)
}

/// Adds the buffer of the direct descriptor `desc` to `chain`.
fn add(
    mem: &GuestMemory,
    desc: Desc,
    chain: &mut Chain,
    total: &mut u32,
) -> Result<(), ChainError> {
    *total = total.checked_add(desc.len).ok_or(ChainError::TooLong)?;
    let segment = Segment {
        addr: GuestAddress(desc.addr),
        len: desc.len,
    };
    if !in_ram(mem, segment) {
        return Err(ChainError::NotInRam {
            addr: desc.addr,
            len: desc.len,
        });
    }
    if desc.flags & VIRTQ_DESC_F_WRITE != 0 {
        chain.writable.push(segment);
    } else if chain.writable.is_empty() {
        chain.readable.push(segment);
    } else {
        return Err(ChainError::ReadAfterWrite);
    }
    Ok(())
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

    pub const INDIRECT: u16 = VIRTQ_DESC_F_INDIRECT;

    fn walk_one(mem: &GuestMemory, descs: &[RawDescriptor]) -> Result<Chain, ChainError> {
        walk_negotiated(mem, descs, 0)
    }

    /// Walks the chain `descs` in a 16-entry queue whose driver accepted
    /// `features`.
    fn walk_negotiated(
        mem: &GuestMemory,
        descs: &[RawDescriptor],
        features: u64,
    ) -> Result<Chain, ChainError> {
        let vq = MockSplitQueue::new(mem, 16);
        vq.build_desc_chain(descs).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let head = q.iter(mem).unwrap().next().unwrap().head_index();
        walk(mem, Table::of(&q).with_features(features), head)
    }

    /// Writes `entries` as an indirect table at `at`.
    pub fn write_table(mem: &GuestMemory, at: u64, entries: &[RawDescriptor]) {
        for (i, entry) in (0u64..).zip(entries) {
            mem.write_obj(*entry, GuestAddress(at + i * DESC_SIZE))
                .unwrap();
        }
    }

    const TABLE_AT: u64 = 0x8_0000;

    /// Walks one ring entry pointing at the table `entries` (written at
    /// `TABLE_AT`) with `len` bytes, `flags` on the ring's descriptor.
    fn walk_table(
        mem: &GuestMemory,
        entries: &[RawDescriptor],
        len: u32,
        flags: u16,
    ) -> Result<Chain, ChainError> {
        write_table(mem, TABLE_AT, entries);
        walk_negotiated(
            mem,
            &[desc(TABLE_AT, len, flags, 0)],
            VIRTIO_RING_F_INDIRECT_DESC,
        )
    }

    fn table_len(entries: usize) -> u32 {
        u32::try_from(entries).unwrap() * 16
    }

    #[test]
    fn a_negotiated_indirect_table_is_walked_as_the_chain() {
        let mem = crate::vmm::memory::create(16).unwrap();
        // Entries out of table order: next links decide the order, and
        // the ring descriptor's WRITE flag is ignored.
        let entries = [
            desc(0x1000, 16, NEXT, 2),
            desc(0x3000, 1, WRITE, 0),
            desc(0x2000, 4096, NEXT | WRITE, 1),
        ];
        let chain = walk_table(&mem, &entries, table_len(3), INDIRECT | WRITE).unwrap();
        assert_eq!(
            chain.readable.segments(),
            &[Segment {
                addr: GuestAddress(0x1000),
                len: 16
            }]
        );
        let writable: Vec<u64> = chain.writable.segments().iter().map(|s| s.addr.0).collect();
        assert_eq!(writable, [0x2000, 0x3000]);
        assert_eq!(chain.writable.len(), 4097);
        // A chain may end in a table after direct descriptors.
        write_table(&mem, TABLE_AT, &entries[1..2]);
        let chain = walk_negotiated(
            &mem,
            &[desc(0x1000, 16, NEXT, 1), desc(TABLE_AT, 16, INDIRECT, 0)],
            VIRTIO_RING_F_INDIRECT_DESC,
        )
        .unwrap();
        assert_eq!((chain.readable.len(), chain.writable.len()), (16, 1));
    }

    #[test]
    fn without_the_feature_an_indirect_descriptor_is_refused() {
        let mem = crate::vmm::memory::create(16).unwrap();
        write_table(&mem, TABLE_AT, &[desc(0x1000, 16, 0, 0)]);
        assert_eq!(
            walk_one(&mem, &[desc(TABLE_AT, 16, INDIRECT, 0)]),
            Err(ChainError::Indirect(0))
        );
        // Other feature bits do not stand in for it.
        assert_eq!(
            walk_negotiated(
                &mem,
                &[desc(0x1000, 1, NEXT, 1), desc(TABLE_AT, 16, INDIRECT, 0)],
                !VIRTIO_RING_F_INDIRECT_DESC
            ),
            Err(ChainError::Indirect(1))
        );
    }

    #[test]
    fn bad_indirect_tables_are_refused() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let one = [desc(0x1000, 16, 0, 0)];
        let bad_len = |len| Err(ChainError::IndirectTableLength { len, max: 16 });
        // Zero length, not whole descriptors, longer than the queue.
        for len in [0, 8, 40, table_len(17), u32::MAX] {
            assert_eq!(walk_table(&mem, &one, len, INDIRECT), bad_len(len), "{len}");
        }
        // A table as long as the queue is fine.
        let full: Vec<_> = (1..=16u16)
            .map(|i| desc(0x1000, 1, if i < 16 { NEXT } else { 0 }, i))
            .collect();
        assert_eq!(
            walk_table(&mem, &full, table_len(16), INDIRECT).map(|c| c.readable.len()),
            Ok(16)
        );
        // Nested: an entry that is itself indirect.
        assert_eq!(
            walk_table(
                &mem,
                &[desc(0x1000, 16, NEXT, 1), desc(TABLE_AT, 16, INDIRECT, 0)],
                table_len(2),
                INDIRECT
            ),
            Err(ChainError::NestedIndirect(1))
        );
        // INDIRECT together with NEXT.
        write_table(&mem, TABLE_AT, &one);
        assert_eq!(
            walk_negotiated(
                &mem,
                &[
                    desc(TABLE_AT, 16, INDIRECT | NEXT, 1),
                    desc(0x1000, 1, 0, 0)
                ],
                VIRTIO_RING_F_INDIRECT_DESC
            ),
            Err(ChainError::IndirectWithNext(0))
        );
        // A loop inside the table, and a link past its end.
        let looped = [desc(0x1000, 1, NEXT, 1), desc(0x1000, 1, NEXT, 0)];
        assert_eq!(
            walk_table(&mem, &looped, table_len(2), INDIRECT),
            Err(ChainError::Loop)
        );
        let past = [desc(0x1000, 1, NEXT, 2), desc(0x1000, 1, 0, 0)];
        assert_eq!(
            walk_table(&mem, &past, table_len(2), INDIRECT),
            Err(ChainError::IndexOutOfRange(2))
        );
        // An entry's buffer outside guest RAM.
        assert!(matches!(
            walk_table(&mem, &[desc(0xdead_0000_0000, 16, 0, 0)], 16, INDIRECT),
            Err(ChainError::NotInRam { .. })
        ));
    }

    #[test]
    fn an_indirect_table_outside_guest_ram_is_refused() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let end = 16u64 << 20;
        for (addr, len) in [
            (0xdead_0000_0000u64, 16u32),
            (end - 16, 32),
            (u64::MAX - 15, 32),
        ] {
            assert_eq!(
                walk_negotiated(
                    &mem,
                    &[desc(addr, len, INDIRECT, 0)],
                    VIRTIO_RING_F_INDIRECT_DESC
                ),
                Err(ChainError::IndirectTableNotInRam { addr, len }),
                "{addr:#x}"
            );
        }
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

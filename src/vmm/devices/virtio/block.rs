//! virtio-blk over a raw image file: read, write, flush, get-id, and
//! read-only attachment.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};

use super::worker::Worker;
use super::{
    ActivateError, ActiveQueue, Interrupt, VirtioDevice, expect_queues, read_config_bytes,
};
use crate::vmm::memory::GuestMemory;

const VIRTIO_ID_BLOCK: u32 = 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const QUEUE_SIZE: u16 = 256;
const SECTOR_SIZE: u64 = 512;

const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;
const VIRTIO_BLK_T_GET_ID: u32 = 8;
const VIRTIO_BLK_S_OK: u8 = 0;
const VIRTIO_BLK_S_IOERR: u8 = 1;
const VIRTIO_BLK_S_UNSUPP: u8 = 2;
/// Length of the device ID string GET_ID returns.
const ID_BYTES: usize = 20;

/// Errors of opening a disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open disk image {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "disk image {path} is {len} bytes, not a multiple of 512; \
         resize it (truncate -s) to whole sectors"
    )]
    NotSectorAligned { path: PathBuf, len: u64 },
}

/// The request header at the start of every chain.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct RequestHeader {
    kind: u32,
    _reserved: u32,
    sector: u64,
}

// SAFETY: plain old data of three integers, no padding, any bit pattern valid.
unsafe impl vm_memory::ByteValued for RequestHeader {}

/// Why a request chain was refused; each makes the device broken.
#[derive(Debug, thiserror::Error)]
enum ChainError {
    #[error("invalid descriptor chain: {0:?}")]
    Descriptors(virtio_queue::Error),
    #[error("request shorter than its header")]
    NoHeader,
    #[error("request without room for its status byte")]
    NoStatus,
    #[error("invalid available ring: {0:?}")]
    AvailRing(virtio_queue::Error),
    #[error("cannot write the used ring: {0:?}")]
    UsedRing(virtio_queue::Error),
}

/// The backing file and what the guest may do with it.
#[derive(Debug)]
struct Backing {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; ID_BYTES],
}

impl Backing {
    fn in_range(&self, sector: u64, len: usize) -> bool {
        let sectors = (len as u64).div_ceil(SECTOR_SIZE);
        sector
            .checked_add(sectors)
            .is_some_and(|end| end <= self.sectors)
    }

    /// Executes one request; returns the status and the bytes written to
    /// the guest.
    fn execute(
        &self,
        header: RequestHeader,
        reader: &mut Reader<'_>,
        data: &mut Writer<'_>,
    ) -> (u8, u32) {
        let offset = header.sector.saturating_mul(SECTOR_SIZE);
        match header.kind {
            VIRTIO_BLK_T_IN => {
                let len = data.available_bytes();
                if !self.in_range(header.sector, len) {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                let mut buf = vec![0u8; len];
                if self.file.read_exact_at(&mut buf, offset).is_err()
                    || data.write_all(&buf).is_err()
                {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                (VIRTIO_BLK_S_OK, u32::try_from(len).unwrap_or(u32::MAX))
            }
            VIRTIO_BLK_T_OUT => {
                let len = reader.available_bytes();
                if self.read_only || !self.in_range(header.sector, len) {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                let mut buf = vec![0u8; len];
                if reader.read_exact(&mut buf).is_err()
                    || self.file.write_all_at(&buf, offset).is_err()
                {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                (VIRTIO_BLK_S_OK, 0)
            }
            VIRTIO_BLK_T_FLUSH => match self.file.sync_data() {
                Ok(()) => (VIRTIO_BLK_S_OK, 0),
                Err(_) => (VIRTIO_BLK_S_IOERR, 0),
            },
            VIRTIO_BLK_T_GET_ID => {
                let n = data.available_bytes().min(ID_BYTES);
                match data.write_all(self.id.get(..n).unwrap_or_default()) {
                    Ok(()) => (VIRTIO_BLK_S_OK, u32::try_from(n).unwrap_or_default()),
                    Err(_) => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        }
    }

    /// Handles one chain: header, data, status byte at the very end.
    fn handle_chain(
        &self,
        mem: &GuestMemory,
        chain: DescriptorChain<&GuestMemory>,
    ) -> Result<u32, ChainError> {
        let mut reader = Reader::new(mem, chain.clone()).map_err(ChainError::Descriptors)?;
        let mut writer = Writer::new(mem, chain).map_err(ChainError::Descriptors)?;
        let header: RequestHeader = reader.read_obj().map_err(|_| ChainError::NoHeader)?;
        let writable = writer.available_bytes();
        if writable == 0 {
            return Err(ChainError::NoStatus);
        }
        let mut status_writer = writer
            .split_at(writable - 1)
            .map_err(ChainError::Descriptors)?;
        let (status, written) = self.execute(header, &mut reader, &mut writer);
        status_writer
            .write_all(&[status])
            .map_err(|_| ChainError::NoStatus)?;
        Ok(written.saturating_add(1))
    }

    /// Serves every available request; an error means the device is broken.
    fn process(&self, mem: &GuestMemory, queue: &mut Queue) -> Result<bool, ChainError> {
        let mut used_any = false;
        loop {
            let chain = match queue.iter(mem) {
                Ok(mut iter) => iter.next(),
                Err(e) => return Err(ChainError::AvailRing(e)),
            };
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            let len = self.handle_chain(mem, chain)?;
            queue
                .add_used(mem, head, len)
                .map_err(ChainError::UsedRing)?;
            used_any = true;
        }
        Ok(used_any)
    }
}

/// A virtio block device.
#[derive(Debug)]
pub struct Block {
    name: String,
    backing: Arc<Backing>,
    config: [u8; 8],
    worker: Option<Worker>,
}

impl Block {
    /// Opens the image at `path`; `name` is for messages and the device ID.
    pub fn open(path: &Path, read_only: bool, name: &str) -> Result<Self, Error> {
        let open_err = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        if len % SECTOR_SIZE != 0 {
            return Err(Error::NotSectorAligned {
                path: path.to_path_buf(),
                len,
            });
        }
        let sectors = len / SECTOR_SIZE;
        let mut id = [0u8; ID_BYTES];
        for (dst, src) in id.iter_mut().zip(name.bytes()) {
            *dst = src;
        }
        Ok(Self {
            name: format!("virtio-blk {name}"),
            backing: Arc::new(Backing {
                file,
                sectors,
                read_only,
                id,
            }),
            config: sectors.to_le_bytes(),
            worker: None,
        })
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let ro = if self.backing.read_only {
            VIRTIO_BLK_F_RO
        } else {
            0
        };
        VIRTIO_BLK_F_FLUSH | ro
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let [ActiveQueue { queue, notify }] = expect_queues(&self.name, queues)?;
        let backing = self.backing.clone();
        let queue = Mutex::new(queue);
        let fd = notify.as_raw_fd();
        let worker = Worker::start(&self.name, vec![(fd, false)], interrupt, move |_| {
            // Consume the notification before draining the ring, so that
            // a notification racing with the drain wakes us again.
            let _ = notify.read();
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            backing
                .process(&mem, &mut queue)
                .map(|used| used && queue.needs_notification(&mem).unwrap_or(true))
        })?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        Worker::stop_slot(&mut self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const VIRTQ_DESC_F_NEXT: u16 = 1;
    const VIRTQ_DESC_F_WRITE: u16 = 2;

    fn disk(sectors: u64, read_only: bool) -> (tempfile::NamedTempFile, Block) {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(sectors * SECTOR_SIZE).unwrap();
        f.as_file().write_all_at(b"hello, disk", 512).unwrap();
        let blk = Block::open(f.path(), read_only, "vda").unwrap();
        (f, blk)
    }

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
    }

    /// Builds a queue in `mem` holding one chain of `descs`.
    fn queue_with(mem: &GuestMemory, descs: &[RawDescriptor]) -> Queue {
        let vq = MockSplitQueue::new(mem, 16);
        vq.build_desc_chain(descs).unwrap();
        vq.create_queue().unwrap()
    }

    fn header(kind: u32, sector: u64) -> RequestHeader {
        RequestHeader {
            kind,
            _reserved: 0,
            sector,
        }
    }

    const HEADER_AT: u64 = 0x10_0000;
    const DATA_AT: u64 = 0x20_0000;
    const STATUS_AT: u64 = 0x30_0000;

    /// Runs one request (header, one data buffer of `len` bytes, status)
    /// through the device and returns its status byte.
    fn request(blk: &Block, mem: &GuestMemory, kind: u32, sector: u64, len: u32) -> u8 {
        mem.write_obj(header(kind, sector), GuestAddress(HEADER_AT))
            .unwrap();
        let data_flags = if kind == VIRTIO_BLK_T_OUT {
            VIRTQ_DESC_F_NEXT
        } else {
            VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE
        };
        let mut q = queue_with(
            mem,
            &[
                desc(HEADER_AT, 16, VIRTQ_DESC_F_NEXT, 1),
                desc(DATA_AT, len, data_flags, 2),
                desc(STATUS_AT, 1, VIRTQ_DESC_F_WRITE, 0),
            ],
        );
        assert!(blk.backing.process(mem, &mut q).unwrap());
        mem.read_obj(GuestAddress(STATUS_AT)).unwrap()
    }

    #[test]
    fn reads_a_sector_into_the_guest() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        assert_eq!(
            request(&blk, &mem, VIRTIO_BLK_T_IN, 1, 512),
            VIRTIO_BLK_S_OK
        );
        let mut got = [0u8; 11];
        mem.read_slice(&mut got, GuestAddress(DATA_AT)).unwrap();
        assert_eq!(&got, b"hello, disk");
    }

    #[test]
    fn writes_reach_the_file_and_read_only_refuses() {
        for read_only in [false, true] {
            let mem = crate::vmm::memory::create(16).unwrap();
            let (f, blk) = disk(8, read_only);
            mem.write_slice(&[0xabu8; 512], GuestAddress(DATA_AT))
                .unwrap();
            let status = request(&blk, &mem, VIRTIO_BLK_T_OUT, 2, 512);
            let mut on_disk = [0u8; 512];
            f.as_file().read_exact_at(&mut on_disk, 1024).unwrap();
            if read_only {
                assert_eq!(status, VIRTIO_BLK_S_IOERR);
                assert_eq!(on_disk, [0u8; 512]);
            } else {
                assert_eq!(status, VIRTIO_BLK_S_OK);
                assert_eq!(on_disk, [0xabu8; 512]);
            }
        }
    }

    #[test]
    fn out_of_range_sector_is_an_io_error_not_a_crash() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        for sector in [u64::MAX, 8, 7] {
            let len = if sector == 7 { 1024 } else { 512 };
            let status = request(&blk, &mem, VIRTIO_BLK_T_IN, sector, len);
            assert_eq!(status, VIRTIO_BLK_S_IOERR, "sector {sector}");
        }
    }

    #[test]
    fn get_id_returns_the_device_name_and_unknown_requests_are_unsupported() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        assert_eq!(
            request(&blk, &mem, VIRTIO_BLK_T_GET_ID, 0, 20),
            VIRTIO_BLK_S_OK
        );
        let mut id = [0u8; 3];
        mem.read_slice(&mut id, GuestAddress(DATA_AT)).unwrap();
        assert_eq!(&id, b"vda");
        assert_eq!(request(&blk, &mem, 0x7777, 0, 20), VIRTIO_BLK_S_UNSUPP);
    }

    #[test]
    fn hostile_chains_break_the_device_without_touching_memory_outside_ram() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        // Data buffer far outside guest RAM.
        let mut q = queue_with(
            &mem,
            &[
                desc(0x10_0000, 16, VIRTQ_DESC_F_NEXT, 1),
                desc(
                    0xdead_0000_0000,
                    4096,
                    VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
                    2,
                ),
                desc(0x30_0000, 1, VIRTQ_DESC_F_WRITE, 0),
            ],
        );
        assert!(matches!(
            blk.backing.process(&mem, &mut q),
            Err(ChainError::Descriptors(_))
        ));
        // A chain whose lengths overflow.
        let mut q = queue_with(
            &mem,
            &[
                desc(0x10_0000, u32::MAX, VIRTQ_DESC_F_NEXT, 1),
                desc(0x10_0000, u32::MAX, VIRTQ_DESC_F_NEXT, 2),
                desc(0x30_0000, 1, VIRTQ_DESC_F_WRITE, 0),
            ],
        );
        assert!(blk.backing.process(&mem, &mut q).is_err());
        // A header-only chain: no status byte.
        mem.write_obj(header(VIRTIO_BLK_T_IN, 0), GuestAddress(0x10_0000))
            .unwrap();
        let mut q = queue_with(&mem, &[desc(0x10_0000, 16, 0, 0)]);
        assert!(matches!(
            blk.backing.process(&mem, &mut q),
            Err(ChainError::NoStatus)
        ));
        // A too-short header.
        let mut q = queue_with(
            &mem,
            &[
                desc(0x10_0000, 4, VIRTQ_DESC_F_NEXT, 1),
                desc(0x30_0000, 1, VIRTQ_DESC_F_WRITE, 0),
            ],
        );
        assert!(matches!(
            blk.backing.process(&mem, &mut q),
            Err(ChainError::NoHeader)
        ));
    }

    #[test]
    fn avail_index_beyond_the_queue_is_refused() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        let vq = MockSplitQueue::new(&mem, 16);
        let mut q: Queue = vq.create_queue().unwrap();
        // The driver claims 1000 new entries in a 16-entry ring.
        vq.avail().idx().store(1000);
        assert!(matches!(
            blk.backing.process(&mem, &mut q),
            Err(ChainError::AvailRing(_))
        ));
    }

    #[test]
    fn unaligned_image_is_refused_with_advice() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(1000).unwrap();
        let err = Block::open(f.path(), false, "vda").unwrap_err();
        assert!(err.to_string().contains("not a multiple of 512"), "{err}");
    }
}

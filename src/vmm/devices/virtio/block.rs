//! virtio-blk over a raw image file or block device: read, write, flush,
//! get-id, discard and write-zeroes (holes punched in the image), and
//! read-only attachment.
//!
//! Data moves straight between the file and the guest's buffers (iovecs
//! over guest memory): the VMM copies nothing, whatever size the guest
//! asks for. Each queue's worker hands the reads and writes it finds to
//! an io_uring together, up to `RING_DEPTH` in flight, and returns them
//! used as they complete; where the host has no io_uring (an old kernel,
//! or one that refuses it), it serves them one at a time with
//! preadv/pwritev. Other requests are served at once. A request is
//! capped at `SEG_MAX` buffers of `SIZE_MAX` bytes, which the device
//! advertises; a request it cannot serve is completed with an error
//! status and the queue carries on. Images are locked (flock) so that two
//! VMMs never write one.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::FallocateFlags;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::ByteValued;
use vmm_sys_util::eventfd::EventFd;

pub use super::QueueError;
use super::chain::{self, Buffers, Chain, Table, VIRTIO_RING_F_INDIRECT_DESC};
use super::counters::BlockCounters;
use super::rate_limit::{RateLimit, Throttle};
use super::uring::{self, Direction, Ring, Transfer};
use super::worker::{Retired, Worker, Workers};
use super::{
    ActivateError, ActiveQueue, DeviceMetrics, Drained, Interrupt, ResetError,
    VIRTIO_RING_F_EVENT_IDX, VirtioDevice, drain_quietly, read_config_bytes, signal_early,
};
use crate::vmm::memory::GuestMemory;
use crate::vmm::sandbox::seccomp::ThreadKind;

const VIRTIO_ID_BLOCK: u32 = 2;
const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const VIRTIO_BLK_F_MQ: u64 = 1 << 12;
const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;
const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;
const QUEUE_SIZE: u16 = 256;
/// Most request queues a disk has: one per vCPU up to this, each served
/// by its own worker, so requests from different vCPUs are served in
/// parallel.
pub const MAX_QUEUES: u16 = 4;
const SECTOR_SIZE: u64 = 512;
/// Largest buffer of a request, advertised as `size_max`.
pub const SIZE_MAX: u32 = 1 << 20;
/// Most data buffers in a request, advertised as `seg_max` (the header
/// and status take two more descriptors of the queue).
pub const SEG_MAX: u32 = 126;
/// Largest data transfer of one request: what `size_max` and `seg_max`
/// allow a driver. Larger requests fail with an I/O error.
pub const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;

const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;
const VIRTIO_BLK_T_GET_ID: u32 = 8;
const VIRTIO_BLK_T_DISCARD: u32 = 11;
const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;
/// Length of the device ID string GET_ID returns.
const ID_BYTES: usize = 20;
/// Size of the request header.
const HEADER_BYTES: u64 = 16;
/// Size of the device configuration space, up to the write-zeroes fields.
const CONFIG_BYTES: usize = 60;
/// Granularity of discards the driver is told, in sectors: 4 KiB, the
/// block a file system frees.
const DISCARD_ALIGNMENT: u32 = 8;
/// A range's flag asking write-zeroes to deallocate the sectors.
const RANGE_F_UNMAP: u32 = 1;
/// Zeros written where a file system cannot zero a range in place.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);

/// Errors of opening a disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open disk image {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the size of block device {path}: {source}")]
    DeviceSize { path: PathBuf, source: nix::Error },
    #[error(
        "disk image {path} is {len} bytes, not a multiple of 512; \
         resize it (truncate -s) to whole sectors"
    )]
    NotSectorAligned { path: PathBuf, len: u64 },
    #[error(
        "disk image {path} is in use{holder}: another VMM has it open {how}; \
         stop that VM first, or attach the image read-only (,ro) if it is only read"
    )]
    Locked {
        path: PathBuf,
        holder: String,
        how: &'static str,
    },
    #[error("cannot lock disk image {path}: {source}")]
    Lock { path: PathBuf, source: nix::Error },
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

/// The one range of a discard or write-zeroes request (the device
/// advertises one segment per request).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Range {
    sector: u64,
    sectors: u32,
    flags: u32,
}

// SAFETY: plain old data of three integers, no padding, any bit pattern valid.
unsafe impl vm_memory::ByteValued for Range {}

/// The backing file and what the guest may do with it.
#[derive(Debug)]
struct Backing {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; ID_BYTES],
    counters: Arc<BlockCounters>,
}

/// What starting a request came to.
#[derive(Debug)]
enum Started {
    /// It is done (or refused): the used length to return.
    Done(u16, u32),
    /// A read or write to run; [`Backing::finish`] completes it.
    Transfer(Pending, Transfer),
}

/// A read or write on its way: the chain it came in and where its
/// status goes.
#[derive(Debug)]
struct Pending {
    head: u16,
    status: Buffers,
    len: u64,
}

/// What executing a request's header came to.
#[derive(Debug)]
enum Outcome {
    /// The status and the bytes written into the guest.
    Done(u8, u64),
    /// A read or write to run.
    Transfer(Transfer),
}

impl Backing {
    fn in_range(&self, sector: u64, len: u64) -> bool {
        sector
            .checked_add(len.div_ceil(SECTOR_SIZE))
            .is_some_and(|end| end <= self.sectors)
    }

    /// Executes one request whose header is `header`; `data` is the data
    /// buffers (device-readable for a write, writable otherwise). A read
    /// or write comes back as the transfer to run; anything else is done.
    fn execute(&self, mem: &GuestMemory, header: RequestHeader, data: &Buffers) -> Outcome {
        let len = data.len();
        let done = |code, written| Outcome::Done(code, written);
        match header.kind {
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => {
                let write = header.kind == VIRTIO_BLK_T_OUT;
                if len > MAX_REQUEST_BYTES
                    || !self.in_range(header.sector, len)
                    || (write && self.read_only)
                {
                    return done(VIRTIO_BLK_S_IOERR, 0);
                }
                let direction = if write {
                    Direction::Write
                } else {
                    Direction::Read
                };
                let offset = header.sector.saturating_mul(SECTOR_SIZE);
                match Transfer::new(mem, data, offset, direction) {
                    Some(transfer) => Outcome::Transfer(transfer),
                    None => done(VIRTIO_BLK_S_IOERR, 0),
                }
            }
            VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
                done(self.zero_or_discard(mem, header.kind, data), 0)
            }
            VIRTIO_BLK_T_FLUSH => match self.file.sync_data() {
                Ok(()) => done(VIRTIO_BLK_S_OK, 0),
                Err(_) => done(VIRTIO_BLK_S_IOERR, 0),
            },
            VIRTIO_BLK_T_GET_ID => {
                let n = usize::try_from(len).unwrap_or(ID_BYTES).min(ID_BYTES);
                match data.write_from(mem, self.id.get(..n).unwrap_or_default()) {
                    Some(()) => done(VIRTIO_BLK_S_OK, n as u64),
                    None => done(VIRTIO_BLK_S_IOERR, 0),
                }
            }
            _ => done(VIRTIO_BLK_S_UNSUPP, 0),
        }
    }

    /// Executes a discard or write-zeroes request: its one range is
    /// punched out of the image (a discard, or write-zeroes that may
    /// unmap) or zeroed in place. Returns the status.
    fn zero_or_discard(&self, mem: &GuestMemory, kind: u32, data: &Buffers) -> u8 {
        let mut range = Range::default();
        if self.read_only
            || data.len() != std::mem::size_of::<Range>() as u64
            || data.read_into(mem, range.as_mut_slice()).is_none()
        {
            return VIRTIO_BLK_S_IOERR;
        }
        let (sector, flags) = (u64::from_le(range.sector), u32::from_le(range.flags));
        let len = u64::from(u32::from_le(range.sectors)) * SECTOR_SIZE;
        let unmap = flags & RANGE_F_UNMAP != 0;
        // Unknown flags, and unmap on a discard, are refused by the spec.
        if flags & !RANGE_F_UNMAP != 0 || (kind == VIRTIO_BLK_T_DISCARD && unmap) {
            return VIRTIO_BLK_S_UNSUPP;
        }
        if !self.in_range(sector, len) {
            return VIRTIO_BLK_S_IOERR;
        }
        let offset = sector.saturating_mul(SECTOR_SIZE);
        let done = if kind == VIRTIO_BLK_T_DISCARD {
            // A discard is a hint: where the image cannot free blocks,
            // they stay as they are.
            match self.fallocate(FallocateFlags::FALLOC_FL_PUNCH_HOLE, offset, len) {
                Err(nix::errno::Errno::EOPNOTSUPP) => Ok(()),
                other => other.map_err(std::io::Error::from),
            }
        } else {
            self.write_zeroes(offset, len, unmap)
        };
        match done {
            Ok(()) => VIRTIO_BLK_S_OK,
            Err(_) => VIRTIO_BLK_S_IOERR,
        }
    }

    /// Zeroes `len` bytes at `offset`: a hole when the driver allows
    /// unmapping, else zeroed in place; written out where the file
    /// system can do neither (tmpfs zeroes no range in place).
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> std::io::Result<()> {
        let mode = if unmap {
            FallocateFlags::FALLOC_FL_PUNCH_HOLE
        } else {
            FallocateFlags::FALLOC_FL_ZERO_RANGE
        };
        match self.fallocate(mode, offset, len) {
            Err(nix::errno::Errno::EOPNOTSUPP) => {}
            other => return other.map_err(std::io::Error::from),
        }
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            let zeros = ZEROS.get(..n).unwrap_or_default();
            self.file.write_all_at(zeros, offset.saturating_add(done))?;
            done += n as u64;
        }
        Ok(())
    }

    /// fallocate with `mode` (and the file's size kept) over `len` bytes
    /// at `offset`.
    fn fallocate(
        &self,
        mode: FallocateFlags,
        offset: u64,
        len: u64,
    ) -> Result<(), nix::errno::Errno> {
        let at = libc::off_t::try_from(offset).map_err(|_| nix::errno::Errno::EINVAL)?;
        let len = libc::off_t::try_from(len).map_err(|_| nix::errno::Errno::EINVAL)?;
        nix::fcntl::fallocate(
            &self.file,
            mode | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            at,
            len,
        )
    }

    /// Starts serving one chain: header, data, status byte at the very
    /// end. A request that cannot be served gets an error status, a
    /// chain without room for one is returned with nothing written; a
    /// read or write comes back to be run.
    fn start(&self, mem: &GuestMemory, mut chain: Chain) -> Started {
        self.counters.requests.inc();
        let head = chain.head;
        let Some(status) = chain.writable.split_back(1) else {
            self.counters.errors.inc();
            return Started::Done(head, 0);
        };
        let outcome = match chain.readable.split_front(HEADER_BYTES) {
            Some(header_buf) => {
                let mut header = RequestHeader::default();
                match header_buf.read_into(mem, header.as_mut_slice()) {
                    Some(()) => {
                        let header = RequestHeader {
                            kind: u32::from_le(header.kind),
                            _reserved: 0,
                            sector: u64::from_le(header.sector),
                        };
                        let reads_guest = matches!(
                            header.kind,
                            VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES
                        );
                        let data = if reads_guest {
                            &chain.readable
                        } else {
                            &chain.writable
                        };
                        self.execute(mem, header, data)
                    }
                    None => Outcome::Done(VIRTIO_BLK_S_IOERR, 0),
                }
            }
            None => Outcome::Done(VIRTIO_BLK_S_IOERR, 0),
        };
        match outcome {
            Outcome::Done(code, written) => {
                Started::Done(head, self.set_status(mem, &status, code, written))
            }
            Outcome::Transfer(transfer) => {
                let len = transfer.remaining();
                Started::Transfer(Pending { head, status, len }, transfer)
            }
        }
    }

    /// Completes a read or write that `result` says ended so; returns
    /// the used length.
    fn finish(
        &self,
        mem: &GuestMemory,
        pending: &Pending,
        direction: Direction,
        result: std::io::Result<()>,
    ) -> u32 {
        let (code, written) = match (result, direction) {
            (Err(_), _) => (VIRTIO_BLK_S_IOERR, 0),
            (Ok(()), Direction::Write) => {
                self.counters.write_bytes.add(pending.len);
                (VIRTIO_BLK_S_OK, 0)
            }
            (Ok(()), Direction::Read) => {
                self.counters.read_bytes.add(pending.len);
                (VIRTIO_BLK_S_OK, pending.len)
            }
        };
        self.set_status(mem, &pending.status, code, written)
    }

    /// Writes the status byte; returns the used length of a request that
    /// wrote `written` bytes into the guest before it.
    fn set_status(&self, mem: &GuestMemory, status: &Buffers, code: u8, written: u64) -> u32 {
        if code != VIRTIO_BLK_S_OK {
            self.counters.errors.inc();
        }
        // The status buffer was checked to be guest RAM by the walk.
        let _ = status.write_from(mem, &[code]);
        u32::try_from(written.saturating_add(1)).unwrap_or(u32::MAX)
    }
}

/// Serves one virtio-blk queue: pops requests, honours the rate limit,
/// returns them used. The worker runs one; so can a test or a fuzzer.
#[derive(Debug)]
pub struct BlockQueue {
    backing: Arc<Backing>,
    mem: GuestMemory,
    queue: Queue,
    /// The features the driver accepted: whether chains may be indirect.
    features: u64,
    throttle: Option<Throttle>,
    /// Where completions are signalled in the middle of a pass (with
    /// EVENT_IDX); without it, only the pass's end signals.
    interrupt: Option<Arc<Interrupt>>,
    /// A request the rate limit held back, served first next time.
    held: Option<Chain>,
    /// Set when the device is reset: stop before the next request.
    retired: Retired,
    /// Reads and writes in flight together, where the host has io_uring;
    /// without, each is served at once.
    ring: Option<Ring<Pending>>,
}

impl BlockQueue {
    /// Serves every available request (or until the rate limit holds
    /// one back). Returns whether the driver wants an interrupt for what
    /// the pass used and has not signalled yet.
    ///
    /// The driver's kicks are off while the ring is drained and back on
    /// only once it is seen empty after re-arming them, so requests the
    /// driver adds meanwhile cost it no exit and are never missed.
    pub fn process(&mut self) -> Result<bool, QueueError> {
        drain_quietly(self, |s| (&mut s.queue, &s.mem), Self::drain)?;
        Ok(self.queue.needs_notification(&self.mem).unwrap_or(true))
    }

    /// Serves requests until the ring is empty or the rate limit or a
    /// reset stops it. Reads and writes go to the io_uring, if there is
    /// one, and are submitted together before it returns; what they
    /// finished by then is returned used.
    fn drain(&mut self) -> Result<Drained, QueueError> {
        let drained = self.pop_and_start()?;
        if !self.retired.is_set() {
            self.submit_and_reap()?;
        }
        Ok(drained)
    }

    fn pop_and_start(&mut self) -> Result<Drained, QueueError> {
        loop {
            if self.retired.is_set() {
                return Ok(Drained::Paused);
            }
            if self.ring.as_ref().is_some_and(Ring::is_full) {
                // As deep as it goes: take back what is done, else wait
                // for the completions in the worker's loop, where a reset
                // is seen at once and cancels them, not in the kernel.
                self.submit_and_reap()?;
                if self.ring.as_ref().is_some_and(Ring::is_full) {
                    return Ok(Drained::Paused);
                }
                continue;
            }
            let chain = match self.held.take() {
                Some(chain) => chain,
                None => {
                    let next = match self.queue.iter(&self.mem) {
                        Ok(mut iter) => iter.next().map(|c| c.head_index()),
                        Err(e) => return Err(QueueError::AvailRing(e)),
                    };
                    let Some(head) = next else {
                        return Ok(Drained::Empty);
                    };
                    match chain::walk(
                        &self.mem,
                        Table::of(&self.queue).with_features(self.features),
                        head,
                    ) {
                        Ok(chain) => chain,
                        Err(_) => {
                            // Nothing of it can be trusted, not even where
                            // a status would go: give it back untouched.
                            self.backing.counters.errors.inc();
                            self.complete(head, 0)?;
                            continue;
                        }
                    }
                }
            };
            if let Some(throttle) = &mut self.throttle {
                let bytes = chain.readable.len() + chain.writable.len();
                if !throttle.admit(bytes) {
                    self.backing.counters.throttled.inc();
                    self.held = Some(chain);
                    return Ok(Drained::Paused);
                }
            }
            let (head, len) = match (self.backing.start(&self.mem, chain), &mut self.ring) {
                (Started::Done(head, len), _) => (head, len),
                (Started::Transfer(pending, transfer), Some(ring)) => {
                    match ring.push(self.backing.file.as_raw_fd(), pending, transfer) {
                        Ok(()) => continue,
                        Err((pending, transfer)) => self.run_now(pending, transfer),
                    }
                }
                (Started::Transfer(pending, transfer), None) => self.run_now(pending, transfer),
            };
            if self.retired.is_set() {
                // Reset while it ran: forgotten, as the ring's are.
                return Ok(Drained::Paused);
            }
            self.complete(head, len)?;
        }
    }

    /// Runs a transfer at once; returns its head and used length.
    fn run_now(&self, pending: Pending, mut transfer: Transfer) -> (u16, u32) {
        let result = transfer.run(self.backing.file.as_raw_fd(), &self.mem);
        let used = self
            .backing
            .finish(&self.mem, &pending, transfer.direction(), result);
        (pending.head, used)
    }

    /// Hands the queued transfers to the kernel and returns used those
    /// it finished. A transfer the kernel cut short is finished at once.
    /// The driver is told once for them all (with EVENT_IDX, if it
    /// asked): they are ready together, and each interrupt costs the
    /// guest exits.
    fn submit_and_reap(&mut self) -> Result<(), QueueError> {
        let Some(ring) = &mut self.ring else {
            return Ok(());
        };
        ring.submit(false).map_err(QueueError::Io)?;
        let mut used = false;
        while let Some(done) = self.ring.as_mut().and_then(Ring::next_completed) {
            if self.retired.is_set() {
                // The driver reset the device: its requests are forgotten.
                continue;
            }
            let uring::Completed {
                tag: pending,
                mut transfer,
                result,
            } = done;
            let result = match result {
                Ok(n) if n as u64 >= transfer.remaining() => Ok(()),
                Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    transfer.advance(n);
                    transfer.run(self.backing.file.as_raw_fd(), &self.mem)
                }
                Err(e) => Err(e),
            };
            let len = self
                .backing
                .finish(&self.mem, &pending, transfer.direction(), result);
            self.add_used(pending.head, len)?;
            used = true;
        }
        if used {
            signal_early(&mut self.queue, &self.mem, self.interrupt.as_deref());
        }
        Ok(())
    }

    /// Returns `head` used with `len` bytes written. With EVENT_IDX the
    /// driver is told at once when it asked to be (`used_event`), so it
    /// works on this completion while the device serves the next
    /// request; without, the end of the pass signals once for all.
    fn complete(&mut self, head: u16, len: u32) -> Result<(), QueueError> {
        self.add_used(head, len)?;
        signal_early(&mut self.queue, &self.mem, self.interrupt.as_deref());
        Ok(())
    }

    /// Returns `head` used with `len` bytes written, without telling the
    /// driver.
    fn add_used(&mut self, head: u16, len: u32) -> Result<(), QueueError> {
        self.queue
            .add_used(&self.mem, head, len)
            .map_err(QueueError::UsedRing)
    }

    /// Called when the rate limit's timer fired.
    fn timer_fired(&mut self) {
        if let Some(throttle) = &mut self.throttle {
            throttle.timer_fired();
        }
    }
}

/// Locks the image for this process: exclusively when the guest may
/// write it, shared when it may only read it.
fn lock(file: &File, path: &Path, read_only: bool) -> Result<(), Error> {
    let (arg, how) = if read_only {
        (nix::fcntl::FlockArg::LockSharedNonblock, "for writing")
    } else {
        (
            nix::fcntl::FlockArg::LockExclusiveNonblock,
            "for reading or writing",
        )
    };
    #[allow(deprecated)] // nix's Flock owns the file; this one is shared.
    match nix::fcntl::flock(file.as_raw_fd(), arg) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EWOULDBLOCK) => Err(Error::Locked {
            path: path.to_path_buf(),
            holder: lock_holder(file)
                .map(|pid| format!(" by process {pid}"))
                .unwrap_or_default(),
            how,
        }),
        Err(source) => Err(Error::Lock {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The process holding a flock on `file`, from /proc/locks.
fn lock_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        let (kind, pid, inode) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        (*kind == "FLOCK" && *inode == id)
            .then(|| pid.parse().ok())
            .flatten()
    })
}

/// Size in bytes of the image or block device behind `file`.
fn disk_size(file: &File, path: &Path) -> Result<u64, Error> {
    let meta = file.metadata().map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_block_device() {
        return Ok(meta.len());
    }
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which
    // points at `size`, alive for the call.
    unsafe { blk_getsize64(file.as_raw_fd(), &mut size) }.map_err(|source| Error::DeviceSize {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(size)
}

/// The device configuration space (virtio 1.2, 5.2.4) of a disk of
/// `sectors` with `queues` request queues: capacity, request caps, and
/// one range per discard or write-zeroes request, of any length,
/// write-zeroes allowed to unmap.
fn config_space(sectors: u64, queues: u16) -> [u8; CONFIG_BYTES] {
    let mut config = [0u8; CONFIG_BYTES];
    let fields: [(usize, &[u8]); 10] = [
        (0, &sectors.to_le_bytes()),
        (8, &SIZE_MAX.to_le_bytes()),
        (12, &SEG_MAX.to_le_bytes()),
        (34, &queues.to_le_bytes()),
        (36, &u32::MAX.to_le_bytes()),
        (40, &1u32.to_le_bytes()),
        (44, &DISCARD_ALIGNMENT.to_le_bytes()),
        (48, &u32::MAX.to_le_bytes()),
        (52, &1u32.to_le_bytes()),
        (56, &[1]),
    ];
    for (at, bytes) in fields {
        if let Some(dst) = config.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    config
}

/// A virtio block device.
#[derive(Debug)]
pub struct Block {
    name: String,
    backing: Arc<Backing>,
    config: [u8; CONFIG_BYTES],
    limit: RateLimit,
    /// Request queues asked for; see [`Block::queue_count`].
    queues: u16,
    /// The maximum size of each queue the device has.
    queue_sizes: Vec<u16>,
    /// One per queue the driver set up; after a reset, those still
    /// finishing (see [`Block::stop_workers`]).
    workers: Workers,
}

impl Block {
    /// Opens and locks the image (or block device) at `path`; `name` is
    /// for messages and the device ID.
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
        lock(&file, path, read_only)?;
        let len = disk_size(&file, path)?;
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
        let config = config_space(sectors, 1);
        Ok(Self {
            name: format!("virtio-blk {name}"),
            backing: Arc::new(Backing {
                file,
                sectors,
                read_only,
                id,
                counters: Arc::default(),
            }),
            config,
            limit: RateLimit::default(),
            queues: 1,
            queue_sizes: vec![QUEUE_SIZE],
            workers: Workers::default(),
        })
    }

    /// Holds the guest to `limit` (bytes and requests per second).
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.limit = limit;
        self.set_queue_count();
        self
    }

    /// Asks for `queues` request queues (one per vCPU is what a driver
    /// uses best); see [`Block::queue_count`].
    pub fn with_queues(mut self, queues: u16) -> Self {
        self.queues = queues;
        self.set_queue_count();
        self
    }

    /// The request queues the device has: as many as asked, 1 to
    /// [`MAX_QUEUES`]; one when rate-limited, so that the limit stays
    /// one budget served by one worker.
    pub fn queue_count(&self) -> u16 {
        if self.limit.is_unlimited() {
            self.queues.clamp(1, MAX_QUEUES)
        } else {
            1
        }
    }

    fn set_queue_count(&mut self) {
        let count = self.queue_count();
        self.queue_sizes = vec![QUEUE_SIZE; usize::from(count)];
        self.config = config_space(self.backing.sectors, count);
    }

    /// Capacity in 512-byte sectors, as the guest sees it.
    pub fn sectors(&self) -> u64 {
        self.backing.sectors
    }

    /// A server for `queue`, without a rate limit: what the worker runs,
    /// for tests and fuzzing.
    pub fn queue_server(&self, mem: GuestMemory, queue: Queue) -> BlockQueue {
        BlockQueue {
            backing: self.backing.clone(),
            mem,
            queue,
            features: 0,
            throttle: None,
            interrupt: None,
            held: None,
            retired: Retired::default(),
            ring: None,
        }
    }
}

/// Worker event sources, in order.
const NOTIFY: usize = 0;
const COMPLETIONS: usize = 1;
const TIMER: usize = 2;
/// Most reads and writes one queue has in flight in its io_uring.
const RING_DEPTH: u16 = 64;

impl BlockQueue {
    /// Serves reads and writes through an io_uring from now on, which
    /// signals `completions` for those it finishes later than their
    /// submission. Where the host has none (an old kernel, or one that
    /// refuses it), the queue goes on serving them one at a time.
    /// `depth` reads and writes at most are in flight.
    pub fn use_io_uring(&mut self, depth: u16, completions: RawFd) -> Result<(), uring::Error> {
        self.ring = Some(Ring::new(self.mem.clone(), depth, completions)?);
        Ok(())
    }
}

impl Block {
    /// Starts the worker named `name` serving `queue`, woken by
    /// `notify`, the io_uring's completions and the rate limit's timer,
    /// if the disk has one.
    fn start_worker(
        &self,
        name: &str,
        mem: &GuestMemory,
        features: u64,
        queue: Queue,
        notify: EventFd,
        interrupt: &Arc<Interrupt>,
    ) -> Result<Worker, ActivateError> {
        let worker_err = |source| ActivateError::Worker {
            device: name.to_string(),
            source,
        };
        let mut server = self.queue_server(mem.clone(), queue);
        server.features = features;
        server.interrupt = Some(interrupt.clone());
        let retired = server.retired.clone();
        let completions = EventFd::new(libc::EFD_NONBLOCK).map_err(worker_err)?;
        let mut sources = vec![
            (notify.as_raw_fd(), false),
            (completions.as_raw_fd(), false),
        ];
        if !self.limit.is_unlimited() {
            let throttle = Throttle::new(self.limit).map_err(worker_err)?;
            sources.push((throttle.timer_fd(), false));
            server.throttle = Some(throttle);
        }
        let interrupt = interrupt.clone();
        let name = name.to_string();
        let mut ring_tried = false;
        Worker::start(
            &name.clone(),
            ThreadKind::BlockWorker,
            sources,
            interrupt,
            retired,
            move |source, _| {
                // The ring is made on the worker's thread, the only one
                // whose seccomp filter lets it drive one.
                if !std::mem::replace(&mut ring_tried, true) {
                    if let Err(e) = server.use_io_uring(RING_DEPTH, completions.as_raw_fd()) {
                        eprintln!("gureum: {name}: {e}; requests are served one at a time");
                    }
                }
                match source {
                    // Consume the notification before draining the ring, so
                    // that a notification racing with the drain wakes us again.
                    NOTIFY => drop(notify.read()),
                    COMPLETIONS => drop(completions.read()),
                    TIMER => server.timer_fired(),
                    _ => {}
                }
                server.process()
            },
        )
    }
}

impl Block {
    /// Retires the workers and waits, within the reset bound, until each
    /// has ended: it returned no used buffer after the reset began, and
    /// its reads and writes in flight are cancelled or done (a worker's
    /// ring cancels them as it drops, waits for those past cancelling,
    /// and forgets their completions). Those still running at the bound
    /// are kept, to be waited for again.
    fn stop_workers(&mut self) -> Result<(), ResetError> {
        self.workers.stop(&self.name)
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
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        // A read-only disk says so, and is offered nothing that writes.
        let access = if self.backing.read_only {
            VIRTIO_BLK_F_RO
        } else {
            VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES
        };
        let mq = if self.queue_sizes.len() > 1 {
            VIRTIO_BLK_F_MQ
        } else {
            0
        };
        VIRTIO_BLK_F_FLUSH
            | VIRTIO_BLK_F_SIZE_MAX
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | mq
            | access
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn metrics(&self) -> Arc<dyn DeviceMetrics> {
        self.backing.counters.clone()
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        // A driver uses as many queues as it has vCPUs, or one without
        // MQ; it may not use more than the device has.
        let count = queues.len();
        if count == 0 || count > self.queue_sizes.len() {
            return Err(ActivateError::QueueCount {
                device: self.name.clone(),
                got: count,
                want: self.queue_sizes.len(),
            });
        }
        // Two workers never serve a queue at once.
        self.stop_workers()?;
        for (i, ActiveQueue { queue, notify }) in queues.into_iter().enumerate() {
            let name = if count == 1 {
                self.name.clone()
            } else {
                format!("{} q{i}", self.name)
            };
            match self.start_worker(&name, &mem, features, queue, notify, &interrupt) {
                Ok(worker) => self.workers.push(worker),
                Err(e) => {
                    self.workers.retire();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), ResetError> {
        self.stop_workers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::chain::tests::{INDIRECT, NEXT, WRITE, desc, write_table};
    use crate::vmm::devices::virtio::uring::tests::PipeGuard;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::time::Duration;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Address, Bytes, GuestAddress};

    fn disk(sectors: u64, read_only: bool) -> (tempfile::NamedTempFile, Block) {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(sectors * SECTOR_SIZE).unwrap();
        f.as_file().write_all_at(b"hello, disk", 512).unwrap();
        let blk = Block::open(f.path(), read_only, "vda").unwrap();
        (f, blk)
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

    /// Serves the chains `descs` (split where NEXT is clear) and returns
    /// the used ring's lengths.
    fn serve(blk: &Block, mem: &GuestMemory, descs: &[RawDescriptor]) -> Vec<u32> {
        let vq = MockSplitQueue::new(mem, 16);
        vq.add_desc_chains(descs, 0).unwrap();
        let mut server = blk.queue_server(mem.clone(), vq.create_queue().unwrap());
        assert!(server.process().unwrap());
        let used = vq.used().idx().load();
        (0..used)
            .map(|i| {
                let elem = vq.used().ring().ref_at(i.into()).unwrap().load();
                elem.len()
            })
            .collect()
    }

    fn request_descs(kind: u32, len: u32) -> [RawDescriptor; 3] {
        let reads_guest = matches!(
            kind,
            VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES
        );
        let data_flags = if reads_guest { NEXT } else { NEXT | WRITE };
        [
            desc(HEADER_AT, 16, NEXT, 1),
            desc(DATA_AT, len, data_flags, 2),
            desc(STATUS_AT, 1, WRITE, 0),
        ]
    }

    /// Runs one request (header, one data buffer of `len` bytes, status)
    /// through the device and returns its status byte.
    fn request(blk: &Block, mem: &GuestMemory, kind: u32, sector: u64, len: u32) -> u8 {
        mem.write_obj(header(kind, sector), GuestAddress(HEADER_AT))
            .unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS_AT)).unwrap();
        serve(blk, mem, &request_descs(kind, len));
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
    fn a_request_spread_over_many_buffers_reads_them_in_order() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (f, blk) = disk(8, false);
        let pattern: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        f.as_file().write_all_at(&pattern, 0).unwrap();
        mem.write_obj(header(VIRTIO_BLK_T_IN, 0), GuestAddress(HEADER_AT))
            .unwrap();
        // Header split over two buffers, data over three of odd sizes.
        let used = serve(
            &blk,
            &mem,
            &[
                desc(HEADER_AT, 5, NEXT, 1),
                desc(HEADER_AT + 5, 11, NEXT, 2),
                desc(DATA_AT, 100, NEXT | WRITE, 3),
                desc(DATA_AT + 0x1000, 700, NEXT | WRITE, 4),
                desc(DATA_AT + 0x2000, 224, NEXT | WRITE, 5),
                desc(STATUS_AT, 1, WRITE, 0),
            ],
        );
        assert_eq!(used, [1025]);
        let mut got = vec![0u8; 1024];
        mem.read_slice(&mut got[..100], GuestAddress(DATA_AT))
            .unwrap();
        mem.read_slice(&mut got[100..800], GuestAddress(DATA_AT + 0x1000))
            .unwrap();
        mem.read_slice(&mut got[800..], GuestAddress(DATA_AT + 0x2000))
            .unwrap();
        assert_eq!(got, pattern);
    }

    #[test]
    fn an_indirect_request_takes_one_ring_entry_once_negotiated() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        mem.write_obj(header(VIRTIO_BLK_T_IN, 1), GuestAddress(HEADER_AT))
            .unwrap();
        let table_at = 0x40_0000;
        write_table(&mem, table_at, &request_descs(VIRTIO_BLK_T_IN, 512));
        for (features, want_status, want_used) in [
            (VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_BLK_S_OK, 513),
            // A driver that did not accept the feature gets its chain
            // back untouched.
            (0, 0xff, 0),
        ] {
            mem.write_obj(0xffu8, GuestAddress(STATUS_AT)).unwrap();
            let vq = MockSplitQueue::new(&mem, 16);
            vq.add_desc_chains(&[desc(table_at, 48, INDIRECT, 0)], 0)
                .unwrap();
            let mut server = blk.queue_server(mem.clone(), vq.create_queue().unwrap());
            server.features = features;
            server.process().unwrap();
            let used = vq.used().ring().ref_at(0).unwrap().load();
            assert_eq!(used.len(), want_used, "{features:#x}");
            assert_eq!(
                mem.read_obj::<u8>(GuestAddress(STATUS_AT)).unwrap(),
                want_status
            );
        }
        let mut got = [0u8; 11];
        mem.read_slice(&mut got, GuestAddress(DATA_AT)).unwrap();
        assert_eq!(&got, b"hello, disk");
        assert_ne!(blk.features() & VIRTIO_RING_F_INDIRECT_DESC, 0);
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
    fn a_request_over_the_cap_fails_without_touching_its_buffers() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(8 << 30).unwrap();
        let blk = Block::open(f.path(), false, "vda").unwrap();
        mem.write_obj(header(VIRTIO_BLK_T_IN, 0), GuestAddress(HEADER_AT))
            .unwrap();
        mem.write_slice(&[0x5a; 4096], GuestAddress(DATA_AT))
            .unwrap();
        // Eight 16 MiB buffers, all on the same guest pages: 128 MiB,
        // over the 126 x 1 MiB the device advertises.
        let mut descs = vec![desc(HEADER_AT, 16, NEXT, 1)];
        for i in 0..8u16 {
            descs.push(desc(0, 16 << 20, NEXT | WRITE, i + 2));
        }
        descs.push(desc(STATUS_AT, 1, WRITE, 0));
        assert_eq!(serve(&blk, &mem, &descs), [1]);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(STATUS_AT)).unwrap(),
            VIRTIO_BLK_S_IOERR
        );
        let mut untouched = [0u8; 4096];
        mem.read_slice(&mut untouched, GuestAddress(DATA_AT))
            .unwrap();
        assert_eq!(untouched, [0x5a; 4096]);
        assert_eq!(blk.backing.counters.errors.get(), 1);
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
    fn a_bad_chain_fails_its_request_only_and_the_next_succeeds() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        mem.write_obj(header(VIRTIO_BLK_T_IN, 1), GuestAddress(HEADER_AT))
            .unwrap();
        let good = request_descs(VIRTIO_BLK_T_IN, 512);
        let bad_chains: [&[RawDescriptor]; 4] = [
            // A data buffer far outside guest RAM.
            &[
                desc(HEADER_AT, 16, NEXT, 1),
                desc(0xdead_0000_0000, 4096, NEXT | WRITE, 2),
                desc(STATUS_AT + 8, 1, WRITE, 0),
            ],
            // Header only: no status byte.
            &[desc(HEADER_AT, 16, 0, 0)],
            // A header too short, with a status byte.
            &[
                desc(HEADER_AT, 4, NEXT, 1),
                desc(STATUS_AT + 8, 1, WRITE, 0),
            ],
            // An indirect descriptor, a feature not offered.
            &[desc(HEADER_AT, 16, 4, 0)],
        ];
        for bad in bad_chains {
            let mut descs = bad.to_vec();
            let offset = descs.len();
            descs.extend(good.iter().map(|d| {
                let d = virtio_queue::desc::split::Descriptor::from(*d);
                let next = if d.has_next() {
                    d.next() + u16::try_from(offset).unwrap()
                } else {
                    0
                };
                desc(d.addr().0, d.len(), d.flags(), next)
            }));
            mem.write_obj(0xffu8, GuestAddress(STATUS_AT)).unwrap();
            let used = serve(&blk, &mem, &descs);
            assert_eq!(used.len(), 2, "{bad:?}");
            assert_eq!(used[1], 513, "{bad:?}");
            assert_eq!(
                mem.read_obj::<u8>(GuestAddress(STATUS_AT)).unwrap(),
                VIRTIO_BLK_S_OK
            );
        }
        // The short header got an error status where it had room for one.
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(STATUS_AT + 8)).unwrap(),
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(blk.backing.counters.errors.get(), 4);
        assert_eq!(blk.backing.counters.read_bytes.get(), 4 * 512);
    }

    #[test]
    fn avail_index_beyond_the_queue_breaks_the_device() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        let vq = MockSplitQueue::new(&mem, 16);
        let q: Queue = vq.create_queue().unwrap();
        // The driver claims 1000 new entries in a 16-entry ring.
        vq.avail().idx().store(1000);
        let mut server = blk.queue_server(mem.clone(), q);
        assert!(matches!(server.process(), Err(QueueError::AvailRing(_))));
    }

    #[test]
    fn a_rate_limit_holds_requests_back_until_its_timer() {
        // Served at once, and through an io_uring: the limit holds alike.
        for with_ring in [false, true] {
            let mem = crate::vmm::memory::create(16).unwrap();
            let (_f, blk) = disk(8, false);
            mem.write_obj(header(VIRTIO_BLK_T_IN, 1), GuestAddress(HEADER_AT))
                .unwrap();
            let vq = MockSplitQueue::new(&mem, 16);
            let one = request_descs(VIRTIO_BLK_T_IN, 512);
            let mut descs = one.to_vec();
            descs.extend([
                desc(HEADER_AT, 16, NEXT, 4),
                desc(DATA_AT, 512, NEXT | WRITE, 5),
                desc(STATUS_AT, 1, WRITE, 0),
            ]);
            vq.add_desc_chains(&descs, 0).unwrap();
            let mut server = blk.queue_server(mem.clone(), vq.create_queue().unwrap());
            let completions = EventFd::new(libc::EFD_NONBLOCK).unwrap();
            if with_ring {
                server.use_io_uring(4, completions.as_raw_fd()).unwrap();
            }
            server.throttle = Some(
                Throttle::new(RateLimit {
                    bytes_per_sec: 0,
                    ops_per_sec: 1,
                })
                .unwrap(),
            );
            server.process().unwrap();
            settle(&mut server, &completions);
            assert_eq!(vq.used().idx().load(), 1, "the second request waits");
            assert_eq!(blk.backing.counters.throttled.get(), 1);
            assert!(server.held.is_some());
            let mut got = [0u8; 11];
            mem.read_slice(&mut got, GuestAddress(DATA_AT)).unwrap();
            assert_eq!(&got, b"hello, disk", "the first was served");
        }
    }

    /// Runs one discard or write-zeroes request of the range
    /// (`sector`, `sectors`, `flags`) and returns its status.
    fn zero_request(
        blk: &Block,
        mem: &GuestMemory,
        kind: u32,
        sector: u64,
        sectors: u32,
        flags: u32,
    ) -> u8 {
        let range = Range {
            sector,
            sectors,
            flags,
        };
        mem.write_obj(range, GuestAddress(DATA_AT)).unwrap();
        request(blk, mem, kind, 0, 16)
    }

    /// A disk of 8 sectors of 0xab.
    fn full_disk(read_only: bool) -> (tempfile::NamedTempFile, Block) {
        full_disk_in(&std::env::temp_dir(), read_only)
    }

    fn full_disk_in(dir: &Path, read_only: bool) -> (tempfile::NamedTempFile, Block) {
        let f = tempfile::NamedTempFile::new_in(dir).unwrap();
        f.as_file().write_all_at(&[0xab; 8 * 512], 0).unwrap();
        let blk = Block::open(f.path(), read_only, "vda").unwrap();
        (f, blk)
    }

    fn sectors_of(f: &tempfile::NamedTempFile) -> Vec<[u8; 512]> {
        let mut all = vec![[0u8; 512]; 8];
        for (i, s) in all.iter_mut().enumerate() {
            f.as_file().read_exact_at(s, i as u64 * 512).unwrap();
        }
        all
    }

    #[test]
    fn discard_and_write_zeroes_zero_their_range_only() {
        // tmpfs zeroes no range in place: write-zeroes writes zeros there.
        let dirs = [std::env::temp_dir(), PathBuf::from("/dev/shm")];
        let cases = [
            (VIRTIO_BLK_T_DISCARD, 0),
            (VIRTIO_BLK_T_WRITE_ZEROES, 0),
            (VIRTIO_BLK_T_WRITE_ZEROES, RANGE_F_UNMAP),
        ];
        for (dir, (kind, flags)) in dirs
            .iter()
            .filter(|d| d.is_dir())
            .flat_map(|d| cases.map(|c| (d, c)))
        {
            let mem = crate::vmm::memory::create(16).unwrap();
            let (f, blk) = full_disk_in(dir, false);
            assert_eq!(
                zero_request(&blk, &mem, kind, 2, 3, flags),
                VIRTIO_BLK_S_OK,
                "{kind} {flags}"
            );
            let got = sectors_of(&f);
            for (i, sector) in got.iter().enumerate() {
                let want = if (2..5).contains(&i) { 0 } else { 0xab };
                assert_eq!(sector, &[want; 512], "{kind} {flags}: sector {i}");
            }
            assert_eq!(f.as_file().metadata().unwrap().len(), 8 * 512);
        }
    }

    #[test]
    fn bad_discard_and_write_zeroes_requests_change_nothing() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (f, blk) = full_disk(false);
        let cases = [
            // Unmap is not a discard's flag; unknown flags.
            (
                VIRTIO_BLK_T_DISCARD,
                0,
                1,
                RANGE_F_UNMAP,
                VIRTIO_BLK_S_UNSUPP,
            ),
            (VIRTIO_BLK_T_WRITE_ZEROES, 0, 1, 4, VIRTIO_BLK_S_UNSUPP),
            // Past the end, and a length that wraps.
            (VIRTIO_BLK_T_DISCARD, 7, 2, 0, VIRTIO_BLK_S_IOERR),
            (
                VIRTIO_BLK_T_WRITE_ZEROES,
                u64::MAX,
                u32::MAX,
                0,
                VIRTIO_BLK_S_IOERR,
            ),
        ];
        for (kind, sector, sectors, flags, want) in cases {
            let status = zero_request(&blk, &mem, kind, sector, sectors, flags);
            assert_eq!(status, want, "{kind} {sector} {sectors} {flags}");
        }
        // Two ranges where the device takes one.
        assert_eq!(
            request(&blk, &mem, VIRTIO_BLK_T_DISCARD, 0, 32),
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(sectors_of(&f), vec![[0xab; 512]; 8]);

        // Read-only: refused, and not offered.
        let (f, blk) = full_disk(true);
        for kind in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
            assert_eq!(zero_request(&blk, &mem, kind, 0, 1, 0), VIRTIO_BLK_S_IOERR);
        }
        assert_eq!(sectors_of(&f), vec![[0xab; 512]; 8]);
        assert_eq!(
            blk.features() & (VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES),
            0
        );
    }

    /// `n` read requests of 512 bytes at sector 0, all on the same
    /// guest buffers.
    fn reads(n: u16) -> Vec<RawDescriptor> {
        (0..n)
            .flat_map(|i| {
                [
                    desc(HEADER_AT, 16, NEXT, 3 * i + 1),
                    desc(DATA_AT, 512, NEXT | WRITE, 3 * i + 2),
                    desc(STATUS_AT, 1, WRITE, 0),
                ]
            })
            .collect()
    }

    #[test]
    fn with_event_idx_the_driver_is_signalled_where_it_asked_and_kicks_are_rearmed() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        mem.write_obj(header(VIRTIO_BLK_T_IN, 0), GuestAddress(HEADER_AT))
            .unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(&reads(3), 0).unwrap();
        // used_event = 1: the driver wants to hear once the second
        // request is used, and not again before it says so.
        let used_event = vq.avail_addr().unchecked_add(4 + 2 * 16);
        mem.write_obj(1u16, used_event).unwrap();
        let mut queue: Queue = vq.create_queue().unwrap();
        // The mock lays its used ring over the end of the available
        // ring, used_event included: this one is clear of it.
        let used = GuestAddress(0x8000);
        queue.set_used_ring_address(Some(0x8000), Some(0));
        queue.set_event_idx(true);
        let mut server = blk.queue_server(mem.clone(), queue);
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        server.interrupt = Some(Arc::new(Interrupt::new(irq.try_clone().unwrap())));

        assert!(!server.process().unwrap(), "the third needs no interrupt");
        assert_eq!(mem.read_obj::<u16>(used.unchecked_add(2)).unwrap(), 3);
        assert_eq!(irq.read().unwrap(), 1, "one interrupt, mid-pass");
        // avail_event = 3: the next request the driver adds kicks.
        let avail_event = used.unchecked_add(4 + 8 * 16);
        assert_eq!(mem.read_obj::<u16>(avail_event).unwrap(), 3);
    }

    #[test]
    fn a_disk_has_one_queue_per_vcpu_up_to_the_limit_and_says_so() {
        for (asked, want) in [(0u16, 1u16), (1, 1), (2, 2), (4, 4), (64, MAX_QUEUES)] {
            let blk = disk(8, false).1.with_queues(asked);
            assert_eq!(blk.queue_max_sizes(), vec![QUEUE_SIZE; usize::from(want)]);
            let mq = blk.features() & VIRTIO_BLK_F_MQ != 0;
            assert_eq!(mq, want > 1, "{asked}");
            let mut num_queues = [0u8; 2];
            blk.read_config(34, &mut num_queues);
            assert_eq!(u16::from_le_bytes(num_queues), want, "{asked}");
        }
        // A rate limit keeps one queue, whichever is set first.
        let limit = RateLimit {
            bytes_per_sec: 1 << 20,
            ops_per_sec: 0,
        };
        let blk = disk(8, false).1.with_queues(4).with_rate_limit(limit);
        assert_eq!(blk.queue_max_sizes(), [QUEUE_SIZE]);
        let blk = blk.with_queues(4);
        assert_eq!(blk.queue_max_sizes(), [QUEUE_SIZE]);
        assert_eq!(blk.features() & VIRTIO_BLK_F_MQ, 0);
    }

    /// A queue of 16 entries at `base` holding one read of sector 1 into
    /// `data`, status at `data + 0x1000`.
    fn queue_with_a_read(
        mem: &GuestMemory,
        base: u64,
        data: u64,
    ) -> MockSplitQueue<'_, GuestMemory> {
        let vq = MockSplitQueue::create(mem, GuestAddress(base), 16);
        vq.add_desc_chains(
            &[
                desc(HEADER_AT, 16, NEXT, 1),
                desc(data, 512, NEXT | WRITE, 2),
                desc(data + 0x1000, 1, WRITE, 0),
            ],
            0,
        )
        .unwrap();
        vq
    }

    #[test]
    fn each_queue_the_driver_sets_up_is_served_by_its_own_worker() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (_f, blk) = disk(8, false);
        let mut blk = blk.with_queues(2);
        mem.write_obj(header(VIRTIO_BLK_T_IN, 1), GuestAddress(HEADER_AT))
            .unwrap();
        let datas = [0x50_0000u64, 0x60_0000];
        let vqs = [
            queue_with_a_read(&mem, 0x1_0000, datas[0]),
            queue_with_a_read(&mem, 0x2_0000, datas[1]),
        ];
        let notifies: Vec<_> = vqs
            .iter()
            .map(|_| vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap())
            .collect();
        let active = vqs
            .iter()
            .zip(&notifies)
            .map(|(vq, notify)| ActiveQueue {
                queue: vq.create_queue().unwrap(),
                notify: notify.try_clone().unwrap(),
            })
            .collect();
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let interrupt = Arc::new(Interrupt::new(irq));
        blk.activate(mem.clone(), 0, active, interrupt.clone())
            .unwrap();
        assert_eq!(blk.workers.running.len(), 2);
        for notify in &notifies {
            notify.write(1).unwrap();
        }
        // Waits for the workers (a bound, not a speed check).
        for _ in 0..1000 {
            if vqs.iter().all(|vq| vq.used().idx().load() == 1) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for (vq, data) in vqs.iter().zip(datas) {
            assert_eq!(vq.used().idx().load(), 1);
            let mut got = [0u8; 11];
            mem.read_slice(&mut got, GuestAddress(data)).unwrap();
            assert_eq!(&got, b"hello, disk");
            assert_eq!(
                mem.read_obj::<u8>(GuestAddress(data + 0x1000)).unwrap(),
                VIRTIO_BLK_S_OK
            );
        }
        blk.reset().unwrap();
        // More queues than the device has, or none, are refused.
        for n in [0, 3] {
            let queues = (0..n)
                .map(|_| ActiveQueue {
                    queue: Queue::new(16).unwrap(),
                    notify: vmm_sys_util::eventfd::EventFd::new(0).unwrap(),
                })
                .collect();
            let err = blk
                .activate(mem.clone(), 0, queues, interrupt.clone())
                .unwrap_err();
            assert!(
                matches!(err, ActivateError::QueueCount { got, want: 2, .. } if got == n),
                "{err}"
            );
        }
    }

    /// Passes over `server` until its io_uring has nothing in flight: what
    /// the kernel finishes after a pass signals `completions`, which
    /// wakes the worker (a bound, not a speed check).
    fn settle(server: &mut BlockQueue, completions: &EventFd) {
        for _ in 0..1000 {
            if server.ring.as_ref().is_none_or(|r| r.in_flight() == 0) {
                return;
            }
            let mut fd = [libc::pollfd {
                fd: completions.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one pollfd, alive for the call.
            unsafe { libc::poll(fd.as_mut_ptr(), 1, 10) };
            drop(completions.read());
            server.process().unwrap();
        }
        panic!("the ring never emptied");
    }

    #[test]
    fn with_io_uring_requests_in_flight_together_complete_once_each() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (f, blk) = disk(8, false);
        for sector in 0..8u8 {
            f.as_file()
                .write_all_at(&[sector; 512], u64::from(sector) * 512)
                .unwrap();
        }
        // Six reads of sectors 0..6 into buffers of their own, then a
        // write of 0x5a over sector 7: more than the ring's depth of 2.
        let mut descs = Vec::new();
        for i in 0..7u16 {
            let kind = if i < 6 {
                VIRTIO_BLK_T_IN
            } else {
                VIRTIO_BLK_T_OUT
            };
            let at = |base: u64| base + u64::from(i) * 0x1000;
            mem.write_obj(
                header(kind, u64::from(i) + u64::from(i / 6)),
                GuestAddress(at(HEADER_AT)),
            )
            .unwrap();
            let data_flags = if i < 6 { NEXT | WRITE } else { NEXT };
            descs.extend([
                desc(at(HEADER_AT), 16, NEXT, 3 * i + 1),
                desc(at(DATA_AT), 512, data_flags, 3 * i + 2),
                desc(at(STATUS_AT), 1, WRITE, 0),
            ]);
        }
        mem.write_slice(&[0x5a; 512], GuestAddress(DATA_AT + 6 * 0x1000))
            .unwrap();
        let vq = MockSplitQueue::new(&mem, 32);
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut server = blk.queue_server(mem.clone(), vq.create_queue().unwrap());
        let completions = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        server.use_io_uring(2, completions.as_raw_fd()).unwrap();
        server.process().unwrap();
        settle(&mut server, &completions);

        assert_eq!(vq.used().idx().load(), 7, "every request used");
        let mut heads: Vec<(u16, u32)> = (0..7u16)
            .map(|i| {
                let elem = vq.used().ring().ref_at(i.into()).unwrap().load();
                (u16::try_from(elem.id()).unwrap(), elem.len())
            })
            .collect();
        heads.sort_unstable();
        let want: Vec<(u16, u32)> = (0..7u16)
            .map(|i| (3 * i, if i < 6 { 513 } else { 1 }))
            .collect();
        assert_eq!(heads, want, "each once, with its length");
        for i in 0..7u64 {
            let status = mem.read_obj::<u8>(GuestAddress(STATUS_AT + i * 0x1000));
            assert_eq!(status.unwrap(), VIRTIO_BLK_S_OK, "request {i}");
        }
        for i in 0..6u8 {
            let mut got = [0u8; 512];
            mem.read_slice(&mut got, GuestAddress(DATA_AT + u64::from(i) * 0x1000))
                .unwrap();
            assert_eq!(got, [i; 512], "read {i}");
        }
        assert_eq!(sectors_of(&f)[7], [0x5a; 512]);
        let counters = &blk.backing.counters;
        assert_eq!(counters.read_bytes.get(), 6 * 512);
        assert_eq!(counters.write_bytes.get(), 512);
        assert_eq!(counters.errors.get(), 0);
    }

    /// A disk of 8 sectors whose reads wait until the test writes what
    /// they read into the returned pipe: host I/O that takes as long as
    /// the test says.
    fn slow_disk() -> (File, Block) {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let (_f, mut blk) = disk(8, false);
        blk.backing = Arc::new(Backing {
            file: File::from(read_end),
            sectors: 8,
            read_only: false,
            id: [0; ID_BYTES],
            counters: Arc::default(),
        });
        (File::from(write_end), blk)
    }

    /// A queue of three reads of 512 bytes from sector 0, data at
    /// DATA_AT + i * 0x1000 (zeroed), status at STATUS_AT + i * 0x1000
    /// (0xff until the device writes it).
    fn three_reads(mem: &GuestMemory) -> MockSplitQueue<'_, GuestMemory> {
        mem.write_obj(header(VIRTIO_BLK_T_IN, 0), GuestAddress(HEADER_AT))
            .unwrap();
        let mut descs = Vec::new();
        for i in 0..3u16 {
            let at = |base: u64| base + u64::from(i) * 0x1000;
            mem.write_obj(0xffu8, GuestAddress(at(STATUS_AT))).unwrap();
            descs.extend([
                desc(HEADER_AT, 16, NEXT, 3 * i + 1),
                desc(at(DATA_AT), 512, NEXT | WRITE, 3 * i + 2),
                desc(at(STATUS_AT), 1, WRITE, 0),
            ]);
        }
        let vq = MockSplitQueue::new(mem, 16);
        vq.add_desc_chains(&descs, 0).unwrap();
        vq
    }

    /// [`three_reads`] handed to `blk`'s one worker, which has put them
    /// in flight on its ring.
    fn reads_in_flight<'a>(
        blk: &mut Block,
        mem: &'a GuestMemory,
    ) -> MockSplitQueue<'a, GuestMemory> {
        let vq = three_reads(mem);
        let notify = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let active = ActiveQueue {
            queue: vq.create_queue().unwrap(),
            notify: notify.try_clone().unwrap(),
        };
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        blk.activate(mem.clone(), 0, vec![active], Arc::new(Interrupt::new(irq)))
            .unwrap();
        notify.write(1).unwrap();
        // Waits until the worker took them (a bound, not a speed check);
        // none can complete before the pipe has data.
        for _ in 0..1000 {
            if blk.backing.counters.requests.get() == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(blk.backing.counters.requests.get(), 3);
        vq
    }

    /// What the guest can see of the three reads: their data's first
    /// bytes, their statuses, and the used ring's index.
    fn seen(mem: &GuestMemory, vq: &MockSplitQueue<'_, GuestMemory>) -> ([u8; 3], [u8; 3], u16) {
        let at = |base: u64, i: u64| GuestAddress(base + i * 0x1000);
        let data = [0, 1, 2].map(|i| mem.read_obj::<u8>(at(DATA_AT, i)).unwrap());
        let status = [0, 1, 2].map(|i| mem.read_obj::<u8>(at(STATUS_AT, i)).unwrap());
        (data, status, vq.used().idx().load())
    }

    #[test]
    fn a_reset_cancels_the_reads_in_flight_and_returns_none_of_them_used() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (mut pipe, mut blk) = slow_disk();
        // Nothing feeds the pipe: without the cancel, the reset would
        // wait out its bound (5 s) and fail.
        let vq = reads_in_flight(&mut blk, &mem);
        blk.reset().unwrap();
        assert!(blk.workers.running.is_empty());
        // Cancelled, not waited for: nothing read, statuses and used
        // ring untouched.
        assert_eq!(seen(&mem, &vq), ([0; 3], [0xff; 3], 0));
        // Data the host's I/O gets later stays where it is: no read of
        // the guest's is left to take it.
        pipe.write_all(&[0x77; 3 * 512]).unwrap();
        let mut left = [0u8; 3 * 512];
        std::io::Read::read_exact(&mut &blk.backing.file, &mut left).unwrap();
        assert_eq!(left, [0x77; 3 * 512]);
        assert_eq!(seen(&mem, &vq), ([0; 3], [0xff; 3], 0));
    }

    #[test]
    fn with_its_io_uring_full_a_pass_returns_rather_than_wait_in_the_kernel() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (mut pipe, blk) = slow_disk();
        // A pass stuck in the kernel is freed, and the checks below fail
        // rather than hang.
        let guard = PipeGuard::new(pipe.try_clone().unwrap());
        let vq = three_reads(&mem);
        let mut server = blk.queue_server(mem.clone(), vq.create_queue().unwrap());
        let completions = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        server.use_io_uring(2, completions.as_raw_fd()).unwrap();
        server.process().unwrap();
        guard.off();
        // Two in flight, the third left in the ring for when one is done:
        // the worker waits in its loop, where a reset is seen.
        assert_eq!(blk.backing.counters.requests.get(), 2);
        assert_eq!(server.ring.as_ref().unwrap().in_flight(), 2);
        pipe.write_all(&[0x77; 3 * 512]).unwrap();
        settle(&mut server, &completions);
        assert_eq!(blk.backing.counters.requests.get(), 3);
        assert_eq!(seen(&mem, &vq), ([0x77; 3], [VIRTIO_BLK_S_OK; 3], 3));
    }

    #[test]
    fn unaligned_image_is_refused_with_advice() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(1000).unwrap();
        let err = Block::open(f.path(), false, "vda").unwrap_err();
        assert!(err.to_string().contains("not a multiple of 512"), "{err}");
    }

    #[test]
    fn a_writable_image_is_locked_against_a_second_vmm() {
        let (f, _blk) = disk(8, false);
        let err = Block::open(f.path(), false, "vdb").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Locked { .. }), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );
        assert!(
            Block::open(f.path(), true, "vdb").is_err(),
            "not even read-only"
        );
    }

    #[test]
    fn read_only_images_share_their_lock() {
        let (f, _a) = disk(8, true);
        let _b = Block::open(f.path(), true, "vdb").unwrap();
        assert!(matches!(
            Block::open(f.path(), false, "vdc"),
            Err(Error::Locked { .. })
        ));
    }
}

//! Transfers between a file and guest memory: served at once
//! ([`Transfer::run`], preadv/pwritev), or several in flight together
//! through an io_uring ([`Ring`]) where the host has one.
//!
//! A ring is made so that it can do nothing but vectored reads and
//! writes, and cancel its own (io_uring's restrictions, set before it is
//! enabled): what the ring does is not filtered by seccomp, so it must
//! not be able to do more than the preadv/pwritev it stands in for. The
//! guest memory its transfers point into stays mapped while they are in
//! flight: the ring holds the memory, and dropping it cancels every
//! transfer and waits for those past cancelling.

use std::os::fd::RawFd;

use io_uring::register::Restriction;
use io_uring::{IoUring, opcode, types};

use super::chain::Buffers;
use crate::vmm::memory::GuestMemory;

/// Most iovecs one preadv/pwritev or ring entry takes (Linux's
/// `UIO_MAXIOV`); a transfer with more continues where it stopped.
const IOV_MAX: usize = 1024;
/// User data of the ring's cancels, which no transfer slot has.
const CANCEL: u64 = u64::MAX;

/// Errors of making a ring; each leaves the device serving requests one
/// at a time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("io_uring_setup: {0}")]
    Setup(std::io::Error),
    #[error("cannot register the ring's completion eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot restrict the ring to reads, writes and their cancels: {0}")]
    Restrict(std::io::Error),
}

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// File to guest (a read request).
    Read,
    /// Guest to file (a write request).
    Write,
}

/// A read or write of the file at `offset` into or out of guest
/// buffers, as iovecs over the guest memory they were made from.
#[derive(Debug)]
pub struct Transfer {
    iovs: Vec<libc::iovec>,
    offset: u64,
    direction: Direction,
}

// SAFETY: the iovecs are addresses in guest memory, which every thread
// of the VMM may use; a Transfer is only moved between threads with the
// queue that owns it.
unsafe impl Send for Transfer {}

impl Transfer {
    /// A transfer between the file at `offset` and `buffers` in `mem`;
    /// `None` if a buffer is not guest RAM.
    pub fn new(
        mem: &GuestMemory,
        buffers: &Buffers,
        offset: u64,
        direction: Direction,
    ) -> Option<Self> {
        Some(Self {
            iovs: buffers.iovecs(mem)?,
            offset,
            direction,
        })
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Bytes left to move.
    pub fn remaining(&self) -> u64 {
        self.iovs.iter().map(|iov| iov.iov_len as u64).sum()
    }

    /// Moves the transfer forward past `n` bytes already done.
    pub fn advance(&mut self, mut n: usize) {
        self.offset = self.offset.saturating_add(n as u64);
        let done = self.iovs.iter().take_while(|iov| {
            if n >= iov.iov_len {
                n -= iov.iov_len;
                true
            } else {
                false
            }
        });
        let done = done.count();
        self.iovs.drain(..done);
        if let Some(first) = self.iovs.first_mut() {
            first.iov_base = first.iov_base.cast::<u8>().wrapping_add(n).cast();
            first.iov_len -= n;
        }
    }

    /// Runs what is left of the transfer on `fd` with preadv/pwritev.
    /// `_mem` is the guest memory the transfer was made from: borrowed,
    /// it stays mapped for the call.
    pub fn run(&mut self, fd: RawFd, _mem: &GuestMemory) -> std::io::Result<()> {
        while !self.iovs.is_empty() {
            let count = libc::c_int::try_from(self.iovs.len().min(IOV_MAX)).unwrap_or(1);
            let at = libc::off_t::try_from(self.offset)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            let n = match self.direction {
                // SAFETY: every iovec points into guest memory that `mem`
                // maps for as long as it lives, which outlasts this call;
                // `count` is at most the number of iovecs.
                Direction::Read => unsafe { libc::preadv(fd, self.iovs.as_ptr(), count, at) },
                // SAFETY: as above; pwritev only reads the buffers.
                Direction::Write => unsafe { libc::pwritev(fd, self.iovs.as_ptr(), count, at) },
            };
            match usize::try_from(n) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.advance(n),
                Err(_) => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A transfer the ring finished (in part, or with an error).
#[derive(Debug)]
pub struct Completed<T> {
    pub tag: T,
    pub transfer: Transfer,
    /// Bytes moved, or the error.
    pub result: std::io::Result<usize>,
}

/// An io_uring with up to `depth` transfers in flight, each with a tag
/// `T` (what the caller completes when it is done).
pub struct Ring<T> {
    ring: IoUring,
    /// Transfers handed to the ring, by slot (the entry's user data):
    /// their iovecs stay here, untouched, until the ring is done.
    slots: Vec<Option<(T, Transfer)>>,
    free: Vec<usize>,
    /// The guest memory the transfers were made from: mapped until every
    /// transfer has completed (see Drop).
    _mem: GuestMemory,
}

impl<T> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("depth", &self.slots.len())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl<T> Ring<T> {
    /// A ring for up to `depth` transfers into or out of `mem`, signalling
    /// `completions` (an eventfd) for each transfer that completes later
    /// than its submission.
    pub fn new(mem: GuestMemory, depth: u16, completions: RawFd) -> Result<Self, Error> {
        let ring = IoUring::builder()
            .setup_r_disabled()
            .build(u32::from(depth))
            .map_err(Error::Setup)?;
        let submitter = ring.submitter();
        submitter
            .register_eventfd_async(completions)
            .map_err(Error::EventFd)?;
        submitter
            .register_restrictions(&mut [
                Restriction::sqe_op(opcode::Readv::CODE),
                Restriction::sqe_op(opcode::Writev::CODE),
                // Cancels only what this ring has in flight.
                Restriction::sqe_op(opcode::AsyncCancel::CODE),
            ])
            .map_err(Error::Restrict)?;
        submitter.register_enable_rings().map_err(Error::Restrict)?;
        Ok(Self {
            ring,
            slots: (0..depth).map(|_| None).collect(),
            free: (0..usize::from(depth)).rev().collect(),
            _mem: mem,
        })
    }

    /// Transfers handed over and not yet taken back.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Queues `transfer`, made from the ring's guest memory, on file `fd`
    /// (submitted by the next [`Ring::submit`]); gives it back if the
    /// ring is full.
    pub fn push(&mut self, fd: RawFd, tag: T, transfer: Transfer) -> Result<(), (T, Transfer)> {
        let Some(slot) = self.free.pop() else {
            return Err((tag, transfer));
        };
        let count = u32::try_from(transfer.iovs.len().min(IOV_MAX)).unwrap_or(1);
        let iovs = transfer.iovs.as_ptr();
        let entry = match transfer.direction {
            Direction::Read => opcode::Readv::new(types::Fd(fd), iovs, count)
                .offset(transfer.offset)
                .build(),
            Direction::Write => opcode::Writev::new(types::Fd(fd), iovs, count)
                .offset(transfer.offset)
                .build(),
        }
        .user_data(slot as u64);
        // SAFETY: the entry points at the iovec array of `transfer`, which
        // moves into `self.slots` now and stays there, its heap buffer
        // unchanged, until the ring reports the entry done; the iovecs
        // point into guest memory that `self._mem` keeps mapped until then
        // (Drop waits for every entry). The ring has room: it has as
        // many entries as slots, and this slot was free.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            self.free.push(slot);
            return Err((tag, transfer));
        }
        if let Some(place) = self.slots.get_mut(slot) {
            *place = Some((tag, transfer));
        }
        Ok(())
    }

    /// Hands the queued transfers to the kernel; with `wait`, also waits
    /// until at least one is done.
    pub fn submit(&mut self, wait: bool) -> std::io::Result<()> {
        let want = usize::from(wait && self.in_flight() > 0);
        loop {
            match self.ring.submit_and_wait(want) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other.map(drop),
            }
        }
    }

    /// Asks the kernel to cancel every transfer handed over (what is
    /// queued is submitted first): each completes at once with
    /// ECANCELED, or when done if the kernel is already moving its data.
    /// One cancel per transfer rather than one for all, which kernels
    /// before 5.19 refuse. An error says not all were asked.
    pub fn cancel(&mut self) -> std::io::Result<()> {
        self.submit(false)?;
        for slot in 0..self.slots.len() {
            if self.slots.get(slot).is_none_or(Option::is_none) {
                continue;
            }
            let entry = opcode::AsyncCancel::new(slot as u64)
                .build()
                .user_data(CANCEL);
            // SAFETY: a cancel points at no memory. There is room: the
            // submission queue, emptied above, has an entry per slot.
            unsafe { self.ring.submission().push(&entry) }
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::WouldBlock))?;
        }
        self.submit(false)
    }

    /// The next transfer the kernel is done with, if any.
    pub fn next_completed(&mut self) -> Option<Completed<T>> {
        loop {
            let entry = self.ring.completion().next()?;
            if entry.user_data() == CANCEL {
                continue;
            }
            let slot = usize::try_from(entry.user_data()).ok()?;
            // A slot the ring did not hand out cannot complete; skip it.
            let Some((tag, transfer)) = self.slots.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            self.free.push(slot);
            let result = usize::try_from(entry.result())
                .map_err(|_| std::io::Error::from_raw_os_error(-entry.result()));
            return Some(Completed {
                tag,
                transfer,
                result,
            });
        }
    }
}

impl<T> Drop for Ring<T> {
    /// Cancels every transfer and waits until the kernel is done with
    /// each, so that none writes guest memory after the device let go of
    /// it. Their completions are dropped here, seen by no queue.
    fn drop(&mut self) {
        if self.in_flight() > 0 {
            // Those the cancel misses, or all if it could not be asked,
            // are waited for below.
            let _ = self.cancel();
        }
        while self.in_flight() > 0 {
            if self.submit(true).is_err() {
                // io_uring_enter fails only on a broken ring; closing it
                // cancels what is left.
                return;
            }
            while self.next_completed().is_some() {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vmm::devices::virtio::chain::Segment;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EventFd;

    /// A file of 4 KiB where byte i is i % 251.
    fn file() -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        f.as_file().write_all_at(&data, 0).unwrap();
        f
    }

    fn byte(at: u64) -> u8 {
        (at % 251) as u8
    }

    /// Three guest buffers of 100, 200 and 300 bytes.
    fn buffers() -> Buffers {
        let mut b = Buffers::default();
        for (addr, len) in [(0x1_0000, 100), (0x2_0000, 200), (0x3_0000, 300)] {
            b.push(Segment {
                addr: GuestAddress(addr),
                len,
            });
        }
        b
    }

    #[test]
    fn a_transfer_advanced_past_part_of_its_buffers_moves_only_the_rest() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let f = file();
        let mut t = Transfer::new(&mem, &buffers(), 1000, Direction::Read).unwrap();
        assert_eq!(t.remaining(), 600);
        // As a short read of 150 bytes leaves it: the first buffer and
        // half of the second done.
        t.advance(150);
        assert_eq!(t.remaining(), 450);
        t.run(f.as_file().as_raw_fd(), &mem).unwrap();
        let mut first = [0u8; 100];
        mem.read_slice(&mut first, GuestAddress(0x1_0000)).unwrap();
        assert_eq!(first, [0; 100], "done before, not read again");
        let mut second = [0u8; 200];
        mem.read_slice(&mut second, GuestAddress(0x2_0000)).unwrap();
        assert!(second[..50].iter().all(|&b| b == 0));
        for (i, b) in second[50..].iter().enumerate() {
            assert_eq!(*b, byte(1150 + i as u64));
        }
        let mut third = [0u8; 300];
        mem.read_slice(&mut third, GuestAddress(0x3_0000)).unwrap();
        for (i, b) in third.iter().enumerate() {
            assert_eq!(*b, byte(1300 + i as u64));
        }
    }

    /// Feeds a pipe 4 KiB of 0xee bytes if not called off within 10 s:
    /// past a bound that only a broken cancel (or a pass waiting in the
    /// kernel) reaches, a read waiting on the pipe ends, so that a test
    /// fails rather than hangs.
    pub(crate) struct PipeGuard {
        off: std::sync::mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    }

    impl PipeGuard {
        pub(crate) fn new(mut pipe: std::fs::File) -> Self {
            use std::io::Write;
            let (off, wait) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                if wait
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .is_err()
                {
                    let _ = pipe.write_all(&[0xee; 4096]);
                }
            });
            Self { off, thread }
        }

        /// Called off: the pipe is not fed.
        pub(crate) fn off(self) {
            let _ = self.off.send(());
            let _ = self.thread.join();
        }
    }

    /// A pipe whose reads wait until the test writes, with a
    /// [`PipeGuard`]: the read end, the write end and the guard.
    fn pipe_with_guard() -> (std::fs::File, std::fs::File, PipeGuard) {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let guard = PipeGuard::new(std::fs::File::from(write_end.try_clone().unwrap()));
        (read_end.into(), write_end.into(), guard)
    }

    #[test]
    fn a_cancelled_read_completes_with_ecanceled_and_reads_nothing() {
        use std::io::{Read, Write};
        let mem = crate::vmm::memory::create(16).unwrap();
        let (mut read_end, mut write_end, guard) = pipe_with_guard();
        let completions = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut ring = Ring::new(mem.clone(), 2, completions.as_raw_fd()).unwrap();
        let t = Transfer::new(&mem, &buffers(), 0, Direction::Read).unwrap();
        ring.push(read_end.as_raw_fd(), 1u8, t).unwrap();
        ring.submit(false).unwrap();
        assert!(ring.next_completed().is_none(), "waits for the pipe");
        ring.cancel().unwrap();
        ring.submit(true).unwrap();
        let cancelled = ring.next_completed().unwrap();
        guard.off();
        assert_eq!(cancelled.tag, 1);
        let err = cancelled.result.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECANCELED), "{err}");
        assert_eq!(ring.in_flight(), 0);
        // The cancel's own completion is no transfer's.
        assert!(ring.next_completed().is_none());
        // What the pipe gets later stays in it.
        write_end.write_all(&[0x77; 600]).unwrap();
        let mut left = [0u8; 600];
        read_end.read_exact(&mut left).unwrap();
        assert_eq!(left, [0x77; 600]);
        let mut first = [0u8; 100];
        mem.read_slice(&mut first, GuestAddress(0x1_0000)).unwrap();
        assert_eq!(first, [0; 100]);
    }

    #[test]
    fn a_dropped_ring_cancels_the_reads_it_waits_for() {
        use std::io::{Read, Write};
        let mem = crate::vmm::memory::create(16).unwrap();
        let (mut read_end, mut write_end, guard) = pipe_with_guard();
        let completions = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut ring = Ring::new(mem.clone(), 2, completions.as_raw_fd()).unwrap();
        // Two reads, one submitted, one only queued: both are cancelled.
        let t = || Transfer::new(&mem, &buffers(), 0, Direction::Read).unwrap();
        ring.push(read_end.as_raw_fd(), 1u8, t()).unwrap();
        ring.submit(false).unwrap();
        ring.push(read_end.as_raw_fd(), 2u8, t()).unwrap();
        drop(ring);
        guard.off();
        write_end.write_all(&[0x77; 1200]).unwrap();
        let mut left = [0u8; 1200];
        read_end.read_exact(&mut left).unwrap();
        assert_eq!(left, [0x77; 1200], "no read took any");
        for (addr, len) in [(0x1_0000, 100), (0x2_0000, 200), (0x3_0000, 300)] {
            let mut got = vec![0u8; len];
            mem.read_slice(&mut got, GuestAddress(addr)).unwrap();
            assert_eq!(got, vec![0; len]);
        }
    }

    #[test]
    fn a_dropped_ring_first_waits_for_the_transfers_it_holds() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let f = file();
        let completions = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut ring = Ring::new(mem.clone(), 4, completions.as_raw_fd()).unwrap();
        for (tag, offset) in [(1u8, 0u64), (2, 2000)] {
            let t = Transfer::new(&mem, &buffers(), offset, Direction::Read).unwrap();
            ring.push(f.as_file().as_raw_fd(), tag, t).unwrap();
        }
        assert_eq!(ring.in_flight(), 2);
        // Not even submitted: the drop submits them, and a file's reads
        // are done before its cancels come (or are cancelled unstarted).
        drop(ring);
        let mut third = [0u8; 300];
        mem.read_slice(&mut third, GuestAddress(0x3_0000)).unwrap();
        // Both read into the same buffers; either may have been last.
        let from = |offset: u64| (0..300).map(|i| byte(offset + 300 + i)).collect::<Vec<_>>();
        let third = third.to_vec();
        assert!(third == from(0) || third == from(2000) || third == [0; 300]);
    }

    #[test]
    fn a_full_ring_gives_the_transfer_back_and_completions_free_its_slots() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let f = file();
        let fd = f.as_file().as_raw_fd();
        let completions = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut ring = Ring::new(mem.clone(), 1, completions.as_raw_fd()).unwrap();
        let t = || Transfer::new(&mem, &buffers(), 0, Direction::Read).unwrap();
        ring.push(fd, 1u8, t()).unwrap();
        assert!(ring.is_full());
        let (tag, _) = ring.push(fd, 2u8, t()).unwrap_err();
        assert_eq!(tag, 2);
        ring.submit(true).unwrap();
        let done = ring.next_completed().unwrap();
        assert_eq!(done.tag, 1);
        assert_eq!(done.result.unwrap(), 600);
        assert!(
            ring.next_completed().is_none(),
            "one completion per transfer"
        );
        assert_eq!(ring.in_flight(), 0);
        ring.push(fd, 3u8, t()).unwrap();
    }

    #[test]
    fn a_ring_refuses_anything_but_reads_writes_and_cancels() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let completions = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut ring = Ring::<u8>::new(mem, 1, completions.as_raw_fd()).unwrap();
        let nop = opcode::Nop::new().build().user_data(0);
        // SAFETY: a no-op points at nothing.
        unsafe { ring.ring.submission().push(&nop) }.unwrap();
        // The kernel fails the whole submission of a restricted opcode.
        let refused = ring.ring.submit_and_wait(1);
        let failed_entry = ring
            .ring
            .completion()
            .next()
            .is_some_and(|e| e.result() == -libc::EACCES);
        assert!(refused.is_err() || failed_entry, "{refused:?}");
    }
}

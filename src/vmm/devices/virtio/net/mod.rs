//! virtio-net over a tap device, with a MAC address per interface.
//!
//! Frames move straight between the tap and the guest's buffers (readv
//! and writev over guest memory: no copy in the VMM, one syscall a
//! frame), each behind the 12-byte `virtio_net_hdr_v1`, which the tap
//! (`IFF_VNET_HDR`) and the driver both speak. Checksum and segmentation
//! offloads pass through that header: what the driver accepted decides
//! what the tap may hand it (`TUNSETOFFLOAD` at activation), and what it
//! sends is checked against what it negotiated. With mergeable receive
//! buffers a frame spreads over as many chains as it needs. Frames over
//! the buffers the driver gave are dropped and counted, never cut; a
//! malformed chain fails that chain only.

pub mod tap;

use std::collections::VecDeque;
use std::num::Wrapping;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::timerfd::TimerFd;

pub use super::QueueError;
use super::chain::{self, Buffers, Chain, Table, VIRTIO_RING_F_INDIRECT_DESC};
use super::counters::NetCounters;
use super::rate_limit::{RateLimit, Throttle};
use super::worker::{Retired, Worker, Workers};
use super::{
    ActivateError, ActiveQueue, DeviceMetrics, Drained, Interrupt, ResetError,
    VIRTIO_RING_F_EVENT_IDX, VirtioDevice, drain_quietly, expect_queues, read_config_bytes,
};
use crate::host::mac::MacAddr;
use crate::vmm::memory::GuestMemory;
use crate::vmm::sandbox::seccomp::ThreadKind;
pub use tap::Tap;
use tap::{TUN_F_CSUM, TUN_F_TSO_ECN, TUN_F_TSO4, TUN_F_TSO6, VNET_HDR_LEN as NET_HDR_LEN};

const VIRTIO_ID_NET: u32 = 1;
/// The device takes frames with partial checksums (transmit).
const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// The driver takes frames with partial checksums (receive).
const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
const VIRTIO_NET_F_GUEST_ECN: u64 = 1 << 9;
const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
const VIRTIO_NET_F_HOST_ECN: u64 = 1 << 13;
const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
const VIRTIO_NET_S_LINK_UP: u16 = 1;
const QUEUE_SIZE: u16 = 256;
/// Header flag: the frame's checksum is to be completed from
/// `csum_start` (an offload).
const HDR_F_NEEDS_CSUM: u8 = 1;
/// Header flag (receive only): the checksum was already checked.
const HDR_F_DATA_VALID: u8 = 2;
/// Header `gso_type`s: none, TCP over IPv4 or IPv6, and the ECN bit.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_ECN: u8 = 0x80;
/// Where `num_buffers` lies in the header.
const NUM_BUFFERS_AT: usize = 10;
/// Largest frame a tap hands over or takes (64 KiB + Ethernet): a
/// segmentation offload's whole TCP stream segment.
const MAX_FRAME: usize = 65562;
/// Largest frame without segmentation offloads on a standard MTU
/// (Ethernet, a VLAN tag, 1500 bytes).
const MTU_FRAME: usize = 1522;
/// Most guest buffers one received frame is read into: far more than a
/// driver uses, and within what one readv takes.
const RX_MAX_SEGMENTS: usize = 512;
/// Transmit completions signalled at once, whatever the deadline: as
/// many frames as QEMU's loop let the driver batch (one interrupt per
/// ~60 datagrams).
const TX_BATCH_FRAMES: u16 = 64;
/// Frames from this size up are signalled at once too: beside them an
/// interrupt is cheap, and their sender may be waiting for their
/// completions (TCP's small queues hold a socket to a few segments in
/// flight, and a slower stream sends smaller segments).
const TX_SMALL_FRAME: u64 = 512;
/// How long the driver must queue no frame before completions held
/// back are signalled: a guest still sending reaps them itself before
/// each frame it queues.
const TX_QUIET: Duration = Duration::from_micros(500);

/// What the device offers: the MAC and link status, the checksum and
/// TCP segmentation offloads both ways, mergeable receive buffers,
/// notifications by ring index on both queues, and indirect descriptor
/// tables (a segmented frame of many fragments takes one ring entry).
pub const FEATURES: u64 = VIRTIO_RING_F_EVENT_IDX
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_STATUS
    | VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_GUEST_TSO4
    | VIRTIO_NET_F_GUEST_TSO6
    | VIRTIO_NET_F_GUEST_ECN
    | VIRTIO_NET_F_HOST_TSO4
    | VIRTIO_NET_F_HOST_TSO6
    | VIRTIO_NET_F_HOST_ECN
    | VIRTIO_NET_F_MRG_RXBUF;

/// The host end of a NIC: frames, each behind a virtio-net header, come
/// from and go to it. A tap in the VMM; a script in tests and fuzzing.
pub trait FrameIo: Send {
    /// Reads one frame, header first, into the guest buffers `into`.
    /// Returns its length with the header: more than `into` holds when
    /// it did not fit (`into` then holds a cut copy). `WouldBlock` when
    /// none is waiting.
    fn read_frame(&self, mem: &GuestMemory, into: &Buffers) -> std::io::Result<usize>;
    /// Writes one frame: `header`, then the guest buffers `frame`.
    fn write_frame(
        &self,
        header: &[u8],
        mem: &GuestMemory,
        frame: &Buffers,
    ) -> std::io::Result<usize>;
}

/// What a device runs on: frames, an fd that polls readable when one
/// waits, and the offloads the driver accepted. A tap in the VMM; a
/// script in tests.
pub trait HostEnd: FrameIo + AsRawFd + Sync + 'static {
    fn name(&self) -> &str;
    /// Lets the host end hand over only frames with the offloads
    /// `flags` (`TUN_F_*`).
    fn set_offload(&self, flags: u32) -> Result<(), tap::Error>;
}

impl HostEnd for Tap {
    fn name(&self) -> &str {
        Tap::name(self)
    }

    fn set_offload(&self, flags: u32) -> Result<(), tap::Error> {
        Tap::set_offload(self, flags)
    }
}

impl FrameIo for Tap {
    fn read_frame(&self, mem: &GuestMemory, into: &Buffers) -> std::io::Result<usize> {
        Tap::read_frame(self, mem, into)
    }

    fn write_frame(
        &self,
        header: &[u8],
        mem: &GuestMemory,
        frame: &Buffers,
    ) -> std::io::Result<usize> {
        Tap::write_frame(self, header, mem, frame)
    }
}

impl<T: FrameIo + Sync> FrameIo for Arc<T> {
    fn read_frame(&self, mem: &GuestMemory, into: &Buffers) -> std::io::Result<usize> {
        (**self).read_frame(mem, into)
    }

    fn write_frame(
        &self,
        header: &[u8],
        mem: &GuestMemory,
        frame: &Buffers,
    ) -> std::io::Result<usize> {
        (**self).write_frame(header, mem, frame)
    }
}

/// The tap offloads (`TUN_F_*`) for a driver that accepted `features`:
/// the tap may hand over only frames the driver said it takes. The tap
/// segments only frames whose checksum it may leave partial, as the
/// spec ties GUEST_TSO* to GUEST_CSUM.
pub fn tap_offloads(features: u64) -> u32 {
    if features & VIRTIO_NET_F_GUEST_CSUM == 0 {
        return 0;
    }
    let mut flags = TUN_F_CSUM;
    if features & VIRTIO_NET_F_GUEST_TSO4 != 0 {
        flags |= TUN_F_TSO4;
    }
    if features & VIRTIO_NET_F_GUEST_TSO6 != 0 {
        flags |= TUN_F_TSO6;
    }
    if flags & (TUN_F_TSO4 | TUN_F_TSO6) != 0 && features & VIRTIO_NET_F_GUEST_ECN != 0 {
        flags |= TUN_F_TSO_ECN;
    }
    flags
}

/// Whether the segmentation `gso_type` of a header is one the features
/// `tso4`, `tso6` and `ecn` allow.
fn gso_allowed(gso_type: u8, features: u64, [tso4, tso6, ecn]: [u64; 3]) -> bool {
    let ecn_ok = gso_type & GSO_ECN == 0 || features & ecn != 0;
    let kind_ok = match gso_type & !GSO_ECN {
        GSO_NONE => gso_type == GSO_NONE,
        GSO_TCPV4 => features & tso4 != 0,
        GSO_TCPV6 => features & tso6 != 0,
        _ => false,
    };
    ecn_ok && kind_ok
}

/// Whether the header of a frame the driver sends asks only for offloads
/// it negotiated (the tap checks that what it asks is sane).
pub fn tx_header_allowed(header: &[u8; NET_HDR_LEN], features: u64) -> bool {
    let [flags, gso_type, ..] = *header;
    let csum_ok = match flags {
        0 => true,
        HDR_F_NEEDS_CSUM => features & VIRTIO_NET_F_CSUM != 0,
        _ => false,
    };
    let tso = [
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_ECN,
    ];
    csum_ok && gso_allowed(gso_type, features, tso)
}

/// Completes the header the tap wrote for a frame spread over
/// `num_buffers` buffers, for a driver that accepted `features`; `false`
/// when the frame uses an offload the driver did not accept (one queued
/// before its offloads were set).
pub fn rx_header(header: &mut [u8; NET_HDR_LEN], features: u64, num_buffers: u16) -> bool {
    let [flags, gso_type, ..] = *header;
    if features & VIRTIO_NET_F_GUEST_CSUM == 0 {
        if flags & HDR_F_NEEDS_CSUM != 0 {
            return false;
        }
        // The tap marks checked checksums; without GUEST_CSUM the flags
        // must be zero.
        header[0] = 0;
    } else {
        header[0] = flags & (HDR_F_NEEDS_CSUM | HDR_F_DATA_VALID);
    }
    let tso = [
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_ECN,
    ];
    if !gso_allowed(gso_type, features, tso) {
        return false;
    }
    let [lo, hi] = num_buffers.to_le_bytes();
    header[NUM_BUFFERS_AT] = lo;
    header[NUM_BUFFERS_AT + 1] = hi;
    true
}

/// How many bytes of receive buffers a frame needs before it is read,
/// for a driver with `features`.
fn rx_room(features: u64) -> u64 {
    let tso = VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6;
    let frame = if features & tso != 0 {
        MAX_FRAME
    } else {
        MTU_FRAME
    };
    (NET_HDR_LEN + frame) as u64
}

/// Returns the chains `used` (head, bytes written) of one frame to the
/// driver at once. virtio-queue's `add_used` publishes each entry as it
/// writes it, but a driver that reads a frame's first buffer and its
/// `num_buffers` takes the other buffers as there already: the used
/// index moves past all of them in one store.
fn publish(queue: &mut Queue, mem: &GuestMemory, used: &[(u16, u32)]) -> Result<(), QueueError> {
    let ring_error = |e| QueueError::UsedRing(virtio_queue::Error::GuestMemory(e));
    let overflow = || QueueError::UsedRing(virtio_queue::Error::AddressOverflow);
    let size = queue.size().max(1);
    let ring = GuestAddress(queue.used_ring());
    let mut next = Wrapping(queue.next_used());
    for &(head, len) in used {
        // used_ring: flags (2), idx (2), then 8-byte elements.
        let slot = 4 + 8 * u64::from(next.0 % size);
        let at = ring.checked_add(slot).ok_or_else(overflow)?;
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        element[4..].copy_from_slice(&len.to_le_bytes());
        mem.write_slice(&element, at).map_err(ring_error)?;
        next += Wrapping(1);
    }
    let idx_at = ring.checked_add(2).ok_or_else(overflow)?;
    mem.store(next.0.to_le(), idx_at, Ordering::Release)
        .map_err(ring_error)?;
    queue.set_next_used(next.0);
    Ok(())
}

/// Whether the driver asked to hear of the buffers `queue` used from
/// `old` to `new`: with EVENT_IDX, when the used index passed the
/// `used_event` it published; without, always. Done here rather than by
/// virtio-queue, whose count of entries to signal only `add_used` moves.
fn driver_wants(queue: &Queue, mem: &GuestMemory, old: Wrapping<u16>, new: Wrapping<u16>) -> bool {
    if new == old {
        return false;
    }
    if !queue.event_idx_enabled() {
        return true;
    }
    // The used ring's writes come before the read of used_event.
    fence(Ordering::SeqCst);
    // avail_ring: flags (2), idx (2), size entries, then used_event.
    let at = GuestAddress(queue.avail_ring()).checked_add(4 + 2 * u64::from(queue.size()));
    match at.and_then(|at| mem.read_obj::<u16>(at).ok()) {
        Some(event) => new - Wrapping(u16::from_le(event)) - Wrapping(1) < new - old,
        None => true,
    }
}

/// When transmit completions are signalled. A sending Linux driver reaps
/// them itself before each frame it queues and asks (`used_event`) for
/// an interrupt once 3/4 of what is in flight is done; a device that
/// keeps up makes that one interrupt per few frames, which costs a
/// sender of small datagrams more than the frames. So completions the
/// driver asked to hear of are held back until a batch is done or the
/// driver has queued nothing for [`TX_QUIET`], when a timer on the
/// worker's epoll signals them: an idle driver still hears of every one.
#[derive(Debug)]
struct TxSignal {
    /// The used index when the driver was last interrupted for
    /// transmits, or found not to want to be.
    checked: Wrapping<u16>,
    /// Whether a frame not small was sent since then.
    large: bool,
    /// When a transmit pass last used buffers.
    last_used: Instant,
    /// Wakes the worker to signal held completions; without it (tests
    /// that do not ask for it) none is held.
    timer: Option<TimerFd>,
    /// Whether the timer is set and not yet read. It is set only when
    /// not, so once epoll reports it the read cannot block.
    armed: bool,
}

impl TxSignal {
    fn new(used: u16) -> Self {
        Self {
            checked: Wrapping(used),
            large: false,
            last_used: Instant::now(),
            timer: None,
            armed: false,
        }
    }

    /// Nothing is owed to the driver up to `used`.
    fn settle(&mut self, used: Wrapping<u16>) {
        self.checked = used;
        self.large = false;
    }

    /// Whether the completions since the driver was last interrupted are
    /// a batch to signal at once.
    fn batch_done(&self, used: Wrapping<u16>) -> bool {
        (used - self.checked).0 >= TX_BATCH_FRAMES || self.large
    }

    /// Holds completions back until the driver has been quiet for
    /// [`TX_QUIET`] at `now`: `false` when they cannot be (no timer, or
    /// it cannot be set), so the caller signals them now.
    fn hold(&mut self, now: Instant) -> bool {
        let Some(timer) = &mut self.timer else {
            return false;
        };
        if self.armed {
            // It fires no later than the deadline from the pass that
            // armed it; then it is set again if the driver was not quiet.
            return true;
        }
        let quiet_for = now.saturating_duration_since(self.last_used);
        // Never zero, which would disarm the timer.
        let wait = TX_QUIET
            .saturating_sub(quiet_for)
            .max(Duration::from_micros(1));
        self.armed = timer.reset(wait, None).is_ok();
        self.armed
    }

    /// Consumes the timer's expiry after epoll reported it.
    fn fired(&mut self) {
        if let (Some(timer), true) = (&mut self.timer, self.armed) {
            // Expired and untouched since (see `armed`): returns at once.
            let _ = timer.wait();
            self.armed = false;
        }
    }
}

/// Rate limits of a virtio-net device, one per direction (rx: to the
/// guest, tx: from the guest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetLimits {
    pub rx: RateLimit,
    pub tx: RateLimit,
}

/// What moves frames between the host end and the queues.
pub struct Datapath<T: FrameIo> {
    io: T,
    mem: GuestMemory,
    rx: Queue,
    tx: Queue,
    /// What the driver accepted.
    features: u64,
    /// Receive chains taken from the ring for the next frames: one, or
    /// with mergeable buffers as many as a largest frame needs. A frame
    /// is read from the host end only once they are there, so it never
    /// waits in the VMM.
    rx_chains: VecDeque<Chain>,
    /// The receive used index when the driver was last told of it.
    rx_signalled: Wrapping<u16>,
    /// Whether the last receive stopped for want of buffers: frames wait
    /// in the host end until the driver adds some (and kicks).
    rx_starved: bool,
    /// A transmit the rate limit held back.
    tx_held: Option<Chain>,
    /// When the driver hears of transmit completions.
    tx_signal: TxSignal,
    rx_throttle: Option<Throttle>,
    tx_throttle: Option<Throttle>,
    /// Where used buffers are signalled in the middle of a pass (with
    /// EVENT_IDX); without it, only the pass's end signals.
    interrupt: Option<Arc<Interrupt>>,
    counters: Arc<NetCounters>,
    /// Set when the device is reset: stop before the next frame.
    retired: Retired,
}

impl<T: FrameIo> std::fmt::Debug for Datapath<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("features", &self.features)
            .field("rx_chains", &self.rx_chains.len())
            .finish_non_exhaustive()
    }
}

/// What one pass over the datapath did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    pub rx: bool,
    pub tx: bool,
}

impl<T: FrameIo> Datapath<T> {
    /// A datapath between `io` and the receive and transmit queues, for
    /// a driver that accepted `features`, without rate limits.
    pub fn new(io: T, mem: GuestMemory, rx: Queue, tx: Queue, features: u64) -> Self {
        let rx_signalled = Wrapping(rx.next_used());
        let tx_signal = TxSignal::new(tx.next_used());
        Self {
            io,
            mem,
            rx,
            tx,
            features,
            rx_chains: VecDeque::new(),
            rx_signalled,
            rx_starved: false,
            tx_held: None,
            tx_signal,
            rx_throttle: None,
            tx_throttle: None,
            interrupt: None,
            counters: Arc::default(),
            retired: Retired::default(),
        }
    }

    /// What the datapath counted.
    pub fn counters(&self) -> &NetCounters {
        &self.counters
    }

    fn mergeable(&self) -> bool {
        self.features & VIRTIO_NET_F_MRG_RXBUF != 0
    }

    /// The next chain of `queue`, walked; a malformed one is returned
    /// used and empty and counted, and the next is tried.
    fn next_chain(
        mem: &GuestMemory,
        queue: &mut Queue,
        features: u64,
        counters: &NetCounters,
    ) -> Result<Option<Chain>, QueueError> {
        loop {
            let head = match queue.iter(mem) {
                Ok(mut iter) => iter.next().map(|c| c.head_index()),
                Err(e) => return Err(QueueError::AvailRing(e)),
            };
            let Some(head) = head else { return Ok(None) };
            match chain::walk(mem, Table::of(queue).with_features(features), head) {
                Ok(chain) => return Ok(Some(chain)),
                Err(_) => {
                    counters.errors.inc();
                    queue.add_used(mem, head, 0).map_err(QueueError::UsedRing)?;
                }
            }
        }
    }

    /// Takes receive chains until they hold a largest frame (one chain
    /// without mergeable buffers), or the whole ring when it cannot (a
    /// frame too big for it is then dropped); `false` when the ring has
    /// too few for now. A chain with no room for the header is returned
    /// unused.
    fn gather(&mut self) -> Result<bool, QueueError> {
        let room = if self.mergeable() {
            rx_room(self.features)
        } else {
            1
        };
        loop {
            let held: u64 = self.rx_chains.iter().map(|c| c.writable.len()).sum();
            if held >= room {
                return Ok(true);
            }
            let Some(chain) =
                Self::next_chain(&self.mem, &mut self.rx, self.features, &self.counters)?
            else {
                let whole_ring = self.rx_chains.len() >= usize::from(self.rx.size());
                return Ok(whole_ring);
            };
            if chain.writable.len() < NET_HDR_LEN as u64 {
                self.counters.errors.inc();
                publish(&mut self.rx, &self.mem, &[(chain.head, 0)])?;
            } else {
                self.rx_chains.push_back(chain);
            }
        }
    }

    /// Moves frames from the host end into receive buffers until either
    /// runs out (or the rate limit says stop). Returns whether any
    /// buffer was used.
    pub fn receive(&mut self) -> Result<bool, QueueError> {
        let start = self.rx.next_used();
        // The driver's kicks matter only once the buffers run out.
        self.rx
            .disable_notification(&self.mem)
            .map_err(QueueError::UsedRing)?;
        while !self.retired.is_set() {
            if !self.gather()? {
                // Re-arm the kicks, then look once more: buffers added
                // in between are never missed.
                let more = self
                    .rx
                    .enable_notification(&self.mem)
                    .map_err(QueueError::AvailRing)?;
                if more {
                    continue;
                }
                if !self.rx_starved {
                    self.counters.rx_no_buffers.inc();
                }
                self.rx_starved = true;
                break;
            }
            self.rx_starved = false;
            if let Some(throttle) = &mut self.rx_throttle {
                if !throttle.ready() {
                    self.counters.throttled.inc();
                    break;
                }
            }
            if !self.receive_frame()? {
                break;
            }
        }
        Ok(self.rx.next_used() != start)
    }

    /// Reads one frame into the gathered chains and returns those it
    /// fills used; `false` when none is waiting (or the host end is
    /// gone).
    fn receive_frame(&mut self) -> Result<bool, QueueError> {
        let chains = if self.mergeable() {
            self.rx_chains.len()
        } else {
            1
        };
        let mut into = Buffers::default();
        let segments = self
            .rx_chains
            .iter()
            .take(chains)
            .flat_map(|c| c.writable.segments());
        for segment in segments.take(RX_MAX_SEGMENTS) {
            into.push(*segment);
        }
        let Ok(len) = self.io.read_frame(&self.mem, &into) else {
            return Ok(false); // drained (EAGAIN) or tap gone
        };
        if let Some(throttle) = &mut self.rx_throttle {
            throttle.charge(len.saturating_sub(NET_HDR_LEN) as u64);
        }
        if len as u64 > into.len() || len < NET_HDR_LEN {
            // Larger than the buffers the driver gave: dropped, never cut
            // (a cut frame is a corrupt frame). A single buffer goes back
            // empty, as a NIC's would; mergeable ones take the next frame.
            self.counters.dropped.inc();
            if !self.mergeable() {
                if let Some(chain) = self.rx_chains.pop_front() {
                    publish(&mut self.rx, &self.mem, &[(chain.head, 0)])?;
                }
            }
            return Ok(true);
        }
        let mut used = Vec::new();
        let mut left = len as u64;
        while left > 0 {
            let Some(chain) = self.rx_chains.pop_front() else {
                break;
            };
            let n = left.min(chain.writable.len());
            left -= n;
            used.push((chain.head, u32::try_from(n).unwrap_or(u32::MAX)));
        }
        let mut header = [0u8; NET_HDR_LEN];
        let count = u16::try_from(used.len()).unwrap_or(u16::MAX);
        let header_ok = into.read_into(&self.mem, &mut header).is_some()
            && rx_header(&mut header, self.features, count)
            && into.write_from(&self.mem, &header).is_some();
        if header_ok {
            self.counters.rx_frames.inc();
            self.counters.rx_bytes.add((len - NET_HDR_LEN) as u64);
        } else {
            // An offload the driver did not accept: returned empty.
            self.counters.dropped.inc();
            for entry in &mut used {
                entry.1 = 0;
            }
        }
        publish(&mut self.rx, &self.mem, &used)?;
        if self.rx.event_idx_enabled() && self.rx_interrupt_due() {
            if let Some(interrupt) = &self.interrupt {
                interrupt.used_ring();
            }
        }
        Ok(true)
    }

    /// Sends every frame the driver queued for transmission (or until the
    /// rate limit says stop). Returns whether any buffer was used.
    pub fn transmit(&mut self) -> Result<bool, QueueError> {
        let start = self.tx.next_used();
        drain_quietly(self, |s| (&mut s.tx, &s.mem), Self::drain_tx)?;
        let used = self.tx.next_used() != start;
        if used {
            self.tx_signal.last_used = Instant::now();
        }
        Ok(used)
    }

    /// Sends frames until the ring is empty or the rate limit or a reset
    /// stops it.
    fn drain_tx(&mut self) -> Result<Drained, QueueError> {
        loop {
            if self.retired.is_set() {
                return Ok(Drained::Paused);
            }
            let chain = match self.tx_held.take() {
                Some(chain) => chain,
                None => {
                    match Self::next_chain(&self.mem, &mut self.tx, self.features, &self.counters)?
                    {
                        Some(chain) => chain,
                        None => return Ok(Drained::Empty),
                    }
                }
            };
            let frame_len = chain.readable.len().saturating_sub(NET_HDR_LEN as u64);
            if let Some(throttle) = &mut self.tx_throttle {
                if !throttle.admit(frame_len) {
                    self.counters.throttled.inc();
                    self.tx_held = Some(chain);
                    return Ok(Drained::Paused);
                }
            }
            self.send(&chain);
            self.tx
                .add_used(&self.mem, chain.head, 0)
                .map_err(QueueError::UsedRing)?;
            self.tx_signal.large |= frame_len >= TX_SMALL_FRAME;
            // A batch is signalled in the middle of a long pass, so the
            // driver frees its buffers while the device sends the next.
            if let Some(interrupt) = self.interrupt.clone() {
                let used = Wrapping(self.tx.next_used());
                if self.tx_signal.batch_done(used) && self.tx_interrupt_due(Instant::now()) {
                    interrupt.used_ring();
                }
            }
        }
    }

    /// Sends the frame of one transmit chain, or drops and counts it.
    fn send(&mut self, chain: &Chain) {
        let mut frame = chain.readable.clone();
        let mut header = [0u8; NET_HDR_LEN];
        // The header is copied before it is checked, so the guest cannot
        // change it between the check and the write.
        let header_read = frame
            .split_front(NET_HDR_LEN as u64)
            .and_then(|h| h.read_into(&self.mem, &mut header));
        if header_read.is_none() || !tx_header_allowed(&header, self.features) {
            self.counters.errors.inc();
            return;
        }
        if frame.len() > MAX_FRAME as u64 {
            // Over the limit: dropped whole, as a NIC drops a giant.
            self.counters.dropped.inc();
            return;
        }
        // A frame the host side refuses (tap down, queue full, a header
        // it finds insane) is lost, as on a wire.
        match self.io.write_frame(&header, &self.mem, &frame) {
            Ok(_) => {
                self.counters.tx_frames.inc();
                self.counters.tx_bytes.add(frame.len());
            }
            Err(_) => self.counters.dropped.inc(),
        }
    }

    /// Whether the driver wants to hear of the receive buffers used since
    /// it was last told.
    fn rx_interrupt_due(&mut self) -> bool {
        let new = Wrapping(self.rx.next_used());
        let old = std::mem::replace(&mut self.rx_signalled, new);
        driver_wants(&self.rx, &self.mem, old, new)
    }

    /// Whether to interrupt the driver now for the transmit buffers used
    /// since it was last told, at `now`: when it asked to hear of them
    /// and they are a batch, or it has been quiet long enough, or they
    /// cannot be held back. Otherwise they are held (see [`TxSignal`]).
    fn tx_interrupt_due(&mut self, now: Instant) -> bool {
        let used = Wrapping(self.tx.next_used());
        let signal = &mut self.tx_signal;
        if !driver_wants(&self.tx, &self.mem, signal.checked, used) {
            // Reaped by the driver, or not asked for yet.
            signal.settle(used);
            return false;
        }
        let quiet = now.saturating_duration_since(signal.last_used) >= TX_QUIET;
        if signal.batch_done(used) || quiet || !signal.hold(now) {
            signal.settle(used);
            return true;
        }
        false
    }

    /// The timer that signals held transmit completions, for the worker
    /// to wait on.
    fn tx_deadline_fd(&self) -> Option<RawFd> {
        self.tx_signal.timer.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Whether to interrupt the driver once the timer of held transmit
    /// completions fired (it is set again if the driver is still busy).
    pub fn tx_deadline_passed(&mut self) -> bool {
        self.tx_signal.fired();
        self.tx_interrupt_due(Instant::now())
    }

    /// Whether the last receive stopped because the driver gave too few
    /// buffers: until its next receive kick the host end need not be
    /// watched.
    pub fn rx_starved(&self) -> bool {
        self.rx_starved
    }

    /// Whether the driver wants an interrupt after `used`.
    pub fn needs_interrupt(&mut self, used: Used) -> bool {
        let rx = used.rx && self.rx_interrupt_due();
        let tx = used.tx && self.tx_interrupt_due(Instant::now());
        rx || tx
    }
}

/// A virtio network device over a tap (or, in tests, another host end).
#[derive(Debug)]
pub struct Net<T: HostEnd = Tap> {
    name: String,
    tap: Arc<T>,
    config: [u8; 8],
    limits: NetLimits,
    counters: Arc<NetCounters>,
    /// The one that serves both queues, while activated.
    workers: Workers,
}

impl<T: HostEnd> Net<T> {
    /// A device whose host end is `tap`, with guest MAC `mac`.
    pub fn new(tap: T, mac: MacAddr) -> Self {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac.0);
        config[6..].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        Self {
            name: format!("virtio-net {}", tap.name()),
            tap: Arc::new(tap),
            config,
            limits: NetLimits::default(),
            counters: Arc::default(),
            workers: Workers::default(),
        }
    }

    /// Holds the guest to `limits`.
    pub fn with_rate_limits(mut self, limits: NetLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// What stops a pass of the worker and marks the device broken.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot change what the worker watches: {0}")]
    Poll(std::io::Error),
}

/// Worker event sources, in order.
const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;
const TAP: usize = 2;
const RX_TIMER: usize = 3;
const TX_TIMER: usize = 4;
const TX_DEADLINE: usize = 5;

fn throttle(name: &str, limit: RateLimit) -> Result<Option<Throttle>, ActivateError> {
    if limit.is_unlimited() {
        return Ok(None);
    }
    Throttle::new(limit)
        .map(Some)
        .map_err(|source| ActivateError::Worker {
            device: name.to_string(),
            source,
        })
}

impl<T: HostEnd> VirtioDevice for Net<T> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        FEATURES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn metrics(&self) -> Arc<dyn DeviceMetrics> {
        self.counters.clone()
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let [rx, tx] = expect_queues(&self.name, queues)?;
        // The last activation's worker, if a reset left it finishing,
        // must be done before another serves the queues.
        self.workers.stop(&self.name)?;
        self.tap
            .set_offload(tap_offloads(features))
            .map_err(|source| ActivateError::Tap {
                device: self.name.clone(),
                source,
            })?;
        let mut path = Datapath::new(self.tap.clone(), mem, rx.queue, tx.queue, features);
        self.counters.features.set(features);
        path.counters = self.counters.clone();
        path.interrupt = Some(interrupt.clone());
        path.rx_throttle = throttle(&self.name, self.limits.rx)?;
        path.tx_throttle = throttle(&self.name, self.limits.tx)?;
        path.tx_signal.timer = Some(TimerFd::new().map_err(|source| ActivateError::Worker {
            device: self.name.clone(),
            source: source.into(),
        })?);
        let retired = path.retired.clone();
        let mut sources = vec![
            (rx.notify.as_raw_fd(), false),
            (tx.notify.as_raw_fd(), false),
            (self.tap.as_raw_fd(), true),
        ];
        // What each source is: the limits' timers exist only with a limit.
        let mut kinds = vec![RX_QUEUE, TX_QUEUE, TAP];
        if let Some(fd) = path.tx_deadline_fd() {
            sources.push((fd, false));
            kinds.push(TX_DEADLINE);
        }
        for (throttle, kind) in [(&path.rx_throttle, RX_TIMER), (&path.tx_throttle, TX_TIMER)] {
            if let Some(t) = throttle {
                sources.push((t.timer_fd(), false));
                kinds.push(kind);
            }
        }
        let (rx_evt, tx_evt) = (rx.notify, tx.notify);
        let worker = Worker::start(
            &self.name,
            ThreadKind::Worker,
            sources,
            interrupt,
            retired,
            move |source, sources| {
                let source = kinds.get(source).copied().unwrap_or(usize::MAX);
                let used = match source {
                    RX_QUEUE => {
                        let _ = rx_evt.read();
                        Used {
                            rx: path.receive()?,
                            tx: false,
                        }
                    }
                    TX_QUEUE => {
                        let _ = tx_evt.read();
                        Used {
                            rx: false,
                            tx: path.transmit()?,
                        }
                    }
                    TAP => Used {
                        rx: path.receive()?,
                        tx: false,
                    },
                    RX_TIMER => {
                        if let Some(t) = &mut path.rx_throttle {
                            t.timer_fired();
                        }
                        Used {
                            rx: path.receive()?,
                            tx: false,
                        }
                    }
                    TX_TIMER => {
                        if let Some(t) = &mut path.tx_throttle {
                            t.timer_fired();
                        }
                        Used {
                            rx: false,
                            tx: path.transmit()?,
                        }
                    }
                    // Nothing moved, and the tap's watch stays as it was.
                    TX_DEADLINE => return Ok(path.tx_deadline_passed()),
                    _ => Used::default(),
                };
                // Frames waiting in a starved tap would wake the worker for
                // each one that arrives, in vain: it is not watched until the
                // driver's receive kick brings buffers.
                let watched = if path.rx_starved() {
                    sources.pause(TAP)
                } else {
                    sources.resume(TAP)
                };
                watched.map_err(PassError::Poll)?;
                Ok::<_, PassError>(path.needs_interrupt(used))
            },
        )?;
        self.workers.push(worker);
        Ok(())
    }

    /// Returns once the worker has ended: at most the frame in hand when
    /// the driver reset the device is still returned used, before.
    fn reset(&mut self) -> Result<(), ResetError> {
        self.workers.stop(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::chain::tests::{INDIRECT, NEXT, WRITE, desc, write_table};
    use std::sync::Mutex;
    use std::sync::mpsc::{Receiver, Sender, channel};
    use virtio_queue::mock::MockSplitQueue;
    use vmm_sys_util::eventfd::EventFd;

    /// A host end that hands over scripted frames (header included, as a
    /// tap does) and records sent ones as (header, frame).
    #[derive(Default)]
    struct Script {
        incoming: Mutex<VecDeque<Vec<u8>>>,
        sent: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    }

    impl FrameIo for Script {
        fn read_frame(&self, mem: &GuestMemory, into: &Buffers) -> std::io::Result<usize> {
            let frame = self.incoming.lock().unwrap().pop_front();
            let frame = frame.ok_or(std::io::ErrorKind::WouldBlock)?;
            let n = frame.len().min(usize::try_from(into.len()).unwrap());
            into.write_from(mem, &frame[..n]).unwrap();
            Ok(frame.len())
        }
        fn write_frame(
            &self,
            header: &[u8],
            mem: &GuestMemory,
            frame: &Buffers,
        ) -> std::io::Result<usize> {
            let mut bytes = vec![0u8; usize::try_from(frame.len()).unwrap()];
            frame.read_into(mem, &mut bytes).unwrap();
            let n = header.len() + bytes.len();
            self.sent.lock().unwrap().push((header.to_vec(), bytes));
            Ok(n)
        }
    }

    const HDR: u32 = 12;
    const RX_RING: u64 = 0;
    const TX_RING: u64 = 0x8000;
    const RX_BUF: u64 = 0x10_0000;
    const TX_BUF: u64 = 0x20_0000;
    /// What a Linux driver accepts of what the device offers.
    const ALL: u64 = FEATURES;
    const OFFLOADS: u64 = FEATURES & !VIRTIO_NET_F_MRG_RXBUF;

    fn datapath<'a>(
        mem: &'a GuestMemory,
        script: &Arc<Script>,
        features: u64,
    ) -> (
        MockSplitQueue<'a, GuestMemory>,
        MockSplitQueue<'a, GuestMemory>,
        Datapath<Arc<Script>>,
    ) {
        let rxq = MockSplitQueue::create(mem, GuestAddress(RX_RING), 256);
        let txq = MockSplitQueue::create(mem, GuestAddress(TX_RING), 256);
        let path = Datapath::new(
            script.clone(),
            mem.clone(),
            rxq.create_queue().unwrap(),
            txq.create_queue().unwrap(),
            features,
        );
        (rxq, txq, path)
    }

    /// (head, length) of used entry `i`.
    fn used(q: &MockSplitQueue<'_, GuestMemory>, i: u16) -> (u32, u32) {
        let e = q.used().ring().ref_at(i.into()).unwrap().load();
        (e.id(), e.len())
    }

    fn used_len(q: &MockSplitQueue<'_, GuestMemory>, i: u16) -> u32 {
        used(q, i).1
    }

    fn frame(byte: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| byte.wrapping_add(i.to_le_bytes()[0]))
            .collect()
    }

    /// A frame as the tap hands it over: `header`, then the frame.
    fn from_tap(header: [u8; NET_HDR_LEN], frame: &[u8]) -> Vec<u8> {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(frame);
        bytes
    }

    fn plain(frame: &[u8]) -> Vec<u8> {
        from_tap([0; NET_HDR_LEN], frame)
    }

    fn read(mem: &GuestMemory, at: u64, len: usize) -> Vec<u8> {
        let mut got = vec![0u8; len];
        mem.read_slice(&mut got, GuestAddress(at)).unwrap();
        got
    }

    /// Hands the host end `frames` and the guest two receive buffers of
    /// `len` bytes.
    fn two_buffers_and(
        script: &Script,
        rxq: &MockSplitQueue<'_, GuestMemory>,
        len: u32,
        frames: [Vec<u8>; 2],
    ) {
        script.incoming.lock().unwrap().extend(frames);
        rxq.add_desc_chains(
            &[
                desc(RX_BUF, len, WRITE, 0),
                desc(RX_BUF + 0x1000, len, WRITE, 0),
            ],
            0,
        )
        .unwrap();
    }

    /// Queues a transmit of `frame` behind `header`, in one buffer.
    fn queue_tx(
        mem: &GuestMemory,
        txq: &MockSplitQueue<'_, GuestMemory>,
        header: [u8; NET_HDR_LEN],
        frame: &[u8],
    ) {
        mem.write_slice(&from_tap(header, frame), GuestAddress(TX_BUF))
            .unwrap();
        let len = HDR + u32::try_from(frame.len()).unwrap();
        txq.add_desc_chains(&[desc(TX_BUF, len, 0, 0)], 0).unwrap();
    }

    #[test]
    fn a_frame_waiting_for_a_receive_buffer_survives_transmits() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, txq, mut path) = datapath(&mem, &script, 0);
        // A frame arrives while the guest has no receive buffer: it stays
        // with the host end.
        let incoming = frame(0x11, 1000);
        script.incoming.lock().unwrap().push_back(plain(&incoming));
        assert!(!path.receive().unwrap());
        assert_eq!(script.incoming.lock().unwrap().len(), 1);
        assert!(path.rx_starved(), "the host end need not be watched");
        assert_eq!(path.counters().rx_no_buffers.get(), 1);
        // The guest transmits a bigger frame meanwhile.
        let outgoing = frame(0x22, 1400);
        queue_tx(&mem, &txq, [0; NET_HDR_LEN], &outgoing);
        assert!(path.transmit().unwrap());
        assert_eq!(script.sent.lock().unwrap()[0].1, outgoing);
        // Then it gives a receive buffer: it gets the frame that arrived,
        // with its own length and num_buffers 1.
        rxq.add_desc_chains(&[desc(RX_BUF, 2048, WRITE, 0)], 0)
            .unwrap();
        assert!(path.receive().unwrap());
        assert_eq!(used_len(&rxq, 0), HDR + 1000);
        assert_eq!(read(&mem, RX_BUF, NET_HDR_LEN)[10..], [1, 0]);
        assert_eq!(read(&mem, RX_BUF + u64::from(HDR), 1000), incoming);
        assert!(path.rx_starved(), "its only buffer is used");
        // A buffer given with no frame waiting: the host end is watched.
        rxq.add_desc_chains(&[desc(RX_BUF, 2048, WRITE, 0)], 1)
            .unwrap();
        assert!(!path.receive().unwrap());
        assert!(!path.rx_starved());
        assert_eq!(path.counters().rx_no_buffers.get(), 2);
    }

    #[test]
    fn oversize_frames_are_dropped_and_counted_never_cut() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, txq, mut path) = datapath(&mem, &script, 0);
        // Received: one larger than the guest's buffer, then one that fits.
        two_buffers_and(
            &script,
            &rxq,
            512,
            [plain(&frame(1, 600)), plain(&frame(2, 100))],
        );
        assert!(path.receive().unwrap());
        assert_eq!(used_len(&rxq, 0), 0, "dropped, the buffer returned empty");
        assert_eq!(used_len(&rxq, 1), HDR + 100);
        // Transmitted: one over the 64 KiB limit (spread over buffers).
        let mut descs = vec![desc(TX_BUF, HDR, NEXT, 1)];
        descs.extend((0..3u16).map(|i| desc(TX_BUF, 30_000, NEXT, i + 2)));
        descs.push(desc(TX_BUF, 10, 0, 0));
        descs.push(desc(TX_BUF + 0x1000, HDR + 60, 0, 0));
        mem.write_slice(&[0u8; NET_HDR_LEN], GuestAddress(TX_BUF))
            .unwrap();
        mem.write_slice(&[0u8; NET_HDR_LEN], GuestAddress(TX_BUF + 0x1000))
            .unwrap();
        txq.add_desc_chains(&descs, 0).unwrap();
        assert!(path.transmit().unwrap());
        let sent = script.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.len(), 60);
        assert_eq!(path.counters().dropped.get(), 2);
    }

    #[test]
    fn a_receive_rate_limit_holds_frames_back() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, _txq, mut path) = datapath(&mem, &script, 0);
        path.rx_throttle = Some(
            Throttle::new(RateLimit {
                bytes_per_sec: 0,
                ops_per_sec: 1,
            })
            .unwrap(),
        );
        two_buffers_and(
            &script,
            &rxq,
            512,
            [plain(&frame(1, 60)), plain(&frame(2, 60))],
        );
        assert!(path.receive().unwrap());
        assert_eq!(rxq.used().idx().load(), 1, "the second frame waits");
        assert_eq!(script.incoming.lock().unwrap().len(), 1);
        assert_eq!(path.rx_chains.len(), 1, "with its buffer");
        assert_eq!(path.counters().throttled.get(), 1);
    }

    #[test]
    fn a_fragmented_frame_in_an_indirect_table_is_sent_whole_when_negotiated() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        // The header, then the frame in two fragments: one ring entry.
        let outgoing = frame(0x33, 3000);
        mem.write_slice(&[0u8; NET_HDR_LEN], GuestAddress(TX_BUF))
            .unwrap();
        mem.write_slice(&outgoing, GuestAddress(TX_BUF + 0x1000))
            .unwrap();
        const TABLE: u64 = 0x30_0000;
        write_table(
            &mem,
            TABLE,
            &[
                desc(TX_BUF, HDR, NEXT, 1),
                desc(TX_BUF + 0x1000, 1000, NEXT, 2),
                desc(TX_BUF + 0x1000 + 1000, 2000, 0, 0),
            ],
        );
        for (features, sent) in [(ALL, 1), (ALL & !VIRTIO_RING_F_INDIRECT_DESC, 0)] {
            script.sent.lock().unwrap().clear();
            let (_rxq, txq, mut path) = datapath(&mem, &script, features);
            txq.add_desc_chains(&[desc(TABLE, 3 * 16, INDIRECT, 0)], 0)
                .unwrap();
            assert!(path.transmit().unwrap());
            assert_eq!(txq.used().idx().load(), 1);
            let got = script.sent.lock().unwrap();
            assert_eq!(got.len(), sent, "features {features:#x}");
            if sent == 1 {
                assert_eq!(got[0].1, outgoing);
            } else {
                assert_eq!(path.counters().errors.get(), 1);
            }
        }
    }

    #[test]
    fn a_malformed_chain_fails_its_frame_only() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (_rxq, txq, mut path) = datapath(&mem, &script, 0);
        mem.write_slice(&[0u8; NET_HDR_LEN], GuestAddress(TX_BUF))
            .unwrap();
        txq.add_desc_chains(
            &[
                desc(0xdead_0000_0000, 100, 0, 0),
                desc(TX_BUF, 4, 0, 0),
                desc(TX_BUF, 4, 4, 0),
                desc(TX_BUF, HDR + 60, 0, 0),
            ],
            0,
        )
        .unwrap();
        assert!(path.transmit().unwrap());
        assert_eq!(txq.used().idx().load(), 4);
        assert_eq!(script.sent.lock().unwrap().len(), 1);
        assert_eq!(path.counters().errors.get(), 3);
    }

    #[test]
    fn the_tap_offers_the_guest_only_the_offloads_it_accepted() {
        assert_eq!(tap_offloads(0), 0);
        assert_eq!(
            tap_offloads(ALL),
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
        );
        assert_eq!(
            tap_offloads(VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4),
            TUN_F_CSUM | TUN_F_TSO4
        );
        // Segmentation without checksum offload, or ECN without
        // segmentation, is not something the tap can do.
        assert_eq!(tap_offloads(VIRTIO_NET_F_GUEST_TSO4), 0);
        assert_eq!(
            tap_offloads(VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_ECN),
            TUN_F_CSUM
        );
        // Host-side (transmit) offloads do not touch the tap's.
        assert_eq!(tap_offloads(VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4), 0);
    }

    #[test]
    fn a_transmit_header_may_ask_only_for_negotiated_offloads() {
        let header = |flags, gso| {
            let mut h = [0u8; NET_HDR_LEN];
            h[0] = flags;
            h[1] = gso;
            h
        };
        assert!(tx_header_allowed(&header(0, GSO_NONE), 0));
        assert!(!tx_header_allowed(&header(HDR_F_NEEDS_CSUM, GSO_NONE), 0));
        assert!(tx_header_allowed(
            &header(HDR_F_NEEDS_CSUM, GSO_NONE),
            VIRTIO_NET_F_CSUM
        ));
        assert!(!tx_header_allowed(&header(HDR_F_NEEDS_CSUM, GSO_TCPV4), 0));
        assert!(tx_header_allowed(&header(HDR_F_NEEDS_CSUM, GSO_TCPV4), ALL));
        assert!(tx_header_allowed(&header(HDR_F_NEEDS_CSUM, GSO_TCPV6), ALL));
        let no_ecn = ALL & !VIRTIO_NET_F_HOST_ECN;
        let v4_ecn = header(HDR_F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN);
        assert!(tx_header_allowed(&v4_ecn, ALL));
        assert!(!tx_header_allowed(&v4_ecn, no_ecn));
        // UDP fragmentation (3), the ECN bit alone, receive-only flags.
        assert!(!tx_header_allowed(&header(HDR_F_NEEDS_CSUM, 3), ALL));
        assert!(!tx_header_allowed(&header(0, GSO_ECN), ALL));
        assert!(!tx_header_allowed(&header(HDR_F_DATA_VALID, GSO_NONE), ALL));
    }

    #[test]
    fn a_receive_header_is_completed_for_what_the_driver_accepted() {
        // A checked checksum: the flag goes only to a driver that knows it.
        let mut h = [0u8; NET_HDR_LEN];
        h[0] = HDR_F_DATA_VALID;
        assert!(rx_header(&mut h, 0, 1));
        assert_eq!(h, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        h[0] = HDR_F_DATA_VALID;
        assert!(rx_header(&mut h, ALL, 300));
        assert_eq!(h[0], HDR_F_DATA_VALID);
        assert_eq!(h[10..], [44, 1]);
        // A segmented frame with a partial checksum: only for a driver
        // that accepted both.
        let mut gso = [0u8; NET_HDR_LEN];
        gso[0] = HDR_F_NEEDS_CSUM;
        gso[1] = GSO_TCPV4;
        assert!(rx_header(&mut gso.clone(), ALL, 1));
        assert!(!rx_header(&mut gso.clone(), 0, 1));
        assert!(!rx_header(
            &mut gso.clone(),
            VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO6,
            1
        ));
    }

    #[test]
    fn offload_headers_pass_between_the_guest_and_the_host_end() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, txq, mut path) = datapath(&mem, &script, OFFLOADS);
        // Sent: a TSO frame with a partial checksum reaches the host end
        // with its header as the guest wrote it.
        let mut tso = [0u8; NET_HDR_LEN];
        tso[..10].copy_from_slice(&[HDR_F_NEEDS_CSUM, GSO_TCPV4, 54, 0, 0xa8, 5, 34, 0, 16, 0]);
        let big = frame(7, 9000);
        queue_tx(&mem, &txq, tso, &big);
        assert!(path.transmit().unwrap());
        assert_eq!(script.sent.lock().unwrap()[0], (tso.to_vec(), big.clone()));
        // Received: the same, into one buffer (no mergeable buffers).
        script
            .incoming
            .lock()
            .unwrap()
            .push_back(from_tap(tso, &big));
        rxq.add_desc_chains(&[desc(RX_BUF, 0x1_0000 + HDR, WRITE, 0)], 0)
            .unwrap();
        assert!(path.receive().unwrap());
        assert_eq!(used_len(&rxq, 0), HDR + 9000);
        let mut want = tso;
        want[10] = 1;
        assert_eq!(read(&mem, RX_BUF, NET_HDR_LEN), want);
        assert_eq!(read(&mem, RX_BUF + u64::from(HDR), 9000), big);
    }

    #[test]
    fn a_frame_spreads_over_mergeable_buffers_published_at_once() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        // No segmentation: a frame needs 1534 bytes of buffers.
        let features = VIRTIO_NET_F_MRG_RXBUF;
        let (rxq, _txq, mut path) = datapath(&mem, &script, features);
        let one = frame(3, 1500);
        let two = frame(9, 100);
        script
            .incoming
            .lock()
            .unwrap()
            .extend([plain(&one), plain(&two)]);
        // Four 600-byte buffers (and the ring's usual zero-length and
        // header-short ones, refused).
        let descs: Vec<_> = (0..4u64)
            .map(|i| desc(RX_BUF + i * 0x1000, 600, WRITE, 0))
            .chain([desc(RX_BUF + 0x8000, 0, WRITE, 0)])
            .chain([desc(RX_BUF + 0x9000, 11, WRITE, 0)])
            .collect();
        rxq.add_desc_chains(&descs, 0).unwrap();
        assert!(path.receive().unwrap());
        // The first frame's 1512 bytes fill three buffers, published at
        // once.
        assert_eq!(used(&rxq, 0), (0, 600));
        assert_eq!(used(&rxq, 1), (1, 600));
        assert_eq!(used(&rxq, 2), (2, 312));
        let mut got = read(&mem, RX_BUF, 600);
        got.extend(read(&mem, RX_BUF + 0x1000, 600));
        got.extend(read(&mem, RX_BUF + 0x2000, 312));
        assert_eq!(got[10..12], [3, 0], "num_buffers");
        assert_eq!(got[NET_HDR_LEN..], one);
        // The refused buffers came back empty; the 4th is held.
        assert_eq!(used(&rxq, 3), (4, 0));
        assert_eq!(used(&rxq, 4), (5, 0));
        assert_eq!(rxq.used().idx().load(), 5);
        assert_eq!(path.counters().errors.get(), 2);
        // 600 bytes held are fewer than a frame may need: the second
        // frame waits with the host end.
        assert_eq!(script.incoming.lock().unwrap().len(), 1);
        // More buffers: the waiting frame goes into the held one.
        rxq.add_desc_chains(&[desc(RX_BUF + 0xa000, 2048, WRITE, 0)], 6)
            .unwrap();
        assert!(path.receive().unwrap());
        assert_eq!(used(&rxq, 5), (3, HDR + 100));
        assert_eq!(read(&mem, RX_BUF + 0x3000 + u64::from(HDR), 100), two);
        assert_eq!(path.counters().rx_frames.get(), 2);
    }

    #[test]
    fn a_frame_larger_than_all_mergeable_buffers_is_dropped_and_they_stay() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, _txq, mut path) = datapath(&mem, &script, VIRTIO_NET_F_MRG_RXBUF);
        // A jumbo frame (a tap with a large MTU), then a small one.
        two_buffers_and(
            &script,
            &rxq,
            1024,
            [plain(&frame(1, 4000)), plain(&frame(2, 64))],
        );
        assert!(path.receive().unwrap());
        assert_eq!(path.counters().dropped.get(), 1);
        assert_eq!(rxq.used().idx().load(), 1, "only the small frame");
        assert_eq!(used(&rxq, 0), (0, HDR + 64));
        assert_eq!(read(&mem, RX_BUF + u64::from(HDR), 64), frame(2, 64));
    }

    #[test]
    fn with_event_idx_the_driver_hears_when_it_asked_and_kicks_are_rearmed() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, txq, mut path) = datapath(&mem, &script, ALL);
        path.rx.set_event_idx(true);
        path.tx.set_event_idx(true);
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        path.interrupt = Some(Arc::new(Interrupt::new(irq.try_clone().unwrap())));
        // used_event (after the available ring) and avail_event (after
        // the used ring) of a 256-entry queue.
        let used_event = |q: &Queue| GuestAddress(q.avail_ring() + 4 + 2 * 256);
        let avail_event = |q: &Queue| GuestAddress(q.used_ring() + 4 + 8 * 256);
        // The driver asks to hear once the third entry is used.
        mem.write_obj(2u16.to_le(), used_event(&path.rx)).unwrap();
        let bufs: Vec<_> = (0..20u64)
            .map(|i| desc(RX_BUF + i * 0x2000, 0x1100, WRITE, 0))
            .collect();
        rxq.add_desc_chains(&bufs, 0).unwrap();
        let frames = (0..8u8).map(|i| plain(&frame(i, 60)));
        script
            .incoming
            .lock()
            .unwrap()
            .extend(frames.clone().take(3));
        assert!(path.receive().unwrap());
        assert_eq!(rxq.used().idx().load(), 3);
        assert_eq!(irq.read().unwrap(), 1, "one interrupt, at the third");
        assert!(!path.needs_interrupt(Used {
            rx: true,
            tx: false
        }));
        // More frames than the buffers left hold a largest frame for: the
        // rest wait, and the driver is asked to kick at its next buffer.
        script.incoming.lock().unwrap().extend(frames.skip(3));
        assert!(path.receive().unwrap());
        assert_eq!(rxq.used().idx().load(), 5);
        assert_eq!(script.incoming.lock().unwrap().len(), 3);
        let event: u16 = mem.read_obj(avail_event(&path.rx)).unwrap();
        assert_eq!(u16::from_le(event), 20);
        // Transmit re-arms its kicks once the ring is drained.
        queue_tx(&mem, &txq, [0; NET_HDR_LEN], &frame(1, 60));
        assert!(path.transmit().unwrap());
        let event: u16 = mem.read_obj(avail_event(&path.tx)).unwrap();
        assert_eq!(u16::from_le(event), 1);
    }

    #[test]
    fn a_ring_too_small_for_a_largest_frame_still_takes_the_frames_it_can() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let rxq = MockSplitQueue::create(&mem, GuestAddress(RX_RING), 4);
        let txq = MockSplitQueue::create(&mem, GuestAddress(TX_RING), 4);
        let mut path = Datapath::new(
            script.clone(),
            mem.clone(),
            rxq.create_queue().unwrap(),
            txq.create_queue().unwrap(),
            ALL,
        );
        // Four 4 KiB buffers are all the ring holds: less than a 64 KiB
        // segment, enough for these.
        let bufs: Vec<_> = (0..4u64)
            .map(|i| desc(RX_BUF + i * 0x1000, 0x1000, WRITE, 0))
            .collect();
        rxq.add_desc_chains(&bufs, 0).unwrap();
        script
            .incoming
            .lock()
            .unwrap()
            .extend([plain(&frame(1, 20_000)), plain(&frame(2, 6000))]);
        assert!(path.receive().unwrap());
        assert_eq!(path.counters().dropped.get(), 1);
        assert_eq!(used(&rxq, 0), (0, 4096));
        assert_eq!(used(&rxq, 1), (1, HDR + 6000 - 4096));
        assert_eq!(path.counters().rx_frames.get(), 1);
    }

    /// A datapath whose driver negotiated EVENT_IDX and asks (used_event
    /// 0) to hear of its first transmit, with the deadline timer and an
    /// interrupt line whose count the returned eventfd reads.
    fn coalescing<'a>(
        mem: &'a GuestMemory,
        script: &Arc<Script>,
    ) -> (
        MockSplitQueue<'a, GuestMemory>,
        Datapath<Arc<Script>>,
        vmm_sys_util::eventfd::EventFd,
    ) {
        let (_, txq, mut path) = datapath(mem, script, ALL);
        path.tx.set_event_idx(true);
        path.tx_signal.timer = Some(TimerFd::new().unwrap());
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        path.interrupt = Some(Arc::new(Interrupt::new(irq.try_clone().unwrap())));
        set_tx_used_event(mem, &path, 0);
        (txq, path, irq)
    }

    /// What the driver publishes as the transmit used index it next wants
    /// to hear of (after the available ring of a 256-entry queue).
    fn set_tx_used_event(mem: &GuestMemory, path: &Datapath<Arc<Script>>, event: u16) {
        let at = GuestAddress(path.tx.avail_ring() + 4 + 2 * 256);
        mem.write_obj(event.to_le(), at).unwrap();
    }

    /// Queues `n` transmits of `len`-byte frames and runs one pass; says
    /// whether its end interrupts the driver.
    fn transmit_pass(
        mem: &GuestMemory,
        txq: &MockSplitQueue<'_, GuestMemory>,
        path: &mut Datapath<Arc<Script>>,
        n: u16,
        len: usize,
    ) -> bool {
        mem.write_slice(&plain(&frame(7, len)), GuestAddress(TX_BUF))
            .unwrap();
        let len = HDR + u32::try_from(len).unwrap();
        let next = path.tx.next_avail();
        let chains: Vec<_> = (0..n).map(|_| desc(TX_BUF, len, 0, 0)).collect();
        txq.add_desc_chains(&chains, next % 256).unwrap();
        assert!(path.transmit().unwrap());
        path.needs_interrupt(Used {
            rx: false,
            tx: true,
        })
    }

    /// Waits up to `within` for the deadline timer; then whether its pass
    /// interrupts the driver, or `None` when it never fired.
    fn deadline(path: &mut Datapath<Arc<Script>>, within: Duration) -> Option<bool> {
        use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
        let epoll = Epoll::new().unwrap();
        let fd = path.tx_deadline_fd().unwrap();
        epoll
            .ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, 0))
            .unwrap();
        let mut events = [EpollEvent::default()];
        let ms = i32::try_from(within.as_millis()).unwrap();
        let ready = epoll.wait(ms, &mut events).unwrap();
        (ready == 1).then(|| path.tx_deadline_passed())
    }

    /// How many interrupts the deadline timer brings until it stops firing.
    fn interrupts_by_deadline(path: &mut Datapath<Arc<Script>>) -> u32 {
        let mut interrupts = 0;
        while let Some(signal) = deadline(path, 10 * TX_QUIET) {
            interrupts += u32::from(signal);
        }
        interrupts
    }

    /// No interrupt is pending on `irq`.
    fn quiet(irq: &vmm_sys_util::eventfd::EventFd) -> bool {
        irq.read().is_err()
    }

    #[test]
    fn transmit_completions_within_the_deadline_take_one_interrupt() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (txq, mut path, irq) = coalescing(&mem, &script);
        // Ten small datagrams, one a pass, as a sender queues them: each
        // done at once, none signalled yet.
        for _ in 0..10 {
            assert!(!transmit_pass(&mem, &txq, &mut path, 1, 64));
        }
        assert_eq!(script.sent.lock().unwrap().len(), 10);
        assert_eq!(txq.used().idx().load(), 10);
        assert!(quiet(&irq));
        // The driver still wants to hear (used_event 0): the deadline
        // signals all ten with one interrupt, however often it fires, and
        // then stops firing.
        assert_eq!(interrupts_by_deadline(&mut path), 1);
        assert!(quiet(&irq), "none raised in a pass");
        // An idle driver that asks to hear of its next datagram does, by
        // the deadline.
        set_tx_used_event(&mem, &path, 10);
        assert!(!transmit_pass(&mem, &txq, &mut path, 1, 64));
        assert_eq!(interrupts_by_deadline(&mut path), 1);
    }

    #[test]
    fn a_batch_of_transmit_completions_is_signalled_at_once() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (txq, mut path, irq) = coalescing(&mem, &script);
        // 100 small datagrams in one pass: the 64th is a batch, signalled
        // in the middle of the pass; the driver asked for nothing after.
        assert!(!transmit_pass(&mem, &txq, &mut path, 100, 64));
        assert_eq!(txq.used().idx().load(), 100);
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(interrupts_by_deadline(&mut path), 0, "nothing held");
        // A frame not small (a TCP segment) is signalled as soon as it
        // is sent, its sender perhaps waiting for it.
        set_tx_used_event(&mem, &path, 100);
        assert!(!transmit_pass(&mem, &txq, &mut path, 1, 600));
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(interrupts_by_deadline(&mut path), 0);
    }

    #[test]
    fn a_driver_that_reaps_its_transmits_itself_takes_no_interrupt() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (txq, mut path, irq) = coalescing(&mem, &script);
        assert!(!transmit_pass(&mem, &txq, &mut path, 3, 64));
        // Before its next frame the driver frees the three and asks to
        // hear only of the one after the next.
        set_tx_used_event(&mem, &path, 4);
        assert_eq!(interrupts_by_deadline(&mut path), 0);
        assert!(quiet(&irq));
        // Without the timer nothing is held: signalled at the pass's end.
        path.tx_signal.timer = None;
        assert!(transmit_pass(&mem, &txq, &mut path, 2, 64));
    }

    #[test]
    fn transmits_and_receives_interleaved_stay_whole() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, txq, mut path) = datapath(&mem, &script, ALL);
        // A 64 KiB frame's worth of buffers (TSO accepted), each given
        // back once used.
        let buf = |i: u16| desc(RX_BUF + u64::from(i) * 0x2000, 0x1100, WRITE, 0);
        let ring: Vec<_> = (0..16).map(buf).collect();
        rxq.add_desc_chains(&ring, 0).unwrap();
        for round in 0..40u16 {
            let len = 60 + usize::from(round) * 37;
            let byte = u8::try_from(round).unwrap();
            script
                .incoming
                .lock()
                .unwrap()
                .push_back(plain(&frame(byte, len)));
            queue_tx(&mem, &txq, [0; NET_HDR_LEN], &frame(byte ^ 0xff, len));
            assert!(path.transmit().unwrap());
            assert!(path.receive().unwrap());
            let (head, used_len) = used(&rxq, round);
            assert_eq!(used_len, HDR + u32::try_from(len).unwrap());
            let head = u16::try_from(head).unwrap();
            let mut got = read(&mem, RX_BUF + u64::from(head) * 0x2000, NET_HDR_LEN + len);
            assert_eq!(got[10..12], [1, 0]);
            got.drain(..NET_HDR_LEN);
            assert_eq!(got, frame(byte, len), "round {round}");
            rxq.add_desc_chains(&[buf(head)], head).unwrap();
            let sent = script.sent.lock().unwrap();
            assert_eq!(sent.last().unwrap().1, frame(byte ^ 0xff, len));
        }
    }

    /// A host end whose reads each hold their frame until the test lets
    /// it through: the worker waits in the middle of a frame, as it may
    /// be when the driver resets the device.
    struct Gated {
        frames: Mutex<VecDeque<Vec<u8>>>,
        /// Readable when a frame waits, as a tap's fd is.
        ready: EventFd,
        /// Told when a read holds a frame.
        holding: Sender<()>,
        /// One message lets one held frame through.
        gate: Mutex<Receiver<()>>,
    }

    impl FrameIo for Gated {
        fn read_frame(&self, mem: &GuestMemory, into: &Buffers) -> std::io::Result<usize> {
            let frame = self.frames.lock().unwrap().pop_front();
            let frame = frame.ok_or(std::io::ErrorKind::WouldBlock)?;
            self.holding.send(()).unwrap();
            self.gate.lock().unwrap().recv().unwrap();
            into.write_from(mem, &frame).unwrap();
            Ok(frame.len())
        }
        fn write_frame(&self, _: &[u8], _: &GuestMemory, _: &Buffers) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
    }

    impl AsRawFd for Gated {
        fn as_raw_fd(&self) -> RawFd {
            self.ready.as_raw_fd()
        }
    }

    impl HostEnd for Gated {
        fn name(&self) -> &str {
            "gated"
        }
        fn set_offload(&self, _: u32) -> Result<(), tap::Error> {
            Ok(())
        }
    }

    impl Gated {
        /// A frame of `byte`s arrives.
        fn arrive(&self, byte: u8) {
            let frame = plain(&[byte; 100]);
            self.frames.lock().unwrap().push_back(frame);
            self.ready.write(1).unwrap();
        }
    }

    /// A device over a gated host end, activated with two receive
    /// buffers of 2048 bytes (at RX_BUF and RX_BUF + 0x1000), whose
    /// worker holds a frame of 0x11s in its read. Returns the device, the
    /// receive ring, the gate and the holding signal.
    fn holding_a_frame(
        mem: &GuestMemory,
    ) -> (
        Net<Gated>,
        MockSplitQueue<'_, GuestMemory>,
        Sender<()>,
        Receiver<()>,
    ) {
        let (holding, held) = channel();
        let (gate, gated) = channel();
        let host = Gated {
            frames: Mutex::default(),
            ready: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            holding,
            gate: Mutex::new(gated),
        };
        let mut net = Net::new(host, MacAddr([2, 0, 0, 0, 0, 1]));
        let rxq = MockSplitQueue::create(mem, GuestAddress(RX_RING), 256);
        let txq = MockSplitQueue::create(mem, GuestAddress(TX_RING), 256);
        rxq.add_desc_chains(
            &[
                desc(RX_BUF, 2048, WRITE, 0),
                desc(RX_BUF + 0x1000, 2048, WRITE, 0),
            ],
            0,
        )
        .unwrap();
        let queues = [&rxq, &txq].map(|q| ActiveQueue {
            queue: q.create_queue().unwrap(),
            notify: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        });
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        net.activate(mem.clone(), 0, queues.into(), Arc::new(Interrupt::new(irq)))
            .unwrap();
        net.tap.arrive(0x11);
        held.recv().unwrap();
        (net, rxq, gate, held)
    }

    fn queues() -> Vec<ActiveQueue> {
        (0..2)
            .map(|_| ActiveQueue {
                queue: Queue::new(16).unwrap(),
                notify: EventFd::new(0).unwrap(),
            })
            .collect()
    }

    #[test]
    fn once_a_reset_returns_the_worker_touches_the_queues_no_more() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (mut net, rxq, gate, held) = holding_a_frame(&mem);
        // The frame in hand is let through only once the reset began.
        let retired = net.workers.running[0].retired.clone();
        let releaser = std::thread::spawn(move || {
            // A bound, not a speed check: past it the test fails below.
            let give_up = Instant::now() + Duration::from_secs(10);
            while !retired.is_set() && Instant::now() < give_up {
                std::thread::yield_now();
            }
            gate.send(()).unwrap();
            gate
        });
        net.reset().unwrap();
        // Finished before the reset returned, never after.
        assert_eq!(rxq.used().idx().load(), 1);
        assert_eq!(read(&mem, RX_BUF + u64::from(HDR), 100), [0x11; 100]);
        let gate = releaser.join().unwrap();
        // A frame arriving on the tap now, and the driver's kick, reach
        // nobody: the old ring's second buffer stays untouched.
        net.tap.arrive(0x22);
        gate.send(()).unwrap();
        assert!(held.try_recv().is_err(), "no read was even tried");
        assert_eq!(net.tap.frames.lock().unwrap().len(), 1);
        assert_eq!(rxq.used().idx().load(), 1);
        assert_eq!(read(&mem, RX_BUF + 0x1000, 112), [0; 112]);
        assert!(net.workers.running.is_empty());
    }

    #[test]
    fn a_worker_that_cannot_stop_within_the_bound_leaves_the_reset_stuck() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let (mut net, rxq, gate, _held) = holding_a_frame(&mem);
        net.workers.bound = Duration::from_millis(50);
        let err = net.reset().unwrap_err();
        assert!(
            matches!(&err, ResetError::Stuck { workers: 1, .. }),
            "{err}"
        );
        assert_eq!(rxq.used().idx().load(), 0);
        // It still holds the queues: the driver may not start another.
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let refused = net.activate(mem.clone(), 0, queues(), Arc::new(Interrupt::new(irq)));
        assert!(
            matches!(refused, Err(ActivateError::Reset(ResetError::Stuck { .. }))),
            "{refused:?}"
        );
        // Once its read ends, the next reset finds it gone.
        gate.send(()).unwrap();
        net.workers.bound = Duration::from_secs(10);
        net.reset().unwrap();
        assert!(net.workers.running.is_empty());
    }
}

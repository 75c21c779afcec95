//! virtio-net over a tap device, with a MAC address per interface.
//!
//! No offloads are negotiated: every frame crosses as-is, preceded on the
//! queue by a zeroed `virtio_net_hdr_v1`. Frames over the limit, or over
//! the buffer the driver gave, are dropped and counted, never cut; a
//! malformed chain fails that frame only.

pub mod tap;

use std::os::fd::AsRawFd;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};

use super::chain::{self, Chain, Table};
use super::counters::NetCounters;
use super::rate_limit::{RateLimit, Throttle};
use super::worker::{Retired, Worker};
use super::{
    ActivateError, ActiveQueue, DeviceMetrics, Interrupt, VirtioDevice, expect_queues,
    read_config_bytes,
};
use crate::host::mac::MacAddr;
use crate::vmm::memory::GuestMemory;
pub use tap::Tap;

const VIRTIO_ID_NET: u32 = 1;
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
const VIRTIO_NET_S_LINK_UP: u16 = 1;
const QUEUE_SIZE: u16 = 256;
/// `virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, num_buffers.
const NET_HDR_LEN: usize = 12;
/// The receive header: no offloads, one buffer (`num_buffers` = 1).
const RX_HEADER: [u8; NET_HDR_LEN] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
/// Largest frame a tap hands over without offloads (64 KiB + Ethernet).
const MAX_FRAME: usize = 65562;

/// Guest queue state the device cannot work around; it makes the device
/// broken until the driver resets it. A bad chain never does.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid available ring: {0:?}")]
    AvailRing(virtio_queue::Error),
    #[error("cannot write the used ring: {0:?}")]
    UsedRing(virtio_queue::Error),
}

/// The host end of a NIC: frames come from and go to it. A tap in the
/// VMM; a script in tests and fuzzing.
pub trait FrameIo: Send {
    /// Reads one frame into `buf`; `WouldBlock` when none is waiting. A
    /// frame larger than `buf` is cut to its length.
    fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Writes one frame.
    fn write_frame(&self, frame: &[u8]) -> std::io::Result<usize>;
}

impl FrameIo for Tap {
    fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        Tap::read_frame(self, buf)
    }

    fn write_frame(&self, frame: &[u8]) -> std::io::Result<usize> {
        Tap::write_frame(self, frame)
    }
}

impl<T: FrameIo + Sync> FrameIo for Arc<T> {
    fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        (**self).read_frame(buf)
    }

    fn write_frame(&self, frame: &[u8]) -> std::io::Result<usize> {
        (**self).write_frame(frame)
    }
}

/// Rate limits of a virtio-net device, one per direction (rx: to the
/// guest, tx: from the guest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetLimits {
    pub rx: RateLimit,
    pub tx: RateLimit,
}

/// What moves frames between the host end and the queues. Receive and
/// transmit have a buffer each: a frame waiting for a receive buffer is
/// never touched by a transmit.
pub struct Datapath<T: FrameIo> {
    io: T,
    mem: GuestMemory,
    rx: Queue,
    tx: Queue,
    /// The length of the frame in `rx_frame` that found no receive
    /// buffer (or rate budget) yet.
    pending: Option<usize>,
    /// One byte more than the largest frame, to tell an oversize frame
    /// from one that fits exactly.
    rx_frame: Vec<u8>,
    tx_frame: Vec<u8>,
    /// A receive buffer and a transmit the rate limit held back.
    rx_held: Option<Chain>,
    tx_held: Option<Chain>,
    rx_throttle: Option<Throttle>,
    tx_throttle: Option<Throttle>,
    counters: Arc<NetCounters>,
    /// Set when the device is reset: stop before the next frame.
    retired: Retired,
}

impl<T: FrameIo> std::fmt::Debug for Datapath<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("pending", &self.pending)
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
    /// A datapath between `io` and the receive and transmit queues,
    /// without rate limits.
    pub fn new(io: T, mem: GuestMemory, rx: Queue, tx: Queue) -> Self {
        Self {
            io,
            mem,
            rx,
            tx,
            pending: None,
            rx_frame: vec![0u8; MAX_FRAME + 1],
            tx_frame: vec![0u8; MAX_FRAME],
            rx_held: None,
            tx_held: None,
            rx_throttle: None,
            tx_throttle: None,
            counters: Arc::default(),
            retired: Retired::default(),
        }
    }

    /// What the datapath counted.
    pub fn counters(&self) -> &NetCounters {
        &self.counters
    }

    /// The next chain of `queue`, walked; a malformed one is returned
    /// used and empty and counted, and the next is tried.
    fn next_chain(
        mem: &GuestMemory,
        queue: &mut Queue,
        counters: &NetCounters,
    ) -> Result<Option<Chain>, QueueError> {
        loop {
            let head = match queue.iter(mem) {
                Ok(mut iter) => iter.next().map(|c| c.head_index()),
                Err(e) => return Err(QueueError::AvailRing(e)),
            };
            let Some(head) = head else { return Ok(None) };
            match chain::walk(mem, Table::of(queue), head) {
                Ok(chain) => return Ok(Some(chain)),
                Err(_) => {
                    counters.errors.inc();
                    queue.add_used(mem, head, 0).map_err(QueueError::UsedRing)?;
                }
            }
        }
    }

    /// Moves frames from the host end into receive buffers until either
    /// runs out (or the rate limit says stop). Returns whether any
    /// buffer was used.
    pub fn receive(&mut self) -> Result<bool, QueueError> {
        let mut used = false;
        loop {
            if self.retired.is_set() {
                return Ok(used);
            }
            let len = match self.pending {
                Some(len) => len,
                None => match self.io.read_frame(&mut self.rx_frame) {
                    Ok(n) if n > MAX_FRAME => {
                        self.counters.dropped.inc();
                        continue;
                    }
                    Ok(n) => {
                        self.pending = Some(n);
                        n
                    }
                    Err(_) => return Ok(used), // drained (EAGAIN) or tap gone
                },
            };
            // No buffer: keep the frame until the driver adds some.
            let chain = match self.rx_held.take() {
                Some(chain) => chain,
                None => match Self::next_chain(&self.mem, &mut self.rx, &self.counters)? {
                    Some(chain) => chain,
                    None => return Ok(used),
                },
            };
            if let Some(throttle) = &mut self.rx_throttle {
                if !throttle.admit(len as u64) {
                    self.counters.throttled.inc();
                    self.rx_held = Some(chain);
                    return Ok(used);
                }
            }
            self.pending = None;
            let head = chain.head;
            let frame = self.rx_frame.get(..len).unwrap_or_default();
            let written = if chain.writable.len() < (NET_HDR_LEN + len) as u64 {
                // Larger than the buffer the driver gave: dropped, never
                // cut (a cut frame is a corrupt frame).
                self.counters.dropped.inc();
                0
            } else {
                let mut data = chain.writable.clone();
                let header = data.split_front(NET_HDR_LEN as u64).unwrap_or_default();
                let ok = header.write_from(&self.mem, &RX_HEADER).is_some()
                    && data.write_from(&self.mem, frame).is_some();
                if ok {
                    self.counters.rx_frames.inc();
                    self.counters.rx_bytes.add(len as u64);
                    u32::try_from(NET_HDR_LEN + len).unwrap_or(u32::MAX)
                } else {
                    self.counters.errors.inc();
                    0
                }
            };
            self.rx
                .add_used(&self.mem, head, written)
                .map_err(QueueError::UsedRing)?;
            used = true;
        }
    }

    /// Sends every frame the driver queued for transmission (or until the
    /// rate limit says stop).
    pub fn transmit(&mut self) -> Result<bool, QueueError> {
        let mut used = false;
        loop {
            if self.retired.is_set() {
                return Ok(used);
            }
            let chain = match self.tx_held.take() {
                Some(chain) => chain,
                None => match Self::next_chain(&self.mem, &mut self.tx, &self.counters)? {
                    Some(chain) => chain,
                    None => return Ok(used),
                },
            };
            let frame_len = chain.readable.len().saturating_sub(NET_HDR_LEN as u64);
            if let Some(throttle) = &mut self.tx_throttle {
                if !throttle.admit(frame_len) {
                    self.counters.throttled.inc();
                    self.tx_held = Some(chain);
                    return Ok(used);
                }
            }
            self.send(&chain, frame_len);
            self.tx
                .add_used(&self.mem, chain.head, 0)
                .map_err(QueueError::UsedRing)?;
            used = true;
        }
    }

    /// Sends the frame of one transmit chain, or drops and counts it.
    fn send(&mut self, chain: &Chain, frame_len: u64) {
        let mut data = chain.readable.clone();
        if data.split_front(NET_HDR_LEN as u64).is_none() {
            self.counters.errors.inc();
            return;
        }
        let Some(frame) = usize::try_from(frame_len)
            .ok()
            .and_then(|n| self.tx_frame.get_mut(..n))
        else {
            // Over the limit: dropped whole, as a NIC drops a giant.
            self.counters.dropped.inc();
            return;
        };
        if data.read_into(&self.mem, frame).is_none() {
            self.counters.errors.inc();
            return;
        }
        // A frame the host side refuses (tap down, queue full) is lost,
        // as on a wire.
        match self.io.write_frame(frame) {
            Ok(_) => {
                self.counters.tx_frames.inc();
                self.counters.tx_bytes.add(frame_len);
            }
            Err(_) => self.counters.dropped.inc(),
        }
    }

    /// Whether the driver wants an interrupt after `used`.
    pub fn needs_interrupt(&mut self, used: Used) -> bool {
        let rx = used.rx && self.rx.needs_notification(&self.mem).unwrap_or(true);
        let tx = used.tx && self.tx.needs_notification(&self.mem).unwrap_or(true);
        rx || tx
    }
}

/// A virtio network device.
#[derive(Debug)]
pub struct Net {
    name: String,
    tap: Arc<Tap>,
    config: [u8; 8],
    limits: NetLimits,
    counters: Arc<NetCounters>,
    worker: Option<Worker>,
}

impl Net {
    /// A device whose host end is `tap`, with guest MAC `mac`.
    pub fn new(tap: Tap, mac: MacAddr) -> Self {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac.0);
        config[6..].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        Self {
            name: format!("virtio-net {}", tap.name()),
            tap: Arc::new(tap),
            config,
            limits: NetLimits::default(),
            counters: Arc::default(),
            worker: None,
        }
    }

    /// Holds the guest to `limits`.
    pub fn with_rate_limits(mut self, limits: NetLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// Worker event sources, in order.
const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;
const TAP: usize = 2;
const RX_TIMER: usize = 3;
const TX_TIMER: usize = 4;

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

impl VirtioDevice for Net {
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
        VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
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
        _features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let [rx, tx] = expect_queues(&self.name, queues)?;
        Worker::join_slot(&mut self.worker);
        let mut path = Datapath::new(self.tap.clone(), mem, rx.queue, tx.queue);
        path.counters = self.counters.clone();
        path.rx_throttle = throttle(&self.name, self.limits.rx)?;
        path.tx_throttle = throttle(&self.name, self.limits.tx)?;
        let retired = path.retired.clone();
        let mut sources = vec![
            (rx.notify.as_raw_fd(), false),
            (tx.notify.as_raw_fd(), false),
            (self.tap.as_raw_fd(), true),
        ];
        // What each source is: the timers exist only with a limit.
        let mut kinds = vec![RX_QUEUE, TX_QUEUE, TAP];
        for (throttle, kind) in [(&path.rx_throttle, RX_TIMER), (&path.tx_throttle, TX_TIMER)] {
            if let Some(t) = throttle {
                sources.push((t.timer_fd(), false));
                kinds.push(kind);
            }
        }
        let (rx_evt, tx_evt) = (rx.notify, tx.notify);
        let worker = Worker::start(&self.name, sources, interrupt, retired, move |source| {
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
                _ => Used::default(),
            };
            Ok::<_, QueueError>(path.needs_interrupt(used))
        })?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        Worker::retire_slot(&self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::chain::tests::{NEXT, WRITE, desc};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    /// A host end that hands over scripted frames and records sent ones.
    #[derive(Default)]
    struct Script {
        incoming: Mutex<VecDeque<Vec<u8>>>,
        sent: Mutex<Vec<Vec<u8>>>,
    }

    impl FrameIo for Script {
        fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
            let frame = self.incoming.lock().unwrap().pop_front();
            let frame = frame.ok_or(std::io::ErrorKind::WouldBlock)?;
            let n = frame.len().min(buf.len());
            buf[..n].copy_from_slice(&frame[..n]);
            Ok(n)
        }
        fn write_frame(&self, frame: &[u8]) -> std::io::Result<usize> {
            self.sent.lock().unwrap().push(frame.to_vec());
            Ok(frame.len())
        }
    }

    const HDR: u32 = 12;
    const RX_RING: u64 = 0;
    const TX_RING: u64 = 0x8000;
    const RX_BUF: u64 = 0x10_0000;
    const TX_BUF: u64 = 0x20_0000;

    fn datapath<'a>(
        mem: &'a GuestMemory,
        script: &Arc<Script>,
    ) -> (
        MockSplitQueue<'a, GuestMemory>,
        MockSplitQueue<'a, GuestMemory>,
        Datapath<Arc<Script>>,
    ) {
        let rxq = MockSplitQueue::create(mem, GuestAddress(RX_RING), 16);
        let txq = MockSplitQueue::create(mem, GuestAddress(TX_RING), 16);
        let path = Datapath::new(
            script.clone(),
            mem.clone(),
            rxq.create_queue().unwrap(),
            txq.create_queue().unwrap(),
        );
        (rxq, txq, path)
    }

    fn used_len(q: &MockSplitQueue<'_, GuestMemory>, i: u16) -> u32 {
        q.used().ring().ref_at(i.into()).unwrap().load().len()
    }

    fn frame(byte: u8, len: usize) -> Vec<u8> {
        vec![byte; len]
    }

    #[test]
    fn a_frame_waiting_for_a_receive_buffer_survives_transmits() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, txq, mut path) = datapath(&mem, &script);
        // A frame arrives while the guest has no receive buffer.
        let incoming = frame(0x11, 1000);
        script.incoming.lock().unwrap().push_back(incoming.clone());
        assert!(!path.receive().unwrap());
        // The guest transmits a bigger frame meanwhile.
        let outgoing = frame(0x22, 1400);
        mem.write_slice(&[0u8; NET_HDR_LEN], GuestAddress(TX_BUF))
            .unwrap();
        mem.write_slice(&outgoing, GuestAddress(TX_BUF + NET_HDR_LEN as u64))
            .unwrap();
        txq.add_desc_chains(&[desc(TX_BUF, HDR + 1400, 0, 0)], 0)
            .unwrap();
        assert!(path.transmit().unwrap());
        assert_eq!(*script.sent.lock().unwrap(), [outgoing]);
        // Then it gives a receive buffer: it gets the frame that arrived,
        // with its own length.
        rxq.add_desc_chains(&[desc(RX_BUF, 2048, WRITE, 0)], 0)
            .unwrap();
        assert!(path.receive().unwrap());
        assert_eq!(used_len(&rxq, 0), HDR + 1000);
        let mut got = vec![0u8; 1000];
        mem.read_slice(&mut got, GuestAddress(RX_BUF + NET_HDR_LEN as u64))
            .unwrap();
        assert_eq!(got, incoming);
    }

    #[test]
    fn oversize_frames_are_dropped_and_counted_never_cut() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, txq, mut path) = datapath(&mem, &script);
        // Received: one larger than the guest's buffer, then one that fits.
        script
            .incoming
            .lock()
            .unwrap()
            .extend([frame(1, 600), frame(2, 100)]);
        rxq.add_desc_chains(
            &[
                desc(RX_BUF, 512, WRITE, 0),
                desc(RX_BUF + 0x1000, 512, WRITE, 0),
            ],
            0,
        )
        .unwrap();
        assert!(path.receive().unwrap());
        assert_eq!(used_len(&rxq, 0), 0, "dropped, the buffer returned empty");
        assert_eq!(used_len(&rxq, 1), HDR + 100);
        // Transmitted: one over the 64 KiB limit (spread over buffers).
        let mut descs = vec![desc(TX_BUF, HDR, NEXT, 1)];
        descs.extend((0..3u16).map(|i| desc(TX_BUF, 30_000, NEXT, i + 2)));
        descs.push(desc(TX_BUF, 10, 0, 0));
        descs.push(desc(TX_BUF, HDR + 60, 0, 0));
        txq.add_desc_chains(&descs, 0).unwrap();
        assert!(path.transmit().unwrap());
        let sent = script.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].len(), 60);
        assert_eq!(path.counters().dropped.get(), 2);
    }

    #[test]
    fn a_receive_rate_limit_holds_frames_back() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (rxq, _txq, mut path) = datapath(&mem, &script);
        path.rx_throttle = Some(
            Throttle::new(RateLimit {
                bytes_per_sec: 0,
                ops_per_sec: 1,
            })
            .unwrap(),
        );
        script
            .incoming
            .lock()
            .unwrap()
            .extend([frame(1, 60), frame(2, 60)]);
        rxq.add_desc_chains(
            &[
                desc(RX_BUF, 512, WRITE, 0),
                desc(RX_BUF + 0x1000, 512, WRITE, 0),
            ],
            0,
        )
        .unwrap();
        assert!(path.receive().unwrap());
        assert_eq!(rxq.used().idx().load(), 1, "the second frame waits");
        assert_eq!(path.pending, Some(60));
        assert!(path.rx_held.is_some());
        assert_eq!(path.counters().throttled.get(), 1);
    }

    #[test]
    fn a_malformed_chain_fails_its_frame_only() {
        let mem = crate::vmm::memory::create(16).unwrap();
        let script = Arc::new(Script::default());
        let (_rxq, txq, mut path) = datapath(&mem, &script);
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
}

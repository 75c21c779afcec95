//! virtio-net over a tap device, with a MAC address per interface.
//!
//! No offloads are negotiated: every frame crosses as-is, preceded on the
//! queue by a zeroed `virtio_net_hdr_v1`.

pub mod tap;

use std::os::fd::AsRawFd;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT, Reader, Writer};

use super::worker::Worker;
use super::{
    ActivateError, ActiveQueue, Interrupt, VirtioDevice, expect_queues, read_config_bytes,
};
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

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

/// Errors of parsing a MAC address.
#[derive(Debug, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex pairs like 02:00:00:00:00:01")]
pub struct MacParseError(String);

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(err)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(mac))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Why the device stopped: guest-supplied queue state it cannot accept.
#[derive(Debug, thiserror::Error)]
enum QueueError {
    #[error("invalid descriptor chain: {0:?}")]
    Descriptors(virtio_queue::Error),
    #[error("invalid available ring: {0:?}")]
    AvailRing(virtio_queue::Error),
    #[error("cannot write the used ring: {0:?}")]
    UsedRing(virtio_queue::Error),
    #[error("transmit chain shorter than the virtio-net header")]
    ShortTx,
}

/// What the worker moves between the tap and the queues.
struct Datapath {
    tap: Arc<Tap>,
    mem: GuestMemory,
    rx: Queue,
    tx: Queue,
    /// A frame read from the tap that found no receive buffer yet.
    pending: Option<usize>,
    buf: Vec<u8>,
}

impl Datapath {
    /// Moves frames from the tap into receive buffers until either runs
    /// out. Returns whether any buffer was used.
    fn receive(&mut self) -> Result<bool, QueueError> {
        let mut used = false;
        loop {
            if self.pending.is_none() {
                match self
                    .tap
                    .read_frame(self.buf.get_mut(NET_HDR_LEN..).unwrap_or_default())
                {
                    Ok(n) => self.pending = Some(n),
                    Err(_) => return Ok(used), // drained (EAGAIN) or tap gone
                }
            }
            let chain = match self.rx.iter(&self.mem) {
                Ok(mut iter) => iter.next(),
                Err(e) => return Err(QueueError::AvailRing(e)),
            };
            // No buffer: keep the frame until the driver adds some.
            let Some(chain) = chain else { return Ok(used) };
            let head = chain.head_index();
            let len = self.pending.take().unwrap_or_default() + NET_HDR_LEN;
            let mut writer = Writer::new(&self.mem, chain).map_err(QueueError::Descriptors)?;
            // The header is all zero but num_buffers, which is 1.
            if let Some(hdr) = self.buf.get_mut(..NET_HDR_LEN) {
                hdr.copy_from_slice(&RX_HEADER);
            }
            // A frame larger than the buffer is truncated, as a NIC would.
            let frame = self
                .buf
                .get(..len.min(writer.available_bytes()))
                .unwrap_or_default();
            std::io::Write::write_all(&mut writer, frame).map_err(|_| QueueError::ShortTx)?;
            let written = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            self.rx
                .add_used(&self.mem, head, written)
                .map_err(QueueError::UsedRing)?;
            used = true;
        }
    }

    /// Sends every frame the driver queued for transmission.
    fn transmit(&mut self) -> Result<bool, QueueError> {
        let mut used = false;
        loop {
            let chain = match self.tx.iter(&self.mem) {
                Ok(mut iter) => iter.next(),
                Err(e) => return Err(QueueError::AvailRing(e)),
            };
            let Some(chain) = chain else { return Ok(used) };
            let head = chain.head_index();
            let mut reader = Reader::new(&self.mem, chain).map_err(QueueError::Descriptors)?;
            let len = reader.available_bytes();
            if len < NET_HDR_LEN {
                return Err(QueueError::ShortTx);
            }
            let frame_len = (len - NET_HDR_LEN).min(MAX_FRAME);
            let mut hdr = [0u8; NET_HDR_LEN];
            std::io::Read::read_exact(&mut reader, &mut hdr).map_err(|_| QueueError::ShortTx)?;
            let frame = self.buf.get_mut(..frame_len).unwrap_or_default();
            std::io::Read::read_exact(&mut reader, frame).map_err(|_| QueueError::ShortTx)?;
            // A frame the host side drops (tap down, queue full) is lost,
            // as on a wire.
            let _ = self.tap.write_frame(frame);
            self.tx
                .add_used(&self.mem, head, 0)
                .map_err(QueueError::UsedRing)?;
            used = true;
        }
    }
}

/// A virtio network device.
#[derive(Debug)]
pub struct Net {
    name: String,
    tap: Arc<Tap>,
    config: [u8; 8],
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
            worker: None,
        }
    }
}

/// Worker event sources, in order.
const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;
const TAP: usize = 2;

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

    fn activate(
        &mut self,
        mem: GuestMemory,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let [rx, tx] = expect_queues(&self.name, queues)?;
        let tap = self.tap.clone();
        let sources = vec![
            (rx.notify.as_raw_fd(), false),
            (tx.notify.as_raw_fd(), false),
            (tap.as_raw_fd(), true),
        ];
        let mut path = Datapath {
            tap,
            mem,
            rx: rx.queue,
            tx: tx.queue,
            pending: None,
            buf: vec![0u8; NET_HDR_LEN + MAX_FRAME],
        };
        let (rx_evt, tx_evt) = (rx.notify, tx.notify);
        let worker = Worker::start(&self.name, sources, interrupt, move |source| {
            let result = match source {
                RX_QUEUE => {
                    let _ = rx_evt.read();
                    path.receive().map(|u| (u, false))
                }
                TX_QUEUE => {
                    let _ = tx_evt.read();
                    path.transmit().map(|u| (false, u))
                }
                TAP => path.receive().map(|u| (u, false)),
                _ => Ok((false, false)),
            };
            result.map(|(rx_used, tx_used)| {
                let notify_rx = rx_used && path.rx.needs_notification(&path.mem).unwrap_or(true);
                let notify_tx = tx_used && path.tx.needs_notification(&path.mem).unwrap_or(true);
                notify_rx || notify_tx
            })
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

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "02:00:0a:00:00:05".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 10, 0, 0, 5]);
        assert_eq!(mac.to_string(), "02:00:0a:00:00:05");
        for bad in [
            "",
            "02:00:0a:00:00",
            "02:00:0a:00:00:05:06",
            "zz:00:0a:00:00:05",
            "2:0:a:0:0:5",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}

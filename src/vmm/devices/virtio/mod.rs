//! Virtio devices (virtio 1.x) over the MMIO transport.
//!
//! A device model implements [`VirtioDevice`]; [`mmio::MmioTransport`]
//! puts it on the MMIO bus. Queue notifications arrive on eventfds that
//! KVM signals directly (ioeventfd) and interrupts leave through an irqfd,
//! so neither bounces through a vCPU thread. Each activated device runs
//! its queues on its own worker thread ([`worker`]).
//!
//! Queues are guest-controlled input: every chain is walked and checked
//! ([`chain`]) before a device touches it; a chain a device cannot accept
//! fails that request or frame only. Only a ring the device cannot read
//! or write marks it broken (`DEVICE_NEEDS_RESET`).

pub mod block;
pub mod chain;
pub mod counters;
pub mod mmio;
pub mod net;
pub mod rate_limit;
pub mod uring;
pub mod worker;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::memory::GuestMemory;

/// Feature bit every device offers: virtio 1.x ("modern") semantics.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit of the split ring: the driver and the device each publish
/// the ring index at which they next want to hear from the other
/// (`used_event`, `avail_event`), so kicks and interrupts are suppressed
/// while the other side is busy. A device offers it only if its queue
/// loop re-arms notifications ([`virtio_queue::QueueT::enable_notification`])
/// before it sleeps; the transport then turns it on in the queues.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// Interrupt status bits (virtio-mmio `InterruptStatus`).
const INT_USED_RING: u32 = 1 << 0;
const INT_CONFIG_CHANGE: u32 = 1 << 1;

/// Errors of activating a device.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("cannot start the worker thread of {device}: {source}")]
    Worker {
        device: String,
        source: std::io::Error,
    },
    #[error("{device}: the driver set up {got} queues, the device needs {want}")]
    QueueCount {
        device: String,
        got: usize,
        want: usize,
    },
    #[error("{device}: {source}")]
    Tap {
        device: String,
        source: net::tap::Error,
    },
    #[error("{device}: cannot duplicate an eventfd: {source}")]
    EventFd {
        device: String,
        source: std::io::Error,
    },
    /// The workers of the last activation are still finishing.
    #[error(transparent)]
    Reset(#[from] ResetError),
}

/// Errors of resetting a device.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// A worker did not end within the bound: the host's I/O it waits
    /// for is stuck. The requests it holds may still complete into guest
    /// memory, never into the queues.
    #[error(
        "{device}: {workers} queue worker(s) still wait for host I/O {waited:?} after the \
         driver reset the device"
    )]
    Stuck {
        device: String,
        workers: usize,
        waited: std::time::Duration,
    },
}

/// Guest queue state (or a host failure) a device cannot work around; it
/// makes the device broken until the driver resets it. A bad request or
/// frame never does.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid available ring: {0:?}")]
    AvailRing(virtio_queue::Error),
    #[error("cannot write the used ring: {0:?}")]
    UsedRing(virtio_queue::Error),
    /// The host's io_uring refused to take or wait for requests (no
    /// guest can cause it: its depth bounds what is in flight).
    #[error("io_uring_enter: {0}")]
    Io(std::io::Error),
}

/// Why a drain of a queue's available ring stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The ring is empty.
    Empty,
    /// The rate limit holds a request back, or the device was reset:
    /// stop until the timer or a new worker.
    Paused,
}

/// Serves a queue with the driver's notifications off, and re-arms them
/// only once the ring is seen empty after re-arming: requests the driver
/// adds meanwhile cost it no exit, and none is missed. With EVENT_IDX,
/// re-arming publishes `avail_event`, without which the driver would
/// stop notifying. `ring` picks the queue out of `server`; `drain` serves
/// until the ring is empty or it must pause.
pub fn drain_quietly<S>(
    server: &mut S,
    ring: impl Fn(&mut S) -> (&mut Queue, &GuestMemory),
    mut drain: impl FnMut(&mut S) -> Result<Drained, QueueError>,
) -> Result<(), QueueError> {
    loop {
        let (queue, mem) = ring(server);
        queue
            .disable_notification(mem)
            .map_err(QueueError::UsedRing)?;
        if drain(server)? == Drained::Paused {
            return Ok(());
        }
        let (queue, mem) = ring(server);
        if !queue
            .enable_notification(mem)
            .map_err(QueueError::AvailRing)?
        {
            return Ok(());
        }
    }
}

/// With EVENT_IDX, interrupts the driver at once for the buffers just
/// used when it asked to be (`used_event`), so it works on them while
/// the device serves the next; without, the end of the pass signals once
/// for all.
pub fn signal_early(queue: &mut Queue, mem: &GuestMemory, interrupt: Option<&Interrupt>) {
    if let Some(interrupt) = interrupt {
        if queue.event_idx_enabled() && queue.needs_notification(mem).unwrap_or(true) {
            interrupt.used_ring();
        }
    }
}

/// A queue handed to an activated device, with the eventfd KVM signals
/// when the driver notifies it.
#[derive(Debug)]
pub struct ActiveQueue {
    pub queue: Queue,
    pub notify: EventFd,
}

/// The `N` queues a device runs on, or the error naming how many the
/// driver set up instead.
pub fn expect_queues<const N: usize>(
    device: &str,
    queues: Vec<ActiveQueue>,
) -> Result<[ActiveQueue; N], ActivateError> {
    let got = queues.len();
    queues.try_into().map_err(|_| ActivateError::QueueCount {
        device: device.to_string(),
        got,
        want: N,
    })
}

/// The device's side of the interrupt line and the "needs reset" flag,
/// shared between the transport and the device's worker.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    broken: AtomicBool,
    irqfd: EventFd,
}

impl Interrupt {
    pub fn new(irqfd: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            broken: AtomicBool::new(false),
            irqfd,
        }
    }

    fn raise(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        // A full eventfd counter still means "pending"; nothing is lost.
        let _ = self.irqfd.write(1);
    }

    /// Tells the driver that used buffers are ready.
    pub fn used_ring(&self) {
        self.raise(INT_USED_RING);
    }

    /// Marks the device broken and tells the driver, which must reset it.
    pub fn mark_broken(&self, device: &str, why: &dyn std::fmt::Display) {
        // The interrupt cause is visible before the status bit, so a
        // driver that sees NEEDS_RESET also sees why it was interrupted.
        self.status.fetch_or(INT_CONFIG_CHANGE, Ordering::SeqCst);
        if !self.broken.swap(true, Ordering::SeqCst) {
            eprintln!("gureum: {device}: {why}; device marked broken until the guest resets it");
            self.raise(INT_CONFIG_CHANGE);
        }
    }

    /// Whether the device was marked broken since its last reset.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
        self.broken.store(false, Ordering::SeqCst);
    }
}

/// A device's counters, readable while it runs.
pub trait DeviceMetrics: Send + Sync + std::fmt::Debug {
    fn to_json(&self) -> serde_json::Value;
}

/// A virtio device model.
pub trait VirtioDevice: Send {
    /// Virtio device ID (1 = net, 2 = block).
    fn device_type(&self) -> u32;
    /// Human name for messages, e.g. "virtio-blk vda".
    fn name(&self) -> &str;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered, including [`VIRTIO_F_VERSION_1`].
    fn features(&self) -> u64;
    /// Reads the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// The device's counters.
    fn metrics(&self) -> std::sync::Arc<dyn DeviceMetrics>;
    /// Starts processing the queues; `features` are the ones the driver
    /// accepted (a subset of [`VirtioDevice::features`]).
    fn activate(
        &mut self,
        mem: GuestMemory,
        features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: std::sync::Arc<Interrupt>,
    ) -> Result<(), ActivateError>;
    /// Stops processing and forgets the driver's setup. Once it returns
    /// Ok, the device touches none of the guest's buffers or queues; an
    /// error says it may still (the transport then marks it broken).
    fn reset(&mut self) -> Result<(), ResetError>;
}

/// Copies `config` bytes at `offset` into `data`; bytes past the end of
/// the config space read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = start
            .checked_add(i)
            .and_then(|at| config.get(at))
            .copied()
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::QueueT;

    fn queues(n: usize) -> Vec<ActiveQueue> {
        (0..n)
            .map(|_| ActiveQueue {
                queue: Queue::new(16).unwrap(),
                notify: EventFd::new(0).unwrap(),
            })
            .collect()
    }

    #[test]
    fn a_device_runs_only_on_as_many_queues_as_it_has() {
        assert!(expect_queues::<2>("virtio-net t", queues(2)).is_ok());
        for n in [0, 1, 3] {
            let err = expect_queues::<2>("virtio-net t", queues(n)).unwrap_err();
            assert!(
                matches!(err, ActivateError::QueueCount { got, want: 2, .. } if got == n),
                "{err}"
            );
        }
    }
}

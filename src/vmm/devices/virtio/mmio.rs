//! The virtio-mmio transport (version 2, virtio 1.x): the register window
//! through which the guest driver negotiates features, sets up queues and
//! drives the device's status.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{ActiveQueue, Interrupt, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VirtioDevice};
use crate::vmm::devices::bus::BusDevice;
use crate::vmm::memory::GuestMemory;

/// Size of one device's register window.
pub const MMIO_WINDOW: u64 = 0x1000;

const MAGIC_VALUE: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4755_5245; // "GURE"

// Register offsets.
const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
/// Where the driver writes a queue index to notify; KVM turns the write
/// into an ioeventfd signal, see [`MmioTransport::notify_address`].
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_AVAIL_LOW: u64 = 0x090;
const REG_QUEUE_AVAIL_HIGH: u64 = 0x094;
const REG_QUEUE_USED_LOW: u64 = 0x0a0;
const REG_QUEUE_USED_HIGH: u64 = 0x0a4;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
const REG_CONFIG: u64 = 0x100;

// Device status bits.
const STATUS_ACKNOWLEDGE: u32 = 1;
const STATUS_DRIVER: u32 = 2;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const STATUS_NEEDS_RESET: u32 = 0x40;
const STATUS_FAILED: u32 = 0x80;

/// A virtio device on the MMIO bus.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    activated: bool,
    /// A reset the device could not finish (its workers still ran): the
    /// next reset asks the device again, activated or not.
    reset_owed: bool,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device", &self.device.name())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Errors of transport setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{device}: invalid queue size {size}: {source:?}")]
    Queue {
        device: String,
        size: u16,
        source: virtio_queue::Error,
    },
    #[error("{device}: cannot create a queue eventfd: {source}")]
    EventFd {
        device: String,
        source: std::io::Error,
    },
}

fn low(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or_default()
}

fn high(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or_default()
}

impl MmioTransport {
    /// Wraps `device`; `interrupt` carries its irqfd.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        interrupt: Arc<Interrupt>,
    ) -> Result<Self, Error> {
        let mut queues = Vec::new();
        let mut queue_evts = Vec::new();
        for &size in device.queue_max_sizes() {
            queues.push(Queue::new(size).map_err(|source| Error::Queue {
                device: device.name().to_string(),
                size,
                source,
            })?);
            queue_evts.push(
                EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::EventFd {
                    device: device.name().to_string(),
                    source,
                })?,
            );
        }
        Ok(Self {
            device,
            mem,
            interrupt,
            queues,
            queue_evts,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            activated: false,
            reset_owed: false,
        })
    }

    /// The queue eventfds, to register as ioeventfds on the notify
    /// register with the queue index as data.
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    fn device_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        let sel = usize::try_from(self.queue_sel).ok()?;
        self.queues.get_mut(sel)
    }

    /// Queue setup is only writable between FEATURES_OK and DRIVER_OK.
    fn queue_setup_allowed(&self) -> bool {
        self.status & STATUS_FEATURES_OK != 0 && self.status & STATUS_DRIVER_OK == 0
    }

    fn read_u32(&mut self, offset: u64) -> u32 {
        match offset {
            REG_MAGIC => MAGIC_VALUE,
            REG_VERSION => VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => low(self.device_features()),
                1 => high(self.device_features()),
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            REG_QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            REG_INTERRUPT_STATUS => self.interrupt.status(),
            REG_STATUS => {
                if self.interrupt.is_broken() {
                    self.status | STATUS_NEEDS_RESET
                } else {
                    self.status
                }
            }
            REG_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_u32(&mut self, offset: u64, value: u32) {
        let setup = self.queue_setup_allowed();
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            REG_DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let mask = 0xffff_ffffu64 << shift;
                self.driver_features = (self.driver_features & !mask) | (u64::from(value) << shift);
            }
            REG_QUEUE_SEL => self.queue_sel = value,
            REG_QUEUE_NUM if setup => {
                if let (Some(q), Ok(size)) = (self.selected_queue(), u16::try_from(value)) {
                    q.set_size(size);
                }
            }
            REG_QUEUE_READY if setup => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            REG_QUEUE_DESC_LOW if setup => {
                self.with_queue(|q| q.set_desc_table_address(Some(value), None))
            }
            REG_QUEUE_DESC_HIGH if setup => {
                self.with_queue(|q| q.set_desc_table_address(None, Some(value)))
            }
            REG_QUEUE_AVAIL_LOW if setup => {
                self.with_queue(|q| q.set_avail_ring_address(Some(value), None))
            }
            REG_QUEUE_AVAIL_HIGH if setup => {
                self.with_queue(|q| q.set_avail_ring_address(None, Some(value)))
            }
            REG_QUEUE_USED_LOW if setup => {
                self.with_queue(|q| q.set_used_ring_address(Some(value), None))
            }
            REG_QUEUE_USED_HIGH if setup => {
                self.with_queue(|q| q.set_used_ring_address(None, Some(value)))
            }
            REG_QUEUE_NOTIFY => {
                // Reached only without an ioeventfd: signal the queue here.
                if let Some(evt) = usize::try_from(value)
                    .ok()
                    .and_then(|i| self.queue_evts.get(i))
                {
                    let _ = evt.write(1);
                }
            }
            REG_INTERRUPT_ACK => self.interrupt.ack(value),
            REG_STATUS => self.set_status(value),
            _ => {}
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.selected_queue() {
            f(q);
        }
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value & !STATUS_NEEDS_RESET;
        // FEATURES_OK sticks only for a subset of what we offer that
        // includes VERSION_1 (no legacy drivers).
        if value & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            let acceptable = self.driver_features & !self.device_features() == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !acceptable {
                value &= !STATUS_FEATURES_OK;
            }
        }
        let driver_ok_now = value & STATUS_DRIVER_OK != 0 && self.status & STATUS_DRIVER_OK == 0;
        self.status = value;
        if driver_ok_now && !self.activated {
            self.activate();
        }
    }

    fn activate(&mut self) {
        let name = self.device.name().to_string();
        let ready = self.status & (STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK)
            == (STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
        // A driver may leave queues it does not use unready (virtio-blk
        // with fewer vCPUs than the device has queues): the device gets
        // the ready ones, and decides whether they are enough.
        let queues_valid = self
            .queues
            .iter()
            .filter(|q| q.ready())
            .all(|q| q.is_valid(&self.mem));
        if !ready || !queues_valid {
            self.interrupt
                .mark_broken(&name, &"driver set DRIVER_OK with an invalid queue setup");
            return;
        }
        let event_idx = self.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut active = Vec::new();
        let ready_queues = self.queues.iter().zip(&self.queue_evts);
        for (queue, evt) in ready_queues.filter(|(q, _)| q.ready()) {
            let queue = match Queue::try_from(queue.state()) {
                Ok(mut q) => {
                    q.set_event_idx(event_idx);
                    q
                }
                Err(e) => {
                    self.interrupt
                        .mark_broken(&name, &format!("invalid queue: {e:?}"));
                    return;
                }
            };
            match evt.try_clone() {
                Ok(notify) => active.push(ActiveQueue { queue, notify }),
                Err(e) => {
                    eprintln!("gureum: {name}: cannot duplicate a queue eventfd: {e}");
                    self.status |= STATUS_FAILED;
                    return;
                }
            }
        }
        match self.device.activate(
            self.mem.clone(),
            self.driver_features,
            active,
            self.interrupt.clone(),
        ) {
            Ok(()) => self.activated = true,
            Err(e) => {
                eprintln!("gureum: {e}");
                self.status |= STATUS_FAILED;
            }
        }
    }

    /// Resets the device, which waits (within a bound) until its workers
    /// let go of the guest's queues and buffers. If they do not, the
    /// device reads as needing a reset again rather than hang the vCPU.
    fn reset(&mut self) {
        let reset = if self.activated || self.reset_owed {
            self.activated = false;
            self.device.reset()
        } else {
            Ok(())
        };
        self.reset_owed = reset.is_err();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt.reset();
        if let Err(e) = reset {
            self.interrupt.mark_broken(self.device.name(), &e);
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= REG_CONFIG {
            self.device.read_config(offset - REG_CONFIG, data);
        } else if data.len() == 4 && offset % 4 == 0 {
            data.copy_from_slice(&self.read_u32(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // The device config space is read-only for our devices.
        if offset < REG_CONFIG && offset % 4 == 0 {
            if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                self.write_u32(offset, u32::from_le_bytes(bytes));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::counters::BlockCounters;
    use crate::vmm::devices::virtio::{
        ActivateError, DeviceMetrics, INT_CONFIG_CHANGE, ResetError,
    };
    use std::sync::Mutex;

    /// What a device was activated with: the features and, per queue,
    /// whether EVENT_IDX is on.
    type Seen = Arc<Mutex<Option<(u64, Vec<bool>)>>>;

    /// A device that only records its activation; its first
    /// `stuck_resets` resets fail.
    struct Recorder {
        offered: u64,
        seen: Seen,
        stuck_resets: u32,
    }

    impl VirtioDevice for Recorder {
        fn device_type(&self) -> u32 {
            2
        }
        fn name(&self) -> &str {
            "recorder"
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 16]
        }
        fn features(&self) -> u64 {
            self.offered
        }
        fn read_config(&self, _offset: u64, _data: &mut [u8]) {}
        fn metrics(&self) -> Arc<dyn DeviceMetrics> {
            Arc::new(BlockCounters::default())
        }
        fn activate(
            &mut self,
            _mem: GuestMemory,
            features: u64,
            queues: Vec<ActiveQueue>,
            _interrupt: Arc<Interrupt>,
        ) -> Result<(), ActivateError> {
            let event_idx = queues.iter().map(|q| q.queue.event_idx_enabled()).collect();
            *self.seen.lock().unwrap() = Some((features, event_idx));
            Ok(())
        }
        fn reset(&mut self) -> Result<(), ResetError> {
            if self.stuck_resets > 0 {
                self.stuck_resets -= 1;
                return Err(ResetError::Stuck {
                    device: "recorder".into(),
                    workers: 1,
                    waited: std::time::Duration::ZERO,
                });
            }
            Ok(())
        }
    }

    /// Drives the driver's side of initialisation, accepting `accepted`,
    /// and returns what the device was activated with.
    fn negotiate(offered: u64, accepted: u64) -> Option<(u64, Vec<bool>)> {
        negotiate_queues(offered, accepted, &[0, 1])
    }

    /// As [`negotiate`], setting up only the queues `set_up` (the
    /// device has two).
    fn negotiate_queues(offered: u64, accepted: u64, set_up: &[u32]) -> Option<(u64, Vec<bool>)> {
        let seen = Seen::default();
        let device = Recorder {
            offered,
            seen: seen.clone(),
            stuck_resets: 0,
        };
        let mut t = transport(device);
        drive_to_driver_ok(&mut t, accepted, set_up);
        seen.lock().unwrap().take()
    }

    fn transport(device: Recorder) -> MmioTransport {
        let mem = crate::vmm::memory::create(16).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        MmioTransport::new(Box::new(device), mem, Arc::new(Interrupt::new(irq))).unwrap()
    }

    /// The driver's side of initialisation up to DRIVER_OK.
    fn drive_to_driver_ok(t: &mut MmioTransport, accepted: u64, set_up: &[u32]) {
        let mut write = |reg: u64, value: u32| t.write(reg, &value.to_le_bytes());
        write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        write(REG_DRIVER_FEATURES_SEL, 0);
        write(REG_DRIVER_FEATURES, low(accepted));
        write(REG_DRIVER_FEATURES_SEL, 1);
        write(REG_DRIVER_FEATURES, high(accepted));
        let setup = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        write(REG_STATUS, setup);
        for &sel in set_up {
            let base = 0x1_0000 * (sel + 1);
            write(REG_QUEUE_SEL, sel);
            write(REG_QUEUE_NUM, 16);
            write(REG_QUEUE_DESC_LOW, base);
            write(REG_QUEUE_AVAIL_LOW, base + 0x1000);
            write(REG_QUEUE_USED_LOW, base + 0x2000);
            write(REG_QUEUE_READY, 1);
        }
        write(REG_STATUS, setup | STATUS_DRIVER_OK);
    }

    fn read(t: &mut MmioTransport, reg: u64) -> u32 {
        let mut data = [0u8; 4];
        t.read(reg, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn a_reset_the_device_cannot_finish_leaves_it_needing_another() {
        for stuck in [false, true] {
            let device = Recorder {
                offered: 0,
                seen: Seen::default(),
                stuck_resets: u32::from(stuck),
            };
            let mut t = transport(device);
            drive_to_driver_ok(&mut t, VIRTIO_F_VERSION_1, &[0]);
            t.write(REG_STATUS, &0u32.to_le_bytes());
            let (status, interrupt) = if stuck {
                (STATUS_NEEDS_RESET, INT_CONFIG_CHANGE)
            } else {
                (0, 0)
            };
            assert_eq!(read(&mut t, REG_STATUS), status, "stuck: {stuck}");
            assert_eq!(
                read(&mut t, REG_INTERRUPT_STATUS),
                interrupt,
                "stuck: {stuck}"
            );
        }
    }

    #[test]
    fn after_a_stuck_reset_the_next_asks_the_device_again() {
        let device = Recorder {
            offered: 0,
            seen: Seen::default(),
            stuck_resets: 2,
        };
        let mut t = transport(device);
        drive_to_driver_ok(&mut t, VIRTIO_F_VERSION_1, &[0]);
        // The device is no longer activated after the first; its
        // workers are still running at the second, gone at the third.
        for status in [STATUS_NEEDS_RESET, STATUS_NEEDS_RESET, 0] {
            t.write(REG_STATUS, &0u32.to_le_bytes());
            assert_eq!(read(&mut t, REG_STATUS), status);
        }
    }

    #[test]
    fn the_device_gets_the_accepted_features_and_event_idx_reaches_its_queues() {
        let offered = VIRTIO_RING_F_EVENT_IDX | 1;
        let accepted = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX;
        assert_eq!(
            negotiate(offered, accepted),
            Some((accepted, vec![true, true]))
        );
        // Not accepted: the queues notify on every buffer.
        assert_eq!(
            negotiate(offered, VIRTIO_F_VERSION_1 | 1),
            Some((VIRTIO_F_VERSION_1 | 1, vec![false, false]))
        );
        // Not offered: FEATURES_OK does not stick, nothing is activated.
        assert_eq!(negotiate(1, accepted), None);
    }

    #[test]
    fn the_device_gets_the_queues_the_driver_set_up() {
        let accepted = VIRTIO_F_VERSION_1;
        for set_up in [&[0u32][..], &[1], &[]] {
            assert_eq!(
                negotiate_queues(0, accepted, set_up),
                Some((accepted, vec![false; set_up.len()])),
                "{set_up:?}"
            );
        }
    }
}

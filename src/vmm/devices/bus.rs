//! An address bus mapping ranges to devices; the VM has one for port I/O
//! and one for MMIO.
//!
//! Addresses nobody claims read as all ones and ignore writes, as on a PC
//! with nothing decoding them; that is how Linux probes for absent
//! hardware (PCI, PS/2 mouse, floppy).

use std::sync::{Arc, Mutex, PoisonError};

/// A device on a bus. `offset` is relative to the device's base address.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors of bus setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bus range {base:#x}+{len:#x} is empty or overlaps a device already on the bus")]
    Overlap { base: u64, len: u64 },
}

struct Range {
    base: u64,
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

impl Range {
    fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }
}

/// A bus: port I/O (16-bit addresses) or MMIO.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<Range>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.ranges.iter().map(|r| (r.base, r.len)))
            .finish()
    }
}

impl Bus {
    /// Puts `device` at `base..base + len`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), Error> {
        let end = base.saturating_add(len);
        let overlaps = self.ranges.iter().any(|r| base < r.end() && r.base < end);
        if overlaps || len == 0 {
            return Err(Error::Overlap { base, len });
        }
        self.ranges.push(Range { base, len, device });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(&Range, u64)> {
        self.ranges
            .iter()
            .find(|r| addr >= r.base && addr < r.end())
            .map(|r| (r, addr - r.base))
    }

    /// Dispatches a guest read.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.find(addr) {
            Some((range, offset)) => range
                .device
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .read(offset, data),
            None => data.fill(0xff),
        }
    }

    /// Dispatches a guest write.
    pub fn write(&self, addr: u64, data: &[u8]) {
        if let Some((range, offset)) = self.find(addr) {
            range
                .device
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write(offset, data);
        }
    }
}

/// The two buses a vCPU dispatches its exits to.
#[derive(Debug, Default)]
pub struct Buses {
    pub pio: Bus,
    pub mmio: Bus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Latch(Vec<(u64, u8)>);

    impl BusDevice for Latch {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(u8::try_from(offset).unwrap());
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data[0]));
        }
    }

    #[test]
    fn dispatches_by_address_with_relative_offsets() {
        let latch = Arc::new(Mutex::new(Latch::default()));
        let mut bus = Bus::default();
        bus.insert(0x3f8, 8, latch.clone()).unwrap();
        let mut b = [0u8; 1];
        bus.read(0x3fa, &mut b);
        assert_eq!(b[0], 2);
        bus.write(0x3ff, &[9]);
        assert_eq!(latch.lock().unwrap().0, vec![(7, 9)]);
    }

    #[test]
    fn unclaimed_addresses_read_all_ones() {
        let bus = Bus::default();
        let mut b = [0u8; 4];
        bus.read(0xcfc, &mut b);
        assert_eq!(b, [0xff; 4]);
        bus.write(0x80, &[1]);
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let mut bus = Bus::default();
        bus.insert(0x60, 5, Arc::new(Mutex::new(Latch::default())))
            .unwrap();
        assert!(
            bus.insert(0x64, 1, Arc::new(Mutex::new(Latch::default())))
                .is_err()
        );
        assert!(
            bus.insert(0x65, 1, Arc::new(Mutex::new(Latch::default())))
                .is_ok()
        );
        assert!(
            bus.insert(u64::MAX - 1, 10, Arc::new(Mutex::new(Latch::default())))
                .is_ok()
        );
    }
}

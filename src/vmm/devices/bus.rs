//! The port-I/O bus: maps port ranges to devices.
//!
//! Ports nobody claims read as all ones and ignore writes, as on a PC
//! with nothing decoding them; that is how Linux probes for absent
//! hardware (PCI, PS/2 mouse, floppy).

use std::sync::{Arc, Mutex, PoisonError};

/// A device on the port-I/O bus. `offset` is relative to the device's
/// base port.
pub trait PioDevice: Send {
    fn read(&mut self, offset: u16, data: &mut [u8]);
    fn write(&mut self, offset: u16, data: &[u8]);
}

/// Errors of bus setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O ports {base:#x}+{len} overlap a device already on the bus")]
    Overlap { base: u16, len: u16 },
}

struct Range {
    base: u16,
    len: u16,
    device: Arc<Mutex<dyn PioDevice>>,
}

/// The port-I/O bus.
#[derive(Default)]
pub struct PioBus {
    ranges: Vec<Range>,
}

impl std::fmt::Debug for PioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.ranges.iter().map(|r| (r.base, r.len)))
            .finish()
    }
}

impl PioBus {
    /// Puts `device` at ports `base..base + len`.
    pub fn insert(
        &mut self,
        base: u16,
        len: u16,
        device: Arc<Mutex<dyn PioDevice>>,
    ) -> Result<(), Error> {
        let end = u32::from(base) + u32::from(len);
        let overlaps = self.ranges.iter().any(|r| {
            u32::from(base) < u32::from(r.base) + u32::from(r.len) && u32::from(r.base) < end
        });
        if overlaps || len == 0 {
            return Err(Error::Overlap { base, len });
        }
        self.ranges.push(Range { base, len, device });
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(&Range, u16)> {
        self.ranges
            .iter()
            .find(|r| port >= r.base && u32::from(port) < u32::from(r.base) + u32::from(r.len))
            .map(|r| (r, port - r.base))
    }

    /// Dispatches a guest `in`.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        match self.find(port) {
            Some((range, offset)) => range
                .device
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .read(offset, data),
            None => data.fill(0xff),
        }
    }

    /// Dispatches a guest `out`.
    pub fn write(&self, port: u16, data: &[u8]) {
        if let Some((range, offset)) = self.find(port) {
            range
                .device
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write(offset, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Latch(Vec<(u16, u8)>);

    impl PioDevice for Latch {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(u8::try_from(offset).unwrap());
        }
        fn write(&mut self, offset: u16, data: &[u8]) {
            self.0.push((offset, data[0]));
        }
    }

    #[test]
    fn dispatches_by_port_with_relative_offsets() {
        let latch = Arc::new(Mutex::new(Latch::default()));
        let mut bus = PioBus::default();
        bus.insert(0x3f8, 8, latch.clone()).unwrap();
        let mut b = [0u8; 1];
        bus.read(0x3fa, &mut b);
        assert_eq!(b[0], 2);
        bus.write(0x3ff, &[9]);
        assert_eq!(latch.lock().unwrap().0, vec![(7, 9)]);
    }

    #[test]
    fn unclaimed_ports_read_all_ones() {
        let bus = PioBus::default();
        let mut b = [0u8; 4];
        bus.read(0xcfc, &mut b);
        assert_eq!(b, [0xff; 4]);
        bus.write(0x80, &[1]);
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let mut bus = PioBus::default();
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
    }
}

//! The ACPI Generic Event Device (`ACPI0013`): how a hardware-reduced
//! ACPI platform, which has no GPE blocks, signals events to the guest.
//! The VMM latches an event in a one-byte register and raises the GED's
//! interrupt; the kernel's GED driver runs the DSDT's `_EVT` method,
//! which reads the register (reading clears it) and notifies the device
//! the event belongs to. The one event so far is the power button.

use std::sync::{Arc, Mutex, PoisonError};

use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;

/// Number of ports the device decodes: the event register.
pub const PORTS: u64 = 1;
/// Event register bit: the power button was pressed (`_EVT` notifies the
/// `PNP0C0C` device).
pub const EVENT_POWER_BUTTON: u8 = 1;

/// The GED: events not yet read by the guest, and its interrupt line.
#[derive(Debug)]
pub struct AcpiGed {
    pending: u8,
    irq: EventFd,
}

impl AcpiGed {
    /// A GED that interrupts the guest through `irq` (an irqfd).
    pub fn new(irq: EventFd) -> Self {
        Self { pending: 0, irq }
    }

    fn raise(&mut self, events: u8) {
        self.pending |= events;
        // A full eventfd counter still means "interrupt pending".
        let _ = self.irq.write(1);
    }
}

impl BusDevice for AcpiGed {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = std::mem::take(&mut self.pending);
        }
    }

    /// The register is read-only.
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

/// The guest's power button, pressed from outside the vCPU threads (the
/// VMM's signal handler).
#[derive(Debug, Clone)]
pub struct PowerButton(Arc<Mutex<AcpiGed>>);

impl PowerButton {
    /// The button wired to `ged`.
    pub fn new(ged: Arc<Mutex<AcpiGed>>) -> Self {
        Self(ged)
    }

    /// Presses the button once: a guest that handles it shuts down.
    pub fn press(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .raise(EVENT_POWER_BUTTON);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_press_interrupts_the_guest_and_reading_the_register_clears_it() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let ged = Arc::new(Mutex::new(AcpiGed::new(irq.try_clone().unwrap())));
        let button = PowerButton::new(ged.clone());
        let read = || {
            let mut data = [0xffu8; 2];
            ged.lock().unwrap().read(0, &mut data);
            data
        };
        assert_eq!(read(), [0, 0], "nothing pending");
        assert!(irq.read().is_err(), "no interrupt before a press");

        button.press();
        assert_eq!(irq.read().unwrap(), 1);
        // The guest writes nothing that changes the register.
        ged.lock().unwrap().write(0, &[0]);
        assert_eq!(read(), [EVENT_POWER_BUTTON, 0]);
        assert_eq!(read(), [0, 0], "reading cleared the event");

        // Two presses before the guest looks are one event, not lost.
        button.press();
        button.press();
        assert_eq!(irq.read().unwrap(), 2);
        assert_eq!(read(), [EVENT_POWER_BUTTON, 0]);
    }
}

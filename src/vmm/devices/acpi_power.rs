//! The hardware-reduced ACPI power registers the FADT points at: sleep
//! control (power-off when the guest enters S5), sleep status, and reset.

use super::bus::BusDevice;
use crate::vmm::exit::{ExitSignal, VmExit};
use crate::vmm::layout::{ACPI_RESET_VALUE, ACPI_S5_SLEEP_TYPE};

/// Register offsets from the device's base port.
const SLEEP_CONTROL: u64 = 0;
const SLEEP_STATUS: u64 = 1;
const RESET: u64 = 2;
/// Sleep control register: SLP_TYP in bits 4:2, SLP_EN in bit 5.
const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;
/// Sleep status register: the platform woke (always, for reads).
const WAK_STS: u8 = 1 << 7;

/// Number of ports the device decodes.
pub const PORTS: u64 = 3;

/// The ACPI power device.
#[derive(Debug)]
pub struct AcpiPower {
    exits: ExitSignal,
}

impl AcpiPower {
    pub fn new(exits: ExitSignal) -> Self {
        Self { exits }
    }
}

impl BusDevice for AcpiPower {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(if offset == SLEEP_STATUS { WAK_STS } else { 0 });
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        let exit = match offset {
            SLEEP_CONTROL
                if value & SLP_EN != 0
                    && (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK == ACPI_S5_SLEEP_TYPE =>
            {
                Some(VmExit::PowerOff)
            }
            RESET if value == ACPI_RESET_VALUE => Some(VmExit::Reboot),
            _ => None,
        };
        if let Some(exit) = exit {
            self.exits.stop(exit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_powers_off_and_reset_reboots() {
        let (signal, rx) = ExitSignal::new();
        let mut dev = AcpiPower::new(signal);
        // S3 (sleep type 3) is not supported: nothing happens.
        dev.write(SLEEP_CONTROL, &[SLP_EN | (3 << SLP_TYP_SHIFT)]);
        // The type alone, without SLP_EN, does nothing.
        dev.write(SLEEP_CONTROL, &[ACPI_S5_SLEEP_TYPE << SLP_TYP_SHIFT]);
        assert!(rx.try_recv().is_err());
        dev.write(
            SLEEP_CONTROL,
            &[SLP_EN | (ACPI_S5_SLEEP_TYPE << SLP_TYP_SHIFT)],
        );
        assert_eq!(rx.try_recv().unwrap(), VmExit::PowerOff);
        // The first reason wins: a reset after power-off is not reported.
        dev.write(RESET, &[ACPI_RESET_VALUE]);
        assert!(rx.try_recv().is_err());
        let mut status = [0u8];
        dev.read(SLEEP_STATUS, &mut status);
        assert_eq!(status[0], WAK_STS);
    }
}

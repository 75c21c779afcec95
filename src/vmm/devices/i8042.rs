//! The i8042 keyboard controller, for the one command that matters to a
//! VM: "pulse the CPU reset line" (Linux `reboot=k`).

use vm_superio::{I8042Device, Trigger};

use super::bus::BusDevice;
use crate::vmm::exit::{ExitSignal, VmExit};

/// Turns the controller's reset line into a VM reboot request.
#[derive(Debug)]
pub struct ResetLine(pub ExitSignal);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.stop(VmExit::Reboot);
        Ok(())
    }
}

/// The controller at ports 0x60-0x64.
#[derive(Debug)]
pub struct I8042(I8042Device<ResetLine>);

impl I8042 {
    pub fn new(exits: ExitSignal) -> Self {
        Self(I8042Device::new(ResetLine(exits)))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0xff, |o| self.0.read(o));
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), Some(&value)) = (u8::try_from(offset), data.first()) {
            let Ok(()) = self.0.write(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_a_reboot() {
        let (signal, rx) = ExitSignal::new();
        let mut dev = I8042::new(signal.clone());
        dev.write(4, &[0xaa]);
        assert!(rx.try_recv().is_err());
        dev.write(4, &[0xfe]);
        assert_eq!(rx.try_recv().unwrap(), VmExit::Reboot);
        assert!(signal.is_stopping());
    }
}

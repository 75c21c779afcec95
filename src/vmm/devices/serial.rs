//! The 16550 UART on COM1 (vm-superio), its interrupt delivered through a
//! KVM irqfd, and the feed of console input into its receive FIFO.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use vm_superio::serial::{Error as SerialError, SerialEvents};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;

/// Raises the UART's interrupt line by signalling an eventfd that KVM
/// routes to the IOAPIC (irqfd).
#[derive(Debug)]
pub struct IrqLine(pub EventFd);

impl Trigger for IrqLine {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Tells the input feeder that the guest emptied the receive FIFO.
#[derive(Debug)]
pub struct FifoDrained(pub EventFd);

impl SerialEvents for FifoDrained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        // A failed write only delays input until the next drain.
        let _ = self.0.write(1);
    }
}

type Uart = Serial<IrqLine, FifoDrained, Box<dyn Write + Send>>;

/// COM1, shared between the vCPUs (register access) and the console input
/// feeder.
pub struct SerialPort(Uart);

impl std::fmt::Debug for SerialPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialPort").finish_non_exhaustive()
    }
}

impl SerialPort {
    pub fn new(irq: EventFd, drained: EventFd, out: Box<dyn Write + Send>) -> Self {
        Self(Serial::with_events(IrqLine(irq), FifoDrained(drained), out))
    }
}

impl BusDevice for SerialPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0xff, |o| self.0.read(o));
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), Some(&value)) = (u8::try_from(offset), data.first()) {
            // Output that cannot be written (closed stdout) is dropped, as
            // a UART with nothing attached would; the guest carries on.
            let _ = self.0.write(offset, value);
        }
    }
}

/// Feeds bytes into the UART's receive FIFO, waiting for the guest to
/// drain it when full. Returns when all of `input` is queued.
pub fn feed(port: &Arc<Mutex<SerialPort>>, drained: &EventFd, mut input: &[u8]) -> io::Result<()> {
    while !input.is_empty() {
        let queued = {
            let mut uart = port.lock().unwrap_or_else(PoisonError::into_inner);
            match uart.0.enqueue_raw_bytes(input) {
                Ok(n) => n,
                Err(SerialError::FullFifo) => 0,
                Err(SerialError::Trigger(e) | SerialError::IOError(e)) => return Err(e),
            }
        };
        input = input.get(queued..).unwrap_or_default();
        if !input.is_empty() {
            drained.read()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_reaches_the_output_and_raises_the_irq() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let out = Captured::default();
        let mut port = SerialPort::new(
            irq.try_clone().unwrap(),
            EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            Box::new(out.clone()),
        );
        port.write(1, &[0x02]); // IER: transmitter-empty interrupt
        port.write(0, b"h");
        port.write(0, b"i");
        assert_eq!(&*out.0.lock().unwrap(), b"hi");
        assert!(irq.read().unwrap() >= 1);
    }

    #[test]
    fn input_larger_than_the_fifo_waits_for_the_guest() {
        let drained = EventFd::new(0).unwrap();
        let port = Arc::new(Mutex::new(SerialPort::new(
            EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            drained.try_clone().unwrap(),
            Box::new(io::sink()),
        )));
        let input: Vec<u8> = (0..200u8).collect();
        let feeder = {
            let port = port.clone();
            let drained = drained.try_clone().unwrap();
            std::thread::spawn(move || feed(&port, &drained, &input))
        };
        // Play the guest: read the data register until 200 bytes arrived.
        let mut got = Vec::new();
        while got.len() < 200 {
            let mut lsr = [0u8];
            port.lock().unwrap().read(5, &mut lsr);
            if lsr[0] & 1 != 0 {
                let mut b = [0u8];
                port.lock().unwrap().read(0, &mut b);
                got.push(b[0]);
            } else {
                std::thread::yield_now();
            }
        }
        feeder.join().unwrap().unwrap();
        assert_eq!(got, (0..200u8).collect::<Vec<_>>());
    }
}

//! Why a VM stopped, the process exit code each reason maps to, and the
//! signal through which devices and vCPUs stop the VM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

/// Why the VM stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest powered off (ACPI S5), by itself or after its power
    /// button was pressed.
    PowerOff,
    /// The guest asked for a reset (i8042 or ACPI reset register).
    Reboot,
    /// A vCPU stopped in a way a healthy guest never does: triple fault,
    /// KVM internal error, failed VM entry. Holds a description with the
    /// exit reason and registers.
    Crash(String),
    /// The person at the console detached with the escape sequence.
    Detached,
    /// The VMM process was told to stop at once (SIGINT, SIGHUP, a second
    /// SIGTERM).
    Terminated,
}

impl VmExit {
    /// Process exit code of `gureum boot` for this reason.
    pub fn code(&self) -> u8 {
        match self {
            VmExit::PowerOff => 0,
            VmExit::Reboot => EXIT_REBOOT,
            VmExit::Crash(_) => EXIT_CRASH,
            VmExit::Detached => EXIT_DETACHED,
            VmExit::Terminated => EXIT_TERMINATED,
        }
    }
}

/// Exit code for VMM errors (bad input, KVM failures).
pub const EXIT_VMM_ERROR: u8 = 1;
/// Exit code when the guest requested a reboot.
pub const EXIT_REBOOT: u8 = 3;
/// Exit code for a guest crash: triple fault or KVM internal error.
pub const EXIT_CRASH: u8 = 4;
/// Exit code when the console user stopped the VM with Ctrl-A x.
pub const EXIT_DETACHED: u8 = 5;
/// Exit code when a signal stopped the VM at once.
pub const EXIT_TERMINATED: u8 = 6;

/// Stops the VM: the first reason given wins, and from then on every vCPU
/// leaves its run loop at its next exit instead of running the guest on.
#[derive(Debug, Clone)]
pub struct ExitSignal {
    tx: Sender<VmExit>,
    stopping: Arc<AtomicBool>,
}

impl ExitSignal {
    /// A signal and the receiver that learns the reason.
    pub fn new() -> (Self, Receiver<VmExit>) {
        let (tx, rx) = channel();
        let signal = Self {
            tx,
            stopping: Arc::new(AtomicBool::new(false)),
        };
        (signal, rx)
    }

    /// Asks the VM to stop for `why`; later requests are ignored.
    pub fn stop(&self, why: VmExit) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            // The receiver is gone only once the VM is stopping anyway.
            let _ = self.tx.send(why);
        }
    }

    /// Whether the VM is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

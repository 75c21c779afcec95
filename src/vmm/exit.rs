//! Why a VM stopped, the process exit status each reason maps to, and
//! the signal through which devices and vCPUs stop the VM.

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
    /// The exit status of `gureum boot` for this reason.
    pub fn status(&self) -> Status {
        match self {
            VmExit::PowerOff => Status::PowerOff,
            VmExit::Reboot => Status::Reboot,
            VmExit::Crash(_) => Status::Crash,
            VmExit::Detached => Status::Detached,
            VmExit::Terminated => Status::Terminated,
        }
    }
}

/// The exit statuses of `gureum boot`: the VMM's contract with whoever
/// runs it (an instance's supervisor, the rig's scripts, a person).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The guest powered off.
    PowerOff,
    /// The VMM failed: bad input, a KVM failure.
    VmmError,
    /// Bad usage (clap's status).
    Usage,
    /// The guest asked to reboot.
    Reboot,
    /// The guest crashed: triple fault, KVM internal error.
    Crash,
    /// The console user stopped the VM with Ctrl-A x.
    Detached,
    /// A signal stopped the VM at once.
    Terminated,
}

impl Status {
    const ALL: [Status; 7] = [
        Status::PowerOff,
        Status::VmmError,
        Status::Usage,
        Status::Reboot,
        Status::Crash,
        Status::Detached,
        Status::Terminated,
    ];

    pub const fn code(self) -> u8 {
        match self {
            Status::PowerOff => 0,
            Status::VmmError => 1,
            Status::Usage => 2,
            Status::Reboot => 3,
            Status::Crash => 4,
            Status::Detached => 5,
            Status::Terminated => 6,
        }
    }

    /// The status a process exit code stands for, if any.
    pub fn of_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| i32::from(s.code()) == code)
    }
}

impl From<Status> for std::process::ExitCode {
    fn from(status: Status) -> Self {
        Self::from(status.code())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_code_and_others_are_unknown() {
        for status in Status::ALL {
            assert_eq!(Status::of_code(i32::from(status.code())), Some(status));
        }
        assert_eq!(Status::of_code(7), None);
        assert_eq!(Status::of_code(-1), None);
        assert_eq!(VmExit::Crash("x".into()).status(), Status::Crash);
    }
}

//! A process the control plane started, identified by PID *and* start
//! time so that a recycled PID is never mistaken for it.

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A process as recorded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot it started.
    pub start_ticks: u64,
}

/// What /proc says about a PID: its start time, and whether it has
/// already exited (a zombie waiting for its parent).
fn stat(pid: i32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields after it
    // start behind the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

impl ProcessRef {
    /// The running process `pid`, if it exists.
    pub fn of(pid: u32) -> Option<Self> {
        let pid = i32::try_from(pid).ok()?;
        let (start_ticks, _) = stat(pid)?;
        Some(Self { pid, start_ticks })
    }

    /// Whether this very process still runs.
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|(start, dead)| start == self.start_ticks && !dead)
    }

    /// Sends `sig` if the process still runs. Says whether it was sent.
    pub fn signal(&self, sig: Signal) -> bool {
        self.is_alive() && signal::kill(Pid::from_raw(self.pid), sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_alive_until_it_exits_and_a_new_start_time_is_another_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = ProcessRef::of(child.id()).unwrap();
        assert!(me.is_alive());
        let impostor = ProcessRef {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!impostor.is_alive(), "same PID, other start time");
        assert!(me.signal(Signal::SIGKILL));
        // A zombie is not alive, reaped or not.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!me.is_alive());
        child.wait().unwrap();
        assert!(!me.is_alive());
        assert!(!me.signal(Signal::SIGTERM));
    }
}

//! A process the control plane started, identified by PID *and* start
//! time so that a recycled PID is never mistaken for it, and by the
//! host's boot: after a reboot, PIDs and start times begin again, so a
//! new process may have both.

use std::sync::OnceLock;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Where Linux says which boot this is: a random UUID made at boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// One boot of the host (a UUID, as in /proc/sys/kernel/random/boot_id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BootId(u128);

impl BootId {
    /// The running boot's, if /proc says (read once: it cannot change
    /// under a running process).
    pub fn current() -> Option<Self> {
        static CURRENT: OnceLock<Option<BootId>> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let text = std::fs::read_to_string(BOOT_ID).ok()?;
            Self::try_from(text.trim().to_owned()).ok()
        })
    }
}

impl TryFrom<String> for BootId {
    type Error = String;

    /// Parses a UUID, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a boot id (a UUID)");
        let parts: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = parts.iter().map(|part| part.len()).collect();
        let hex = parts
            .iter()
            .all(|part| part.chars().all(|c| c.is_ascii_hexdigit()));
        if lengths != [8, 4, 4, 4, 12] || !hex {
            return Err(bad());
        }
        u128::from_str_radix(&parts.concat(), 16)
            .map(Self)
            .map_err(|_| bad())
    }
}

impl From<BootId> for String {
    /// As the kernel prints it.
    fn from(id: BootId) -> Self {
        let n = id.0;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            n >> 96,
            (n >> 80) & 0xffff,
            (n >> 64) & 0xffff,
            (n >> 48) & 0xffff,
            n & 0xffff_ffff_ffff
        )
    }
}

/// A process as recorded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot it started.
    pub start_ticks: u64,
    /// The boot it ran in; none in records made before it was kept, and
    /// where /proc did not say (then the PID and start time decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootId>,
}

/// Clock ticks per second in /proc/PID/stat: USER_HZ, 100 on every
/// Linux architecture gureum runs on (part of the kernel's ABI).
const USER_HZ: u64 = 100;

/// What /proc says about a PID.
struct Stat {
    /// Clock ticks after boot it started.
    start: u64,
    /// It has already exited (a zombie waiting for its parent).
    dead: bool,
    /// Clock ticks it has run, in user and kernel mode.
    cpu: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields after it
    // start behind the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and
    // 15, the start time field 22.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let state = *fields.first()?;
    Some(Stat {
        start: field(22)?,
        dead: state == "Z" || state == "X",
        cpu: field(14)? + field(15)?,
    })
}

/// The PIDs of the children of `pid`'s main thread (none when the kernel
/// does not list them).
fn children(pid: i32) -> impl Iterator<Item = i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect::<Vec<i32>>()
        .into_iter()
}

impl ProcessRef {
    /// The running process `pid`, if it exists.
    pub fn of(pid: u32) -> Option<Self> {
        let pid = i32::try_from(pid).ok()?;
        let start_ticks = stat(pid)?.start;
        Some(Self {
            pid,
            start_ticks,
            boot: BootId::current(),
        })
    }

    /// Whether it ran in an earlier boot of the host: it is gone, whatever
    /// its PID names now. Unknown (false) when a boot id is missing.
    pub fn from_another_boot(&self) -> bool {
        matches!((self.boot, BootId::current()), (Some(then), Some(now)) if then != now)
    }

    /// Whether this very process still runs.
    pub fn is_alive(&self) -> bool {
        !self.from_another_boot()
            && stat(self.pid).is_some_and(|s| s.start == self.start_ticks && !s.dead)
    }

    /// The CPU time this very process and its running children have
    /// used, while it runs: a jailed VMM is its keeper's child (the
    /// keeper is the process an instance records), and its vCPU threads
    /// are where the guest's time goes.
    pub fn cpu_time(&self) -> Option<std::time::Duration> {
        if self.from_another_boot() {
            return None;
        }
        let s = stat(self.pid)?;
        if s.start != self.start_ticks || s.dead {
            return None;
        }
        let children: u64 = children(self.pid)
            .filter_map(stat)
            .filter(|c| !c.dead)
            .map(|c| c.cpu)
            .sum();
        Some(std::time::Duration::from_millis(
            (s.cpu + children) * 1000 / USER_HZ,
        ))
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
    fn cpu_time_counts_running_children_as_a_jailed_vmm_is_its_keepers() {
        // An idle parent whose child spins: the parent's own time is ~0.
        let mut parent = std::process::Command::new("sh")
            .args(["-c", "sh -c 'while :; do :; done' & wait"])
            .spawn()
            .unwrap();
        let pid = i32::try_from(parent.id()).unwrap();
        let me = ProcessRef::of(parent.id()).unwrap();
        let mut spun = std::time::Duration::ZERO;
        for _ in 0..100 {
            spun = me.cpu_time().unwrap();
            if spun >= std::time::Duration::from_millis(200) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let own = stat(pid).unwrap().cpu * 1000 / USER_HZ;
        for child in children(pid) {
            let _ = signal::kill(Pid::from_raw(child), Signal::SIGKILL);
        }
        parent.wait().unwrap();
        assert!(
            spun >= std::time::Duration::from_millis(200),
            "{spun:?} (the parent's own: {own} ms)"
        );
    }

    #[test]
    fn a_process_is_alive_until_it_exits_and_a_new_start_time_or_boot_is_another_process() {
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
        // The same PID and start time, recorded before a reboot.
        let now = me.boot.unwrap();
        assert_eq!(Some(now), BootId::current());
        assert!(!me.from_another_boot());
        let before = ProcessRef {
            boot: Some(BootId(now.0 ^ 1)),
            ..me
        };
        assert!(before.from_another_boot());
        assert!(!before.is_alive());
        assert!(!before.signal(Signal::SIGKILL));
        assert!(me.is_alive(), "not signalled");
        assert!(me.signal(Signal::SIGKILL));
        // A zombie is not alive, reaped or not.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!me.is_alive());
        child.wait().unwrap();
        assert!(!me.is_alive());
        assert!(!me.signal(Signal::SIGTERM));
    }

    #[test]
    fn a_record_without_a_boot_id_is_judged_by_pid_and_start_time() {
        let me = ProcessRef::of(std::process::id()).unwrap();
        let old = format!(r#"{{"pid":{},"start_ticks":{}}}"#, me.pid, me.start_ticks);
        let old: ProcessRef = serde_json::from_str(&old).unwrap();
        assert_eq!(old.boot, None);
        assert!(!old.from_another_boot());
        assert!(old.is_alive());
        assert!(
            !ProcessRef {
                start_ticks: me.start_ticks + 1,
                ..old
            }
            .is_alive()
        );
        // Written back as it was read; a new record keeps its boot.
        let text = serde_json::to_string(&old).unwrap();
        assert!(!text.contains("boot"), "{text}");
        let text = serde_json::to_string(&me).unwrap();
        assert!(
            text.contains(&format!(r#""boot":"{}""#, String::from(me.boot.unwrap()))),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<ProcessRef>(&text).unwrap(), me);
    }

    #[test]
    fn boot_ids_read_and_write_as_the_kernel_prints_them() {
        let text = r#""f5d15b21-ca93-4d6a-a49d-cc4c672cc5ec""#;
        let id: BootId = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), text);
        assert_eq!(
            String::from(BootId(1)),
            "00000000-0000-0000-0000-000000000001"
        );
        for bad in [
            "",
            "f5d15b21ca934d6aa49dcc4c672cc5ec",
            "f5d15b21-ca93-4d6a-a49d-cc4c672cc5eg",
            "+5d15b21-ca93-4d6a-a49d-cc4c672cc5ec",
        ] {
            let error = BootId::try_from(bad.to_owned()).unwrap_err();
            assert!(error.contains("is not a boot id"), "{error}");
        }
        let error = serde_json::from_str::<ProcessRef>(r#"{"pid":1,"start_ticks":1,"boot":"x"}"#)
            .unwrap_err();
        assert!(
            error.to_string().contains("'x' is not a boot id"),
            "{error}"
        );
    }
}

//! The jail of `gureum boot --jail UID[:GID]`: the VMM runs as pid 1 of
//! a PID namespace of its own, and once every file it needs is open
//! (kernel and initrd read, disks, taps, `/dev/kvm`, the console's socket
//! and log) and before any thread exists, it moves into a mount namespace
//! whose root is an empty read-only tmpfs, drops to an unprivileged
//! uid/gid with no capabilities (bounding set emptied, no_new_privs), and
//! lowers its rlimits (open files, file size, no core dumps).
//!
//! A PID namespace takes effect for children only, so `gureum boot`
//! forks: the child is the VMM, the parent a small keeper that stays in
//! the caller's namespace, forwards SIGTERM, SIGINT and SIGHUP to it,
//! and ends as it ended (same status, or killed by the same signal), so
//! a supervisor sees one process. The VMM dies with its keeper
//! (parent-death signal).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::seccomp;

/// Where the jail's empty root is mounted before the VMM moves into it:
/// a directory every Linux host has. The mount exists only in the VMM's
/// own mount namespace; the host's directory is untouched.
const ROOT_MOUNT_POINT: &str = "/tmp";
/// Room for files the VMM opens once jailed (worker eventfds and epolls,
/// console clients), above the highest descriptor open when it jails.
const SPARE_FILES: u64 = 256;
/// How far beyond its largest open file the VMM may write (its logs grow).
const FILE_SIZE_SLACK: u64 = 1 << 30;
/// How long to wait for threads that ended (a tap opened in a network
/// namespace uses one) to be gone before the jail is entered.
const THREADS_GONE: Duration = Duration::from_secs(2);

/// Errors of entering the jail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--jail {0}: expected UID or UID:GID, numbers other than 0")]
    Ids(String),
    #[error(
        "cannot {step} for the jail: {source} (the jail needs root: run as root or drop --jail)"
    )]
    Step { step: &'static str, source: Errno },
    #[error("cannot {step} for the jail: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
    #[error(
        "the VMM has {0} threads where the jail must start with one: a thread started before \
         the jail keeps the host's filesystem (a bug: start it after sandbox::lock_down)"
    )]
    Threads(usize),
    #[error("the jail's keeper process is gone; the VMM stops")]
    KeeperGone,
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),
}

fn step(step: &'static str) -> impl FnOnce(Errno) -> Error {
    move |source| Error::Step { step, source }
}

/// The unprivileged identity the VMM runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for Ids {
    type Err = Error;
    /// `UID` (the gid is the same number) or `UID:GID`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Ids(s.to_string());
        let (uid, gid) = s.split_once(':').unwrap_or((s, s));
        let uid: u32 = uid.parse().map_err(|_| bad())?;
        let gid: u32 = gid.parse().map_err(|_| bad())?;
        // 0 is root; u32::MAX is "no change" to setresuid.
        if uid == 0 || gid == 0 || uid == u32::MAX || gid == u32::MAX {
            return Err(bad());
        }
        Ok(Self { uid, gid })
    }
}

impl std::fmt::Display for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// The jail this process enters at [`lock_down`], and the pipe whose
/// other end the keeper holds (read end: EOF once the keeper is gone).
#[derive(Debug)]
struct Planned {
    ids: Ids,
    keeper: Option<OwnedFd>,
}

static PLANNED: OnceLock<Mutex<Planned>> = OnceLock::new();

/// Signals the keeper forwards to the VMM.
const FORWARDED: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// Splits this process into keeper and VMM (see the module's comment).
/// Returns in the VMM, pid 1 of a new PID namespace; the keeper never
/// returns. Call it first thing, while the process has one thread, with
/// the forwarded signals blocked.
pub fn enter_pid_namespace(ids: Ids) -> Result<(), Error> {
    check_single_threaded()?;
    let chld: SigSet = [Signal::SIGCHLD].into_iter().collect();
    // Blocked before the fork so the VMM's end cannot be missed.
    chld.thread_block().map_err(step("block SIGCHLD"))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(step("make a PID namespace"))?;
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(step("make a pipe"))?;
    // SAFETY: the process has one thread (checked above), so the child
    // cannot inherit a lock another thread held.
    match unsafe { nix::unistd::fork() }.map_err(step("fork the VMM"))? {
        ForkResult::Parent { child } => {
            drop(alive_r);
            keep(child, alive_w)
        }
        ForkResult::Child => {
            drop(alive_w);
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(step("set pdeathsig"))?;
            chld.thread_unblock().map_err(step("unblock SIGCHLD"))?;
            let _ = PLANNED.set(Mutex::new(Planned {
                ids,
                keeper: Some(alive_r),
            }));
            Ok(())
        }
    }
}

/// Plans the jail without a PID namespace of its own (for tests of the
/// jail itself, which must not fork the test runner).
pub fn plan(ids: Ids) {
    let _ = PLANNED.set(Mutex::new(Planned { ids, keeper: None }));
}

/// The keeper: forwards signals to the VMM until it ends, then ends the
/// same way.
fn keep(child: Pid, _alive: OwnedFd) -> ! {
    if let Err(e) = seccomp::enter_keeper(child.as_raw()) {
        eprintln!("gureum: {e}");
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
    }
    let mut waited: SigSet = FORWARDED.into_iter().collect();
    waited.add(Signal::SIGCHLD);
    loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {
                match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
                    Ok(WaitStatus::Signaled(_, signal, _)) => die_by(signal),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("gureum: cannot wait for the jailed VMM: {e}");
                        std::process::exit(1);
                    }
                }
            }
            Ok(signal) => {
                let _ = nix::sys::signal::kill(child, signal);
            }
            Err(_) => {}
        }
    }
}

/// Ends this process by `signal`, as the VMM ended, without a core dump.
fn die_by(signal: Signal) -> ! {
    let _ = nix::sys::prctl::set_dumpable(false);
    // SAFETY: restores the default action; no handler is involved.
    let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
    let one: SigSet = [signal].into_iter().collect();
    let _ = one.thread_unblock();
    let _ = nix::sys::signal::raise(signal);
    // Signals whose default is to carry on (none the VMM dies of).
    std::process::exit(128 + signal as i32)
}

/// Threads of this process, from /proc.
fn thread_count() -> Result<usize, Error> {
    std::fs::read_dir("/proc/self/task")
        .map(Iterator::count)
        .map_err(|source| Error::Io {
            step: "count the VMM's threads",
            source,
        })
}

/// Waits (briefly) until the process has one thread: a joined thread
/// may still be listed while it finishes exiting.
fn check_single_threaded() -> Result<(), Error> {
    let start = Instant::now();
    loop {
        let n = thread_count()?;
        if n == 1 {
            return Ok(());
        }
        if start.elapsed() > THREADS_GONE {
            return Err(Error::Threads(n));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The rlimits the jailed VMM gets: measured from what it has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    files: u64,
    file_size: u64,
}

fn measure_limits() -> Result<Limits, Error> {
    let io = |source| Error::Io {
        step: "list the VMM's open files",
        source,
    };
    let mut highest_fd = 0u64;
    let mut largest = 0u64;
    for entry in std::fs::read_dir("/proc/self/fd").map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        highest_fd = highest_fd.max(fd);
        // The directory's own descriptor is gone by now: skipped.
        if let Ok(meta) = std::fs::metadata(entry.path()) {
            if meta.is_file() {
                largest = largest.max(meta.len());
            }
        }
    }
    Ok(Limits {
        files: highest_fd + 1 + SPARE_FILES,
        file_size: largest.saturating_add(FILE_SIZE_SLACK),
    })
}

/// Enters the planned jail, if one is planned: call once every file is
/// open and before the first thread starts.
pub fn lock_down() -> Result<(), Error> {
    let Some(planned) = PLANNED.get() else {
        return Ok(());
    };
    let mut planned = planned.lock().unwrap_or_else(PoisonError::into_inner);
    check_single_threaded()?;
    let limits = measure_limits()?;
    enter_empty_root()?;
    drop_privileges(planned.ids)?;
    set_limits(limits)?;
    nix::sys::prctl::set_no_new_privs().map_err(step("set no_new_privs"))?;
    // A change of credentials cleared the parent-death signal.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(step("set pdeathsig"))?;
    if let Some(alive) = planned.keeper.take() {
        if keeper_gone(&alive) {
            return Err(Error::KeeperGone);
        }
    }
    Ok(())
}

/// Whether the keeper's end of the pipe is closed (it died before the
/// parent-death signal was set again).
fn keeper_gone(alive: &OwnedFd) -> bool {
    let mut fds = [nix::poll::PollFd::new(
        alive.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    matches!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
        Ok(1)
    )
}

/// A new mount namespace whose root is an empty read-only tmpfs.
fn enter_empty_root() -> Result<(), Error> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC)
        .map_err(step("make a mount namespace"))?;
    // Nothing done here may reach the host's mounts.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("make the mounts private"))?;
    nix::mount::mount(
        Some("tmpfs"),
        ROOT_MOUNT_POINT,
        Some("tmpfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4k,nr_inodes=8,mode=0555"),
    )
    .map_err(step("mount the empty root"))?;
    nix::unistd::chdir(ROOT_MOUNT_POINT).map_err(step("enter the empty root"))?;
    match nix::unistd::pivot_root(".", ".") {
        // The old root now lies under the new one: detach it.
        Ok(()) => nix::mount::umount2(".", MntFlags::MNT_DETACH)
            .map_err(step("detach the host's filesystem"))?,
        // The root is the initial ramfs (a host running from its
        // initramfs), which cannot be pivoted away: move the new root
        // over it and chroot, as switch_root does. Without capabilities
        // and with chroot outside every seccomp filter, the old root
        // stays out of reach.
        Err(Errno::EINVAL) => {
            nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .map_err(step("move the empty root over /"))?;
            nix::unistd::chroot(".").map_err(step("chroot into the empty root"))?;
        }
        Err(e) => return Err(step("pivot into the empty root")(e)),
    }
    nix::unistd::chdir("/").map_err(step("enter the empty root"))
}

/// Becomes `ids`, with no supplementary groups and no capabilities left
/// in any set.
fn drop_privileges(ids: Ids) -> Result<(), Error> {
    nix::unistd::setgroups(&[]).map_err(step("drop supplementary groups"))?;
    let gid = Gid::from_raw(ids.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(step("change the group"))?;
    // The bounding set: no exec could regain a capability (none can
    // exec anyway). Dropped while CAP_SETPCAP is still held.
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number by value.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            // EINVAL: past the last capability this kernel knows.
            match Errno::last() {
                Errno::EINVAL => break,
                e => return Err(step("drop the capability bounding set")(e)),
            }
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(step("clear ambient capabilities")(Errno::last()));
    }
    // Leaving uid 0 clears the permitted and effective sets.
    let uid = Uid::from_raw(ids.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(step("change the user"))
}

fn set_limits(limits: Limits) -> Result<(), Error> {
    nix::sys::resource::setrlimit(Resource::RLIMIT_NOFILE, limits.files, limits.files)
        .map_err(step("limit open files"))?;
    nix::sys::resource::setrlimit(Resource::RLIMIT_FSIZE, limits.file_size, limits.file_size)
        .map_err(step("limit file sizes"))?;
    // Guest memory must never land in a core file.
    nix::sys::resource::setrlimit(Resource::RLIMIT_CORE, 0, 0)
        .map_err(step("disable core dumps"))?;
    // A write past the size limit fails (EFBIG) instead of killing the VM.
    // SAFETY: ignoring a signal installs no handler.
    unsafe { nix::sys::signal::signal(Signal::SIGXFSZ, nix::sys::signal::SigHandler::SigIgn) }
        .map(drop)
        .map_err(step("ignore SIGXFSZ"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn ids_parse() {
        assert_eq!(
            "1000".parse::<Ids>().unwrap(),
            Ids {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(
            "1000:2000".parse::<Ids>().unwrap(),
            Ids {
                uid: 1000,
                gid: 2000
            }
        );
        for bad in ["", "0", "0:5", "5:0", "x", "1:y", "4294967295"] {
            assert!(bad.parse::<Ids>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_cover_what_is_open() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(5 << 20).unwrap();
        let limits = measure_limits().unwrap();
        assert!(limits.files > SPARE_FILES + u64::try_from(file.as_raw_fd()).unwrap());
        assert!(limits.file_size >= (5 << 20) + FILE_SIZE_SLACK);
    }
}

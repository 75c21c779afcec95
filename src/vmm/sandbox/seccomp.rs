//! Seccomp filters, one per kind of VMM thread: each thread installs its
//! kind's filter before it does anything for the guest, and a syscall
//! outside it kills the whole process (SIGSYS). Built with seccompiler.
//!
//! A thread inherits the filters of the thread that created it, and the
//! kernel allows only what every filter on a thread allows. So a kind
//! whose threads create others lists what those need too. Device workers
//! are started by the spawner (see `virtio::worker`), not by the vCPU
//! that activates the device: the spawner's list holds every worker's
//! syscalls (each worker adds its own, tighter, filter), and a vCPU is
//! allowed neither to start threads nor what only workers do (io_uring).
//! The main thread installs its filter last, after it started the
//! others; vCPUs enter the guest only once it has (the gate below).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use kvm_bindings::{kvm_regs, kvm_sregs};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::vmm::devices::virtio::net::tap::TUNSETOFFLOAD;

const KVMIO: u32 = 0xAE;
vmm_sys_util::ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);

/// The environment variable of the test-only trigger: set to a thread
/// kind's name (`vcpu`, `spawner`, `worker`, `blk-worker`, `console`,
/// `console-out`, `metrics`, `main`), the first thread of
/// that kind makes a syscall outside its filter right after installing
/// it, which must kill the process with SIGSYS. For tests only: it can
/// do nothing but end the VMM.
pub const TEST_TRIP_ENV: &str = "GUREUM_TEST_SECCOMP_TRIP";

/// Errors of building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the seccomp filter of the {kind} threads: {source}")]
    Build {
        kind: &'static str,
        source: seccompiler::BackendError,
    },
    #[error("cannot install the seccomp filter of a {kind} thread: {source}")]
    Install {
        kind: &'static str,
        source: seccompiler::Error,
    },
    #[error("unknown --seccomp mode '{0}'; expected kill, log or off")]
    Mode(String),
    #[error(
        "{TEST_TRIP_ENV}={0} names no thread kind; expected vcpu, spawner, worker, blk-worker, console, console-out, metrics or main"
    )]
    Trip(String),
}

/// What a filter does with a syscall outside its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kill the process (SIGSYS): the default.
    Kill,
    /// Allow it and have the kernel log it (`audit: type=1326 ...
    /// syscall=N` in the kernel log, with the thread's name): for finding
    /// what a list misses after a change to the VMM.
    Log,
    /// No filters.
    Off,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "kill" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "off" => Ok(Mode::Off),
            other => Err(Error::Mode(other.to_string())),
        }
    }
}

/// The kinds of threads of a VMM process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread (it waits for the VM's end) and the signal thread.
    Main,
    /// A vCPU: runs the guest and its port and MMIO exits.
    Vcpu,
    /// The spawner: starts the device workers vCPUs ask for.
    Spawner,
    /// A virtio device's worker: moves its queues' data.
    Worker,
    /// A virtio-blk queue's worker: a worker that also drives an
    /// io_uring.
    BlockWorker,
    /// The console's: the socket's listener and clients, the terminal's
    /// input.
    Console,
    /// The console's output queue: writes guest output to the terminal,
    /// the log (which it rotates) and the attached client.
    ConsoleOut,
    /// The metrics writer: replaces the metrics file now and then.
    Metrics,
    /// The jail's keeper: the process outside the VMM's PID namespace
    /// that forwards signals to it and mirrors its end.
    Keeper,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 9] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::Spawner,
        ThreadKind::Worker,
        ThreadKind::BlockWorker,
        ThreadKind::Console,
        ThreadKind::ConsoleOut,
        ThreadKind::Metrics,
        ThreadKind::Keeper,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Spawner => "spawner",
            ThreadKind::Worker => "worker",
            ThreadKind::BlockWorker => "blk-worker",
            ThreadKind::Console => "console",
            ThreadKind::ConsoleOut => "console-out",
            ThreadKind::Metrics => "metrics",
            ThreadKind::Keeper => "keeper",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ThreadKind::Main => "the main thread and the signal thread",
            ThreadKind::Vcpu => "vCPU threads (they activate and reset devices)",
            ThreadKind::Spawner => "the device workers' spawner (the workers inherit this filter)",
            ThreadKind::Worker => "virtio device workers",
            ThreadKind::BlockWorker => "virtio-blk queue workers, with their io_uring",
            ThreadKind::Console => "console socket, its clients, terminal input, input queue",
            ThreadKind::ConsoleOut => "console output queue: terminal, log, client",
            ThreadKind::Metrics => "the metrics file's writer (--metrics)",
            ThreadKind::Keeper => "the jail's keeper process (--jail)",
        }
    }
}

/// A syscall a filter allows, with the values one argument may take if
/// not any.
#[derive(Debug, Clone)]
struct Allowed {
    name: &'static str,
    nr: i64,
    only: Option<Only>,
}

#[derive(Debug, Clone)]
struct Only {
    arg: u8,
    values: Vec<(u64, String)>,
}

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        [$((stringify!($name), libc::$name)),*]
    };
}

fn any<'a>(list: &'a [(&'static str, i64)]) -> impl Iterator<Item = Allowed> + 'a {
    list.iter().map(|&(name, nr)| Allowed {
        name: name.trim_start_matches("SYS_"),
        nr,
        only: None,
    })
}

fn only(name: &'static str, nr: i64, arg: u8, values: &[(u64, &str)]) -> Allowed {
    Allowed {
        name,
        nr,
        only: Some(Only {
            arg,
            values: values.iter().map(|&(v, n)| (v, n.to_string())).collect(),
        }),
    }
}

/// What every Rust thread does: allocate, lock, block signals, print an
/// error, end.
fn runtime() -> Vec<Allowed> {
    let mut list: Vec<Allowed> = any(&syscalls![
        SYS_brk,
        SYS_mmap,
        SYS_munmap,
        SYS_mremap,
        SYS_mprotect,
        SYS_madvise,
        SYS_futex,
        SYS_sched_yield,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_sigaltstack,
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_nanosleep,
        SYS_restart_syscall,
        SYS_close,
        SYS_write,
        SYS_getpid,
        SYS_gettid,
        SYS_exit,
        SYS_exit_group,
    ])
    .collect();
    // Debug builds check that a descriptor is open before closing it.
    list.push(fcntl(&[(libc::F_GETFD, "F_GETFD")]));
    // abort() (a panic in a release build) raises SIGABRT at itself.
    list.push(only(
        "tgkill",
        libc::SYS_tgkill,
        2,
        &[(u64::from(libc::SIGABRT.unsigned_abs()), "SIGABRT")],
    ));
    list
}

fn fcntl(commands: &[(libc::c_int, &str)]) -> Allowed {
    let values: Vec<(u64, &str)> = commands
        .iter()
        .map(|&(c, n)| (u64::from(c.unsigned_abs()), n))
        .collect();
    only("fcntl", libc::SYS_fcntl, 1, &values)
}

/// Starting a thread (glibc's pthread_create and the new thread's own
/// setup, which runs under its creator's filter: Rust's stack guard
/// asks for the thread's attributes, which include its CPU affinity).
fn spawn() -> Vec<Allowed> {
    let mut list: Vec<Allowed> = any(&syscalls![
        SYS_clone3,
        SYS_clone,
        SYS_set_robust_list,
        SYS_rseq,
        SYS_sched_getaffinity
    ])
    .collect();
    list.push(only(
        "prctl",
        libc::SYS_prctl,
        0,
        &[(u64::from(libc::PR_SET_NAME.unsigned_abs()), "PR_SET_NAME")],
    ));
    list
}

/// A device worker: wait on its eventfds and tap, move data between
/// guest memory and its disk or tap, flush.
fn worker() -> Vec<Allowed> {
    any(&syscalls![
        SYS_epoll_wait,
        SYS_epoll_pwait,
        // A virtio-net worker stops watching its tap while the guest
        // gives no receive buffers.
        SYS_epoll_ctl,
        SYS_read,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_preadv2,
        SYS_pwritev2,
        SYS_fsync,
        SYS_fdatasync,
        // Discard and write-zeroes punch or zero ranges of the image.
        SYS_fallocate,
        SYS_flock,
        // Rate limits wait on a timer.
        SYS_timerfd_create,
        SYS_timerfd_settime,
        SYS_timerfd_gettime,
    ])
    .collect()
}

/// A virtio-blk worker's io_uring: made (and restricted to reads and
/// writes) on the worker's thread, then entered to submit and reap. Only
/// that worker and the spawner, whose filter it inherits, allow them.
fn io_uring() -> Vec<Allowed> {
    any(&syscalls![
        SYS_io_uring_setup,
        SYS_io_uring_register,
        SYS_io_uring_enter
    ])
    .collect()
}

/// Creating and renaming files in a directory held open since before the
/// jail (see `vmm::named_file`): the console log's rotation and the
/// metrics file's replacement. Inside the jail no path leads elsewhere.
fn files_in_dir() -> Vec<Allowed> {
    any(&syscalls![SYS_openat, SYS_renameat, SYS_renameat2]).collect()
}

/// The syscalls `kind`'s filter allows (the keeper's kill is allowed
/// only at `child`).
fn allowed(kind: ThreadKind, child: Option<i32>) -> Vec<Allowed> {
    let mut list = runtime();
    match kind {
        ThreadKind::Main => {
            list.extend(any(&syscalls![
                SYS_rt_sigtimedwait,
                SYS_unlink,
                SYS_unlinkat
            ]));
            // Kicking vCPUs out of KVM_RUN as the VM stops.
            list.push(only(
                "tgkill",
                libc::SYS_tgkill,
                2,
                &[(
                    u64::from(crate::vmm::cpu::kick_signal().unsigned_abs()),
                    "SIGRTMIN",
                )],
            ));
            // Restoring the terminal's mode when the VM ends.
            list.push(only(
                "ioctl",
                libc::SYS_ioctl,
                1,
                &[(libc::TCGETS, "TCGETS"), (libc::TCSETS, "TCSETS")],
            ));
        }
        ThreadKind::Vcpu => {
            list.push(only(
                "ioctl",
                libc::SYS_ioctl,
                1,
                &[
                    (KVM_RUN(), "KVM_RUN"),
                    (KVM_GET_REGS(), "KVM_GET_REGS"),
                    (KVM_GET_SREGS(), "KVM_GET_SREGS"),
                ],
            ));
            // Activating a virtio-net device: the tap's offloads follow
            // what the driver accepted.
            list.push(only(
                "ioctl",
                libc::SYS_ioctl,
                1,
                &[(TUNSETOFFLOAD, "TUNSETOFFLOAD")],
            ));
            // Activating a device: its queue eventfds and its worker's
            // epoll (the spawner starts the worker's thread).
            list.extend(any(&syscalls![
                SYS_eventfd2,
                SYS_epoll_create1,
                SYS_epoll_ctl,
                SYS_dup,
            ]));
            // What the guest prints goes to the console's client (a
            // UnixStream writes with send).
            list.extend(any(&syscalls![SYS_sendto]));
            list.push(fcntl(&[(libc::F_DUPFD_CLOEXEC, "F_DUPFD_CLOEXEC")]));
            // A device's rate limit: its timer is made on activation.
            list.extend(any(&syscalls![SYS_timerfd_create]));
        }
        ThreadKind::Spawner => {
            list.extend(spawn());
            // Each worker starts under this filter, then installs its
            // own: this list holds every worker's.
            list.extend(worker());
            list.extend(io_uring());
            list.push(only(
                "prctl",
                libc::SYS_prctl,
                0,
                &[(
                    u64::from(libc::PR_SET_NO_NEW_PRIVS.unsigned_abs()),
                    "PR_SET_NO_NEW_PRIVS",
                )],
            ));
            list.push(only(
                "seccomp",
                libc::SYS_seccomp,
                0,
                &[(
                    u64::from(libc::SECCOMP_SET_MODE_FILTER),
                    "SECCOMP_SET_MODE_FILTER",
                )],
            ));
        }
        ThreadKind::Worker => list.extend(worker()),
        ThreadKind::BlockWorker => {
            list.extend(worker());
            list.extend(io_uring());
        }
        ThreadKind::Console => {
            list.extend(any(&syscalls![
                SYS_accept4,
                SYS_accept,
                SYS_read,
                SYS_recvfrom,
                SYS_shutdown,
                SYS_dup,
            ]));
            list.push(fcntl(&[(libc::F_DUPFD_CLOEXEC, "F_DUPFD_CLOEXEC")]));
            // A new client's write timeout (a stalled one is dropped).
            list.push(only(
                "setsockopt",
                libc::SYS_setsockopt,
                2,
                &[(u64::from(libc::SO_SNDTIMEO.unsigned_abs()), "SO_SNDTIMEO")],
            ));
            list.extend(spawn());
        }
        ThreadKind::ConsoleOut => {
            // A stalled or gone client is shut down.
            list.extend(any(&syscalls![SYS_sendto, SYS_shutdown]));
            list.extend(files_in_dir());
        }
        ThreadKind::Metrics => {
            list.extend(files_in_dir());
            // The VMM's memory figures: /proc/self/statm and the guest's
            // resident pages.
            list.extend(any(&syscalls![SYS_pread64, SYS_mincore]));
        }
        ThreadKind::Keeper => {
            list.extend(any(&syscalls![
                SYS_rt_sigtimedwait,
                SYS_wait4,
                SYS_rt_sigaction,
            ]));
            list.push(only(
                "prctl",
                libc::SYS_prctl,
                0,
                &[(
                    u64::from(libc::PR_SET_DUMPABLE.unsigned_abs()),
                    "PR_SET_DUMPABLE",
                )],
            ));
            // Mirroring the VMM's death by a signal: raise it at itself.
            list.retain(|a| a.name != "tgkill");
            list.extend(any(&syscalls![SYS_tgkill]));
            if let Some(pid) = child {
                let pid = u64::from(pid.unsigned_abs());
                list.push(only("kill", libc::SYS_kill, 0, &[(pid, "the VMM")]));
            }
        }
    }
    // One entry per syscall: a later entry with no condition wins.
    let mut merged: BTreeMap<i64, Allowed> = BTreeMap::new();
    for a in list {
        match merged.get_mut(&a.nr) {
            Some(old) => match (&mut old.only, a.only) {
                (Some(o), Some(n)) if o.arg == n.arg => {
                    for v in n.values {
                        if !o.values.iter().any(|(x, _)| *x == v.0) {
                            o.values.push(v);
                        }
                    }
                }
                (_, _) => old.only = None,
            },
            None => {
                merged.insert(a.nr, a);
            }
        }
    }
    merged.into_values().collect()
}

/// Compiles `kind`'s filter.
fn compile(kind: ThreadKind, mode: Mode, child: Option<i32>) -> Result<BpfProgram, Error> {
    let build = |source| Error::Build {
        kind: kind.name(),
        source,
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for a in allowed(kind, child) {
        let chain = match &a.only {
            None => Vec::new(),
            Some(only) => only
                .values
                .iter()
                .map(|&(value, _)| {
                    let condition = SeccompCondition::new(
                        only.arg,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Eq,
                        value,
                    )?;
                    SeccompRule::new(vec![condition])
                })
                .collect::<Result<_, _>>()
                .map_err(build)?,
        };
        rules.insert(a.nr, chain);
    }
    let mismatch = match mode {
        Mode::Log => SeccompAction::Log,
        Mode::Kill | Mode::Off => SeccompAction::KillProcess,
    };
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(build)?;
    BpfProgram::try_from(filter).map_err(build)
}

/// The filters as text, for `gureum boot --print-seccomp`.
pub fn describe(mode: Mode) -> Result<String, Error> {
    let mut out = String::new();
    let action = match mode {
        Mode::Kill | Mode::Off => "kill the process (SIGSYS)",
        Mode::Log => "log it to the kernel log and allow it",
    };
    let _ = writeln!(out, "Any other syscall: {action}.");
    for kind in ThreadKind::ALL {
        let bpf = compile(kind, mode, Some(0))?;
        let mut list = allowed(kind, None);
        list.sort_by_key(|a| a.name);
        let _ = writeln!(
            out,
            "\n{} ({}): {} syscalls, {} BPF instructions",
            kind.name(),
            kind.describe(),
            list.len() + usize::from(kind == ThreadKind::Keeper),
            bpf.len()
        );
        for a in &list {
            match &a.only {
                None => {
                    let _ = writeln!(out, "  {}", a.name);
                }
                Some(only) => {
                    let values: Vec<&str> = only.values.iter().map(|(_, n)| n.as_str()).collect();
                    let _ = writeln!(
                        out,
                        "  {} (argument {} one of: {})",
                        a.name,
                        only.arg,
                        values.join(", ")
                    );
                }
            }
        }
        if kind == ThreadKind::Keeper {
            let _ = writeln!(out, "  kill (argument 0: the VMM's pid only)");
        }
    }
    Ok(out)
}

/// The process's filters, compiled once by [`configure`].
#[derive(Debug)]
struct Plan {
    mode: Mode,
    filters: Vec<(ThreadKind, BpfProgram)>,
    trip: Option<ThreadKind>,
}

static PLAN: OnceLock<Plan> = OnceLock::new();
static TRIPPED: AtomicBool = AtomicBool::new(false);
/// Opened once the main thread's filter is on: vCPUs wait for it.
static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

fn parse_trip(value: &str) -> Result<ThreadKind, Error> {
    ThreadKind::ALL
        .into_iter()
        .filter(|k| *k != ThreadKind::Keeper)
        .find(|k| k.name() == value)
        .ok_or_else(|| Error::Trip(value.to_string()))
}

/// Compiles this process's filters; from then on [`enter`] installs
/// them. Without it (the library used by tests), threads run unfiltered.
pub fn configure(mode: Mode) -> Result<(), Error> {
    bound_malloc_arenas();
    let trip = match std::env::var(TEST_TRIP_ENV) {
        Ok(value) if !value.is_empty() => Some(parse_trip(&value)?),
        _ => None,
    };
    let mut filters = Vec::new();
    if mode != Mode::Off {
        for kind in ThreadKind::ALL {
            if kind != ThreadKind::Keeper {
                filters.push((kind, compile(kind, mode, None)?));
            }
        }
    }
    // A second call keeps the first plan: the filters of a process do
    // not change.
    let _ = PLAN.set(Plan {
        mode,
        filters,
        trip,
    });
    Ok(())
}

/// Fixes glibc's limit on malloc arenas now: left unset, the thread that
/// first needs a ninth arena asks how many CPUs are online by opening a
/// file in /sys, which no filter allows (and the jail would not show).
fn bound_malloc_arenas() {
    // glibc's own default: eight arenas per CPU.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let arenas = libc::c_int::try_from(cpus.saturating_mul(8)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt sets a malloc parameter; it touches no memory of
    // ours. A refusal leaves glibc's default, no worse than before.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
}

fn install(kind: ThreadKind, bpf: &BpfProgram) {
    if let Err(source) = seccompiler::apply_filter(bpf) {
        // Fail closed: a thread without its filter must not run.
        eprintln!(
            "gureum: {}",
            Error::Install {
                kind: kind.name(),
                source
            }
        );
        std::process::exit(1);
    }
}

/// The test-only trigger: a syscall no filter allows.
fn trip(kind: ThreadKind, plan: &Plan) {
    if plan.trip == Some(kind) && !TRIPPED.swap(true, Ordering::SeqCst) {
        eprintln!(
            "gureum: {TEST_TRIP_ENV}={}: making a syscall outside the filter",
            kind.name()
        );
        // SAFETY: getppid takes no arguments and touches no memory.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
}

/// Installs `kind`'s filter on the calling thread. A vCPU then waits
/// until the main thread has its own (the guest runs only once every
/// filter is on); the main thread opens that gate. Exits the process if
/// the kernel refuses the filter.
pub fn enter(kind: ThreadKind) {
    let Some(plan) = PLAN.get() else { return };
    if plan.mode == Mode::Off {
        return;
    }
    if let Some((_, bpf)) = plan.filters.iter().find(|(k, _)| *k == kind) {
        install(kind, bpf);
    }
    trip(kind, plan);
    let (open, opened) = &GATE;
    let mut is_open = open.lock().unwrap_or_else(PoisonError::into_inner);
    match kind {
        ThreadKind::Main => {
            *is_open = true;
            opened.notify_all();
        }
        ThreadKind::Vcpu => {
            while !*is_open {
                is_open = opened.wait(is_open).unwrap_or_else(PoisonError::into_inner);
            }
        }
        _ => {}
    }
}

/// Installs the keeper's filter, which may signal only `child`.
pub fn enter_keeper(child: i32) -> Result<(), Error> {
    let Some(plan) = PLAN.get() else {
        return Ok(());
    };
    if plan.mode == Mode::Off {
        return Ok(());
    }
    let bpf = compile(ThreadKind::Keeper, plan.mode, Some(child))?;
    install(ThreadKind::Keeper, &bpf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles_and_prints() {
        let text = describe(Mode::Kill).unwrap();
        for kind in ThreadKind::ALL {
            assert!(text.contains(&format!("\n{} (", kind.name())), "{text}");
        }
        assert!(text.contains("KVM_RUN"), "{text}");
        assert!(text.contains("kill the process (SIGSYS)"), "{text}");
    }

    fn numbers(kind: ThreadKind) -> Vec<i64> {
        allowed(kind, None).iter().map(|a| a.nr).collect()
    }

    const IO_URING: [i64; 3] = [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_register,
        libc::SYS_io_uring_enter,
    ];

    #[test]
    fn the_spawner_list_holds_the_workers_it_starts_and_only_they_drive_io_uring() {
        let spawner = numbers(ThreadKind::Spawner);
        for kind in [ThreadKind::Worker, ThreadKind::BlockWorker] {
            for a in allowed(kind, None) {
                assert!(spawner.contains(&a.nr), "{} missing for {kind:?}", a.name);
            }
        }
        for kind in ThreadKind::ALL {
            let drives = matches!(kind, ThreadKind::Spawner | ThreadKind::BlockWorker);
            for nr in IO_URING {
                assert_eq!(numbers(kind).contains(&nr), drives, "{kind:?}: {nr}");
            }
        }
        // A vCPU starts no thread and installs no filter but its own.
        let vcpu = numbers(ThreadKind::Vcpu);
        for nr in [
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_seccomp,
            libc::SYS_prctl,
        ] {
            assert!(!vcpu.contains(&nr), "vcpu allows {nr}");
        }
        // The vCPU's ioctls are KVM's three and the tap's offloads only.
        let ioctl = allowed(ThreadKind::Vcpu, None)
            .into_iter()
            .find(|a| a.name == "ioctl")
            .unwrap();
        let names: Vec<String> = ioctl
            .only
            .unwrap()
            .values
            .into_iter()
            .map(|v| v.1)
            .collect();
        assert_eq!(
            names,
            ["KVM_RUN", "KVM_GET_REGS", "KVM_GET_SREGS", "TUNSETOFFLOAD"]
        );
        // No thread may open files, make sockets or change privileges;
        // the console output and metrics threads may create files only
        // relative to a directory (openat; open is refused).
        for kind in ThreadKind::ALL {
            let relative = matches!(kind, ThreadKind::ConsoleOut | ThreadKind::Metrics);
            assert_eq!(
                allowed(kind, Some(1))
                    .iter()
                    .any(|a| a.nr == libc::SYS_openat),
                relative,
                "{}",
                kind.name()
            );
            for forbidden in [
                libc::SYS_open,
                libc::SYS_socket,
                libc::SYS_execve,
                libc::SYS_setuid,
                libc::SYS_mount,
                libc::SYS_ptrace,
                libc::SYS_getppid,
            ] {
                assert!(
                    allowed(kind, Some(1)).iter().all(|a| a.nr != forbidden),
                    "{} allows {forbidden}",
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn modes_and_trips_parse() {
        assert_eq!("kill".parse::<Mode>().unwrap(), Mode::Kill);
        assert_eq!("log".parse::<Mode>().unwrap(), Mode::Log);
        assert!("loud".parse::<Mode>().is_err());
        assert_eq!(parse_trip("vcpu").unwrap(), ThreadKind::Vcpu);
        assert!(parse_trip("keeper").is_err());
    }

    /// Runs `f` in a child process under the filters of `kinds`, stacked
    /// in that order as a thread inherits them (the filters would end
    /// this test runner). Returns how the child ended: exit 0 once `f`
    /// returned, exit 2 if a filter could not be installed.
    fn in_child(kinds: &[ThreadKind], f: impl FnOnce()) -> nix::sys::wait::WaitStatus {
        // SAFETY: the child only installs filters and runs `f` before
        // _exit; no lock is held across fork in these tests.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                for &kind in kinds {
                    let bpf = compile(kind, Mode::Kill, None).unwrap();
                    if seccompiler::apply_filter(&bpf).is_err() {
                        // SAFETY: ends the child at once.
                        unsafe { libc::_exit(2) };
                    }
                }
                f();
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap()
            }
        }
    }

    fn killed_by_sigsys(status: nix::sys::wait::WaitStatus) -> bool {
        matches!(
            status,
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)
        )
    }

    #[test]
    fn a_syscall_outside_the_filter_kills_the_process_with_sigsys() {
        let status = in_child(&[ThreadKind::Worker], || {
            // SAFETY: getppid takes no arguments.
            unsafe { libc::syscall(libc::SYS_getppid) };
        });
        assert!(killed_by_sigsys(status), "{status:?}");
    }

    #[test]
    fn a_blk_worker_started_by_the_spawner_drives_its_ring_and_a_vcpu_may_not() {
        use crate::vmm::devices::virtio::chain::{Buffers, Segment};
        use crate::vmm::devices::virtio::uring::tests::PipeGuard;
        use crate::vmm::devices::virtio::uring::{Direction, Ring, Transfer};
        use std::os::fd::AsRawFd;
        use vm_memory::GuestAddress;

        // A read of 512 bytes of /dev/zero through a ring, as a blk
        // worker does: made, restricted, submitted, reaped; then a read
        // of a pipe that waits, cancelled as a reset cancels it.
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let (waits, feed) = nix::unistd::pipe().unwrap();
        let mem = crate::vmm::memory::create(16).unwrap();
        let completions = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let read = || {
            let mut buffers = Buffers::default();
            buffers.push(Segment {
                addr: GuestAddress(0x1000),
                len: 512,
            });
            let transfer = || Transfer::new(&mem, &buffers, 0, Direction::Read).unwrap();
            let mut ring = Ring::new(mem.clone(), 1, completions.as_raw_fd()).unwrap();
            ring.push(zero.as_raw_fd(), (), transfer()).unwrap();
            ring.submit(true).unwrap();
            let done = ring.next_completed().unwrap();
            assert_eq!(done.result.unwrap(), 512);
            ring.push(waits.as_raw_fd(), (), transfer()).unwrap();
            ring.cancel().unwrap();
            ring.submit(true).unwrap();
            let cancelled = ring.next_completed().unwrap().result.unwrap_err();
            assert_eq!(cancelled.raw_os_error(), Some(libc::ECANCELED));
        };
        // A cancel that failed is freed, so that the child fails rather
        // than hangs.
        let guard = PipeGuard::new(feed.into());
        // Where the ring is made and driven: under the spawner's filter
        // and the blk worker's own.
        let status = in_child(&[ThreadKind::Spawner, ThreadKind::BlockWorker], || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).is_err() {
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(3) };
            }
        });
        guard.off();
        assert!(
            matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
            "{status:?}"
        );
        // A vCPU may not make one.
        let status = in_child(&[ThreadKind::Vcpu], || {
            // SAFETY: a null params pointer: the kernel refuses it
            // (EFAULT) if the filter lets the call through at all.
            unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, std::ptr::null_mut::<u8>()) };
        });
        assert!(killed_by_sigsys(status), "{status:?}");
    }
}

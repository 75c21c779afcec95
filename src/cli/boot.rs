//! `gureum boot`: one VM, its serial console on the terminal or on a
//! socket.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use gureum::host::mac::MacAddr;
use gureum::vmm::boot::{BootSource, smbios};
use gureum::vmm::console::SocketConsole;
use gureum::vmm::devices::virtio::net::NetLimits;
use gureum::vmm::devices::virtio::rate_limit::RateLimit;
use gureum::vmm::exit::{Status, VmExit};
use gureum::vmm::memory::HugePages;
use gureum::vmm::metrics::{MetricsFile, MetricsWriter};
use gureum::vmm::sandbox::cgroup;
use gureum::vmm::sandbox::jail::{self, Ids};
use gureum::vmm::sandbox::seccomp::{self, Mode as SeccompMode, ThreadKind};
use gureum::vmm::{self, DiskConfig, NetConfig, RunningVm, VmConfig};

use gureum::cloud::manifest::DEFAULT_CMDLINE;

use super::console::Console;

/// Boot a Linux kernel in a micro-VM.
#[derive(Debug, Args)]
#[command(after_help = format!(
    "SIGTERM presses the guest's ACPI power button: a guest that handles it shuts down \
     and powers off; a second SIGTERM stops the VM at once, as SIGINT and SIGHUP do.\n\n\
     Exit status: {} when the guest powers off (by itself or after SIGTERM), {} \
     when it asks to reboot, {} when it crashes (triple fault, KVM internal \
     error), {} when stopped from the console with Ctrl-A x, {} \
     when stopped at once by SIGINT, SIGHUP or a second SIGTERM, {} on a VMM \
     error, {} on bad usage; killed by SIGSYS when a thread makes a syscall outside its \
     seccomp filter.",
    Status::PowerOff.code(),
    Status::Reboot.code(),
    Status::Crash.code(),
    Status::Detached.code(),
    Status::Terminated.code(),
    Status::VmmError.code(),
    Status::Usage.code(),
))]
pub struct BootArgs {
    /// Kernel image: a bzImage (vmlinuz) or an uncompressed ELF vmlinux.
    #[arg(long, required_unless_present = "print_seccomp")]
    kernel: Option<PathBuf>,
    /// Initial ramdisk (initramfs) to hand to the kernel.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = DEFAULT_CMDLINE)]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u16,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u64,
    /// A raw disk image or block device as virtio-blk (vda, vdb, ... in
    /// order); `,ro` attaches it read-only; `,bw=BYTES` and `,iops=N`
    /// limit the guest's bytes and requests per second (BYTES takes a K,
    /// M or G suffix, powers of 1024). Repeatable.
    #[arg(
        long = "disk",
        value_name = "PATH[,ro][,bw=BYTES][,iops=N]",
        value_parser = parse_disk
    )]
    disks: Vec<DiskConfig>,
    /// A virtio-net interface on tap NAME (created if missing, for the
    /// VM's lifetime), with an optional MAC; with netns=NS, the existing
    /// tap NAME in network namespace NS (/run/netns/NS); rx_bw, rx_pps,
    /// tx_bw, tx_pps limit bytes and frames per second to (rx) and from
    /// (tx) the guest. Repeatable.
    #[arg(
        long = "net",
        value_name = "tap=NAME[,mac=MAC][,netns=NS][,rx_bw=BYTES][,rx_pps=N][,tx_bw=BYTES][,tx_pps=N]",
        value_parser = parse_net
    )]
    nets: Vec<NetConfig>,
    /// Write the VM's device counters (requests, bytes, errors, dropped
    /// frames, throttles) as JSON to this file every 5 s and on SIGUSR1.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Serve the serial console on this unix socket instead of the
    /// terminal (`gureum console` attaches to it).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Append all console output to this file.
    #[arg(long, requires = "console_socket")]
    console_log: Option<PathBuf>,
    /// Write one byte to this inherited file descriptor once the VM runs
    /// (how an instance's supervisor learns that its VMM started).
    #[arg(long, value_name = "FD", hide = true)]
    ready_fd: Option<u32>,
    /// What a thread's seccomp filter does with a syscall outside its
    /// list: kill the VMM (SIGSYS), log it to the kernel log and allow
    /// it (for finding what a list misses), or no filters at all.
    #[arg(long, value_name = "kill|log|off", default_value = "kill")]
    seccomp: SeccompMode,
    /// Print each thread kind's seccomp filter and exit.
    #[arg(long)]
    print_seccomp: bool,
    /// Run the VMM jailed (needs root): pid 1 of its own PID namespace,
    /// in its own mount namespace with an empty root once its files are
    /// open, as UID:GID (GID defaults to UID) with no capabilities, with
    /// limited open files and file sizes.
    #[arg(long, value_name = "UID[:GID]")]
    jail: Option<Ids>,
    /// Join this cgroup v2 directory first (its limits then hold the
    /// whole VMM).
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// The system UUID in the guest's SMBIOS tables
    /// (/sys/class/dmi/id/product_uuid); a random one beginning with
    /// "ec2", as EC2's do, if not given.
    #[arg(long, value_parser = smbios::Uuid::parse)]
    uuid: Option<smbios::Uuid>,
    /// The system's product name in the SMBIOS tables (an instance's
    /// type).
    #[arg(long, default_value = "gureum")]
    product_name: String,
    /// The baseboard's asset tag in the SMBIOS tables (an instance's ID).
    #[arg(long)]
    asset_tag: Option<String>,
    /// Offer the guest the host's SVM or VMX, so that it can run VMs of
    /// its own (the host's KVM must have its nested parameter on).
    /// Without it the guest sees neither.
    #[arg(long)]
    nested_virtualization: bool,
    /// Back guest RAM with transparent huge pages (2 MiB): faster boots
    /// and I/O; memory is then taken from the host in 2 MiB steps.
    #[arg(long, value_name = "on|off", default_value = "on")]
    huge_pages: HugePages,
}

/// A byte rate: digits with an optional K, M or G suffix (powers of 1024).
pub(super) fn parse_bytes(value: &str) -> Result<u64, String> {
    let (digits, unit) = match value.char_indices().last() {
        Some((at, 'K' | 'k')) => (value.get(..at), 1u64 << 10),
        Some((at, 'M' | 'm')) => (value.get(..at), 1 << 20),
        Some((at, 'G' | 'g')) => (value.get(..at), 1 << 30),
        _ => (Some(value), 1),
    };
    digits
        .and_then(|d| d.parse::<u64>().ok())
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{value:?} is not a rate: expected a number like 500, 64K or 100M"))
}

pub(super) fn parse_count(value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))
}

fn parse_disk(spec: &str) -> Result<DiskConfig, String> {
    // Options are taken from the end while they look like options, so
    // that a path may hold commas.
    let mut path = spec;
    let mut read_only = false;
    let mut limit = RateLimit::default();
    while let Some((rest, option)) = path.rsplit_once(',') {
        match option.split_once('=') {
            None if option == "ro" => read_only = true,
            None if option == "rw" => read_only = false,
            Some(("bw", v)) => limit.bytes_per_sec = parse_bytes(v)?,
            Some(("iops", v)) => limit.ops_per_sec = parse_count(v)?,
            _ => break,
        }
        path = rest;
    }
    if path.is_empty() {
        return Err("expected PATH[,ro][,bw=BYTES][,iops=N]".into());
    }
    Ok(DiskConfig {
        path: PathBuf::from(path),
        read_only,
        limit,
    })
}

/// A stable, locally administered MAC derived from the tap name.
fn default_mac(tap: &str) -> MacAddr {
    let hash = tap.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [a, b, c, d] = hash.to_be_bytes();
    MacAddr([0x02, 0x47, a, b, c, d])
}

fn parse_net(spec: &str) -> Result<NetConfig, String> {
    let mut tap = None;
    let mut mac = None;
    let mut netns = None;
    let mut limits = NetLimits::default();
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("tap", name)) => tap = Some(name.to_string()),
            Some(("mac", m)) => mac = Some(m.parse::<MacAddr>().map_err(|e| e.to_string())?),
            Some(("netns", ns)) if !ns.is_empty() => netns = Some(ns.to_string()),
            Some(("rx_bw", v)) => limits.rx.bytes_per_sec = parse_bytes(v)?,
            Some(("rx_pps", v)) => limits.rx.ops_per_sec = parse_count(v)?,
            Some(("tx_bw", v)) => limits.tx.bytes_per_sec = parse_bytes(v)?,
            Some(("tx_pps", v)) => limits.tx.ops_per_sec = parse_count(v)?,
            _ => {
                return Err(format!(
                    "unexpected {part:?}; expected tap=NAME[,mac=MAC][,netns=NS]\
                     [,rx_bw=BYTES][,rx_pps=N][,tx_bw=BYTES][,tx_pps=N]"
                ));
            }
        }
    }
    let tap = tap.ok_or("missing tap=NAME")?;
    let mac = mac.unwrap_or_else(|| default_mac(&tap));
    Ok(NetConfig {
        tap,
        mac,
        netns,
        limits,
    })
}

/// The first SIGTERM presses the guest's power button, as EC2's stop
/// does: whoever sends it (gureum's control plane, systemd, `kill`)
/// follows up with SIGKILL after a timeout if the guest never powers off.
/// A second SIGTERM, SIGINT (a person's Ctrl-C, who wants the VMM gone
/// now: in a terminal console Ctrl-C goes to the guest anyway) and
/// SIGHUP (the terminal is gone, nobody would bound the wait) stop the VM
/// at once. The signals are blocked in every thread (set before any is
/// spawned) and taken here with sigwait, so no handler runs inside a vCPU
/// thread.
fn handle_signals(
    vm: &RunningVm,
    signals: SigSet,
    metrics: Option<MetricsWriter>,
) -> std::io::Result<()> {
    let stopper = vm.stopper();
    let button = vm.power_button();
    vmm::thread("signals")
        .spawn(move || {
            seccomp::enter(ThreadKind::Main);
            let mut pressed = false;
            while let Ok(signal) = signals.wait() {
                if signal == Signal::SIGUSR1 {
                    if let Some(m) = &metrics {
                        m.write_now();
                    }
                } else if signal == Signal::SIGTERM && !pressed {
                    pressed = true;
                    eprintln!(
                        "gureum: SIGTERM: pressed the guest's power button; \
                         another SIGTERM stops the VM at once"
                    );
                    button.press();
                } else {
                    stopper.stop(VmExit::Terminated);
                    return;
                }
            }
        })
        .map(drop)
}

/// Boots the VM and waits for it to stop.
pub fn run(args: &BootArgs) -> ExitCode {
    if args.print_seccomp {
        return match seccomp::describe(args.seccomp) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gureum: {e}");
                ExitCode::from(Status::VmmError)
            }
        };
    }
    let Some(kernel) = args.kernel.clone() else {
        // clap requires --kernel without --print-seccomp.
        return ExitCode::from(2);
    };
    let uuid = match args.uuid.map_or_else(smbios::Uuid::ec2_random, Ok) {
        Ok(uuid) => uuid,
        Err(e) => {
            eprintln!("gureum: cannot make a system UUID (pass --uuid): {e}");
            return ExitCode::from(Status::VmmError);
        }
    };
    let config = VmConfig {
        boot: BootSource {
            kernel,
            initrd: args.initrd.clone(),
            cmdline: args.cmdline.clone(),
        },
        vcpus: args.vcpus,
        memory_mib: args.memory,
        huge_pages: args.huge_pages,
        disks: args.disks.clone(),
        nets: args.nets.clone(),
        platform: smbios::Platform {
            uuid,
            product: args.product_name.clone(),
            asset_tag: args.asset_tag.clone(),
        },
        nested_virtualization: args.nested_virtualization,
    };
    // Opened anew through /proc: the number names an inherited descriptor,
    // and this needs no claim that nothing else in the process owns it.
    let ready = match args.ready_fd {
        Some(fd) => match OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))
        {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("gureum: cannot open --ready-fd {fd}: {e}");
                return ExitCode::from(Status::VmmError);
            }
        },
        None => None,
    };
    let signals: SigSet = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ]
    .into_iter()
    .collect();
    if let Err(e) = signals.thread_block() {
        eprintln!("gureum: cannot block signals: {e}");
        return ExitCode::from(Status::VmmError);
    }
    if let Err(message) = enter_sandbox(args) {
        eprintln!("gureum: {message}");
        return ExitCode::from(Status::VmmError);
    }
    let socket = match &args.console_socket {
        Some(path) => match SocketConsole::bind(path, args.console_log.as_deref()) {
            Ok(pair) => Some(pair),
            Err(e) => {
                eprintln!("gureum: {e}");
                return ExitCode::from(Status::VmmError);
            }
        },
        None => None,
    };
    // The files the VMM writes from inside the jail, through their
    // directories (opened now, and given to the jail's user).
    let metrics = match args.metrics.as_deref().map(MetricsFile::open).transpose() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("gureum: {e}");
            return ExitCode::from(Status::VmmError);
        }
    };
    if let Some(ids) = args.jail {
        let given = metrics
            .as_ref()
            .map_or(Ok(()), |m| m.give_dir_to(ids.uid, ids.gid))
            .and_then(|()| {
                socket
                    .as_ref()
                    .map_or(Ok(()), |(_, out)| out.give_log_dir_to(ids.uid, ids.gid))
            });
        if let Err(e) = given {
            eprintln!(
                "gureum: cannot give the console log's and metrics' directories to the jail's user {ids}: {e}"
            );
            return ExitCode::from(Status::VmmError);
        }
    }
    let (socket, out): (_, Box<dyn std::io::Write + Send>) = match socket {
        Some((console, out)) => (Some(console), Box::new(out)),
        None => (None, Box::new(std::io::stdout())),
    };
    let exit = match vmm::start(&config, out) {
        Ok(vm) => attach_and_wait(&vm, socket, signals, ready, metrics),
        Err(e) => {
            eprintln!("gureum: {e}");
            Err(Status::VmmError)
        }
    };
    if let (Some(path), None) = (&args.console_socket, args.jail) {
        // Best effort: the socket is useless once the VM is gone. (A
        // jailed VMM cannot see it; whoever made its directory removes it.)
        let _ = std::fs::remove_file(path);
    }
    let exit = match exit {
        Ok(exit) => exit,
        Err(code) => return ExitCode::from(code),
    };
    match &exit {
        VmExit::PowerOff => {}
        VmExit::Reboot => eprintln!("gureum: the guest asked to reboot; the VM has stopped"),
        VmExit::Detached => eprintln!("gureum: stopped from the console"),
        VmExit::Terminated => eprintln!("gureum: stopped by a signal"),
        VmExit::Crash(what) => eprintln!("gureum: the guest crashed: {what}"),
    }
    ExitCode::from(exit.status())
}

/// What `gureum boot` does before anything else: compiles the seccomp
/// filters, joins the cgroup, and (with --jail) splits into keeper and
/// VMM; the VMM enters the jail once its files are open (in vmm::start).
fn enter_sandbox(args: &BootArgs) -> Result<(), String> {
    seccomp::configure(args.seccomp).map_err(|e| e.to_string())?;
    if let Some(dir) = &args.cgroup {
        cgroup::join(dir).map_err(|e| e.to_string())?;
    }
    if let Some(ids) = args.jail {
        jail::enter_pid_namespace(ids).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn attach_and_wait(
    vm: &RunningVm,
    socket: Option<SocketConsole>,
    signals: SigSet,
    ready: Option<File>,
    metrics: Option<MetricsFile>,
) -> Result<VmExit, Status> {
    let fail = |what: &str, e: std::io::Error| {
        eprintln!("gureum: cannot {what}: {e}");
        Status::VmmError
    };
    let metrics = metrics
        .map(|m| m.start(vm.metrics_source()))
        .transpose()
        .map_err(|e| fail("start the metrics writer", e))?;
    handle_signals(vm, signals, metrics.clone()).map_err(|e| fail("watch for signals", e))?;
    let input = vm.console().map_err(|e| fail("attach the console", e))?;
    // The terminal is restored when `terminal` drops, before any message.
    let terminal = match socket {
        Some(socket) => {
            socket
                .serve(input)
                .map_err(|e| fail("serve the console socket", e))?;
            None
        }
        None => Some(Console::attach(input).map_err(|e| fail("attach the console", e))?),
    };
    // The main thread's filter goes on last: it started the others, which
    // must not inherit it. vCPUs enter the guest only from here on.
    seccomp::enter(ThreadKind::Main);
    if let Some(mut ready) = ready {
        // Whoever waits may be gone; the VM runs on regardless.
        let _ = ready.write_all(b"R");
    }
    let exit = vm.wait();
    drop(terminal);
    if let Some(metrics) = &metrics {
        // The final counters, written before the process ends.
        metrics.finish();
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs() {
        let d = parse_disk("/a/b.img,ro").unwrap();
        assert_eq!(d.path, PathBuf::from("/a/b.img"));
        assert!(d.read_only);
        let d = parse_disk("/a/b,c.img").unwrap();
        assert_eq!(d.path, PathBuf::from("/a/b,c.img"));
        assert!(!d.read_only);
        assert!(parse_disk(",ro").is_err());
        let d = parse_disk("/a/b,c.img,ro,bw=100M,iops=500").unwrap();
        assert_eq!(d.path, PathBuf::from("/a/b,c.img"));
        assert!(d.read_only);
        assert_eq!(d.limit.bytes_per_sec, 100 << 20);
        assert_eq!(d.limit.ops_per_sec, 500);
        assert_eq!(
            parse_disk("/d,bw=64K").unwrap().limit.bytes_per_sec,
            64 << 10
        );
        assert!(parse_disk("/d,bw=fast").is_err());
        assert!(parse_disk("/d,iops=1K").is_err());
    }

    #[test]
    fn net_specs() {
        let n = parse_net("tap=tap0,mac=02:00:00:00:00:07").unwrap();
        assert_eq!(n.tap, "tap0");
        assert_eq!(n.mac.to_string(), "02:00:00:00:00:07");
        let n = parse_net("tap=tap1").unwrap();
        assert_eq!(n.mac, default_mac("tap1"));
        assert_eq!(n.mac.0[0] & 0x03, 0x02, "locally administered unicast");
        assert_ne!(default_mac("tap1"), default_mac("tap2"));
        assert!(parse_net("mac=02:00:00:00:00:07").is_err());
        assert!(parse_net("tap=t,mac=zz").is_err());
        assert!(parse_net("bridge=br0").is_err());
        let n = parse_net("tap=t-0abc,mac=02:00:00:00:00:07,netns=gureum-vpc-1").unwrap();
        assert_eq!(n.netns.as_deref(), Some("gureum-vpc-1"));
        assert_eq!(parse_net("tap=t").unwrap().netns, None);
        assert!(parse_net("tap=t,netns=").is_err());
        let n = parse_net("tap=t,rx_bw=1G,rx_pps=10,tx_bw=5,tx_pps=1000").unwrap();
        assert_eq!(n.limits.rx.bytes_per_sec, 1 << 30);
        assert_eq!(n.limits.rx.ops_per_sec, 10);
        assert_eq!(n.limits.tx.bytes_per_sec, 5);
        assert_eq!(n.limits.tx.ops_per_sec, 1000);
        assert!(parse_net("tap=t,rx_bw=-1").is_err());
    }
}

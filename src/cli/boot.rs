//! `gureum boot`: one VM in the foreground, its serial console on the
//! terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use gureum::vmm::boot::BootSource;
use gureum::vmm::exit::{EXIT_CRASH, EXIT_DETACHED, EXIT_REBOOT, EXIT_VMM_ERROR, VmExit};
use gureum::vmm::{self, VmConfig};

use super::console::Console;

const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";

/// Boot a Linux kernel in a micro-VM with its serial console on this
/// terminal.
#[derive(Debug, Args)]
#[command(after_help = format!(
    "Exit status: 0 when the guest powers off, {EXIT_REBOOT} when it asks to reboot, \
     {EXIT_CRASH} when it crashes (triple fault, KVM internal error), {EXIT_DETACHED} when \
     stopped from the console with Ctrl-A x, {EXIT_VMM_ERROR} on a VMM error, 2 on bad usage."
))]
pub struct BootArgs {
    /// Kernel image: a bzImage (vmlinuz) or an uncompressed ELF vmlinux.
    #[arg(long)]
    kernel: PathBuf,
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
}

/// Boots the VM and waits for it to stop.
pub fn run(args: &BootArgs) -> ExitCode {
    let config = VmConfig {
        boot: BootSource {
            kernel: args.kernel.clone(),
            initrd: args.initrd.clone(),
            cmdline: args.cmdline.clone(),
        },
        vcpus: args.vcpus,
        memory_mib: args.memory,
    };
    let vm = match vmm::start(&config, Box::new(std::io::stdout())) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("gureum: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    let console = match vm.console().and_then(Console::attach) {
        Ok(console) => console,
        Err(e) => {
            eprintln!("gureum: cannot attach the console: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    let exit = vm.wait();
    // Put the terminal back before saying anything.
    drop(console);
    match &exit {
        VmExit::PowerOff => {}
        VmExit::Reboot => eprintln!("gureum: the guest asked to reboot; the VM has stopped"),
        VmExit::Detached => eprintln!("gureum: stopped from the console"),
        VmExit::Crash(what) => eprintln!("gureum: the guest crashed: {what}"),
    }
    ExitCode::from(exit.code())
}

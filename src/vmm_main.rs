//! `gureum-vmm`: one VM's VMM, what every instance's process runs. The
//! same `boot` command as `gureum boot`, in a binary without the control
//! plane, the API and the CLI, so that a VM's process maps only the
//! VMM's code (its resident text was most of the VMM's own memory).

#[path = "cli/boot.rs"]
mod boot;
#[path = "cli/console.rs"]
mod console;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "gureum-vmm", version)]
struct VmmCli {
    #[command(subcommand)]
    command: VmmCommand,
}

#[derive(Debug, Subcommand)]
enum VmmCommand {
    Boot(boot::BootArgs),
}

fn main() -> std::process::ExitCode {
    let VmmCli {
        command: VmmCommand::Boot(args),
    } = VmmCli::parse();
    boot::run(&args)
}

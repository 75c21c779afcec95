//! Command-line interface: parses arguments and maps outcomes to exit
//! codes.

mod boot;
mod console;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// gureum: a local EC2 for one Linux host.
#[derive(Debug, Parser)]
#[command(name = "gureum", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Boot(boot::BootArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Boot(args) => boot::run(&args),
    }
}

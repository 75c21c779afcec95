//! Command-line interface: parses arguments and maps outcomes to exit
//! codes.

mod boot;
mod cloud;
mod console;
mod console_client;
mod image;
mod instance;
mod key;
mod output;
mod supervise;
mod template;
mod types;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// gureum: a local EC2 for one Linux host.
#[derive(Debug, Parser)]
#[command(name = "gureum", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: cloud::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Boot(boot::BootArgs),
    /// Launch instances (detached); prints their IDs.
    Run(instance::RunArgs),
    #[command(subcommand, visible_alias = "instances")]
    Instance(instance::InstanceCommand),
    #[command(subcommand, visible_alias = "keys")]
    Key(key::KeyCommand),
    #[command(subcommand, visible_alias = "images")]
    Image(image::ImageCommand),
    #[command(subcommand, visible_alias = "templates")]
    Template(template::TemplateCommand),
    /// Instance types and their vCPUs and memory.
    #[command(visible_alias = "instance-types")]
    Types(types::TypesArgs),
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Boot(args) => boot::run(&args),
        Command::Run(args) => cloud::run(&cli.global, |env| instance::launch(env, args)),
        Command::Instance(c) => cloud::run(&cli.global, |env| instance::run(env, c)),
        Command::Key(c) => cloud::run(&cli.global, |env| key::run(env, c)),
        Command::Image(c) => cloud::run(&cli.global, |env| image::run(env, c)),
        Command::Template(c) => cloud::run(&cli.global, |env| template::run(env, c)),
        Command::Types(args) => cloud::run(&cli.global, |env| types::run(env, &args)),
        Command::Supervise(args) => cloud::run(&cli.global, |env| supervise::run(env, &args)),
    }
}

//! `gureum net`: the host's side of VPC networking.

use clap::Subcommand;

use gureum::cloud::vpc::check;

use super::cloud::{CliError, Env};
use super::output::{self, Format};

/// What gureum made in Linux for VPCs.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// List namespaces and links of gureum's (GUREUM_NET_PREFIX) that no
    /// resource owns; --remove removes them.
    Check {
        #[arg(long)]
        remove: bool,
    },
}

pub fn run(env: &Env, command: NetCommand) -> Result<(), CliError> {
    let mut store = env.store()?;
    match command {
        NetCommand::Check { remove } => {
            let report = check::run(&mut store, &env.net()?, remove)?;
            if env.format == Format::Json {
                output::json(&report)?;
                return Ok(());
            }
            let verb = if remove { "removed" } else { "leftover" };
            for name in &report.leftovers.namespaces {
                println!("{verb} namespace {name}");
            }
            for link in &report.leftovers.public_links {
                println!("{verb} public link {link}");
            }
            for tap in &report.taps {
                println!("{verb} tap {tap}");
            }
            for id in &report.ports {
                println!("{verb} port of terminated instance {id}");
            }
            if report.is_empty() {
                println!("nothing left over");
            } else if !remove {
                eprintln!("gureum: `gureum net check --remove` removes them");
            }
        }
    }
    Ok(())
}

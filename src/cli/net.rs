//! `gureum net`: the host's side of VPC networking.

use clap::Subcommand;

use gureum::cloud::vpc::restore::{self, Outcome};
use gureum::cloud::vpc::{self, check};

use super::cloud::{CliError, Env};
use super::output::{self, Format};

/// What gureum made in Linux for VPCs.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// List namespaces and links of gureum's (GUREUM_NET_PREFIX) that no
    /// resource owns, and VPCs whose namespace is missing; --remove
    /// removes the former.
    Check {
        #[arg(long)]
        remove: bool,
    },
    /// Rebuild, from their records, the VPCs whose namespace is missing
    /// (after a host reboot): namespace, subnets, gateway, elastic IPs,
    /// security groups and instance ports. VPCs that are there are left
    /// alone.
    Restore,
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
            for missing in &report.missing {
                println!("missing namespace {} of VPC {}", missing.netns, missing.vpc);
            }
            if report.is_empty() {
                println!("nothing left over");
            }
            if !report.nothing_left_over() && !remove {
                eprintln!("gureum: `gureum net check --remove` removes what is left over");
            }
            if !report.missing.is_empty() {
                eprintln!(
                    "gureum: `gureum net restore` rebuilds missing VPCs from their records \
                     (a host reboot empties /run/netns)"
                );
            }
        }
        NetCommand::Restore => {
            let restored = restore::run(&mut store, &env.net()?)?;
            if env.format == Format::Json {
                output::json(&restored)?;
            } else {
                if restored.is_empty() {
                    println!("no VPCs to restore");
                }
                for r in &restored {
                    match &r.outcome {
                        Outcome::Restored => {
                            println!("restored VPC {} (namespace {})", r.vpc, r.netns)
                        }
                        Outcome::Present => println!(
                            "VPC {} is in place (namespace {} exists): left alone",
                            r.vpc, r.netns
                        ),
                        Outcome::Failed { error } => eprintln!(
                            "gureum: cannot restore VPC {}: {error}; what was made for it was undone",
                            r.vpc
                        ),
                    }
                }
            }
            let failed: Vec<&str> = restored
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
                .map(|r| r.vpc.as_str())
                .collect();
            if !failed.is_empty() {
                return Err(vpc::Error::NotRestored {
                    vpcs: failed.join(", "),
                }
                .into());
            }
        }
    }
    Ok(())
}

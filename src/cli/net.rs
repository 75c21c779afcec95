//! `gureum net`: the host's side of VPC networking.

use clap::Subcommand;

use gureum::cloud::api::{Action, Response};
use gureum::cloud::vpc;
use gureum::cloud::vpc::restore::Outcome;

use super::cloud::{CliError, Env, unexpected};
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
    match command {
        NetCommand::Check { remove } => {
            let response = env.call(Action::CheckNetwork { remove })?;
            let Response::NetworkCheck(report) = response else {
                return Err(unexpected(&response));
            };
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
            let response = env.call(Action::RestoreNetwork)?;
            let Response::NetworkRestore(restored) = response else {
                return Err(unexpected(&response));
            };
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
                return Err(gureum::cloud::Error::from(vpc::Error::NotRestored {
                    vpcs: failed.join(", "),
                })
                .into());
            }
        }
    }
    Ok(())
}

//! `gureum net`: the host's side of VPC networking.

use clap::Subcommand;

use gureum::cloud::api::{Action, Response};
use gureum::cloud::reconcile::Report;

use super::cloud::{CliError, Env, unexpected};
use super::output::{self, Format};

/// What gureum made in Linux (and under its state directory) against
/// what the records say.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Report every difference between the records and Linux (missing or
    /// extra namespaces, links, addresses, routes, rules, sysctls, nft
    /// tables; ports of terminated instances; files nothing owns); exit
    /// status 1 when there is any. --remove repairs them, as `reconcile`.
    Check {
        #[arg(long)]
        remove: bool,
    },
    /// Make Linux match the records, changing only what differs, and say
    /// what was changed. Touches only what this store made (its identity
    /// is on every namespace). Also what to run after a host reboot.
    #[command(visible_alias = "restore")]
    Reconcile,
}

pub fn run(env: &Env, command: NetCommand) -> Result<(), CliError> {
    let repair = !matches!(command, NetCommand::Check { remove: false });
    let response = env.call(Action::Reconcile { repair })?;
    let Response::Reconciled(report) = response else {
        return Err(unexpected(&response));
    };
    if env.format == Format::Json {
        output::json(&report)?;
    } else {
        print(&report, repair);
    }
    if !repair && !report.is_empty() {
        return Err(CliError::Differences {
            count: report.network.len() + report.ports.len() + report.files.len(),
        });
    }
    Ok(())
}

fn print(report: &Report, repair: bool) {
    let done = if repair { "repaired: " } else { "" };
    for id in &report.ports {
        println!("{done}port of terminated instance {id} still in its VPC");
    }
    for difference in &report.network {
        println!("{done}{difference}");
    }
    for path in &report.files {
        println!("{done}{} is owned by no record", path.display());
    }
    if report.is_empty() {
        println!("Linux and the state directory match the records");
    }
}

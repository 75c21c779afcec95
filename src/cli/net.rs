//! `gureum net`: the host's side of VPC networking.

use clap::Subcommand;

use gureum::cloud::reconcile::{self, Report};
use gureum::net::reconcile::Mode;

use super::cloud::{CliError, Env};
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
    let mut store = env.store()?;
    let mode = match command {
        NetCommand::Check { remove: false } => Mode::Check,
        NetCommand::Check { remove: true } | NetCommand::Reconcile => Mode::Repair,
    };
    let report = reconcile::run(&env.ctx, &mut store, mode)?;
    if env.format == Format::Json {
        output::json(&report)?;
    } else {
        print(&report, mode);
    }
    if mode == Mode::Check && !report.is_empty() {
        return Err(CliError::Differences {
            count: report.network.len() + report.ports.len() + report.files.len(),
        });
    }
    Ok(())
}

fn print(report: &Report, mode: Mode) {
    let done = if mode == Mode::Repair {
        "repaired: "
    } else {
        ""
    };
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

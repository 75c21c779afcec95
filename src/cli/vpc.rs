//! `gureum vpc`: virtual private clouds.

use clap::Subcommand;

use gureum::cloud::api::{Action, Response};
use gureum::cloud::vpc::network::Vpc;
use gureum::net::cidr::Ipv4Cidr;

use super::cloud::{
    CliError, Env, FilterArgs, NameArgs, change, describe, list, name_of, unexpected,
};

/// Isolated virtual networks, each its own network namespace.
#[derive(Debug, Subcommand)]
pub enum VpcCommand {
    /// Create a VPC with its main route table and default security group.
    Create {
        /// Its block: /16 to /28, preferably RFC 1918 (10/8, 172.16/12, 192.168/16).
        #[arg(long)]
        cidr: Ipv4Cidr,
        #[command(flatten)]
        name: NameArgs,
    },
    /// Create a default VPC (172.31.0.0/16, a default subnet, an internet
    /// gateway), where launches that name no network go, when there is
    /// none: as EC2's CreateDefaultVpc, after the last one was deleted.
    CreateDefault,
    /// List VPCs.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one VPC.
    Describe { vpc: String },
    /// Delete an empty VPC.
    #[command(visible_alias = "rm")]
    Delete { vpc: String },
}

pub fn run(env: &Env, command: VpcCommand) -> Result<(), CliError> {
    match command {
        VpcCommand::Create { cidr, name } => {
            let tags = name.tags()?;
            let response = env.call(Action::CreateVpc { cidr, tags })?;
            let Response::NewVpc { vpc, not_private } = response else {
                return Err(unexpected(&response));
            };
            if not_private {
                eprintln!(
                    "gureum: warning: {cidr} is not in an RFC 1918 private range (10.0.0.0/8, \
                     172.16.0.0/12, 192.168.0.0/16); instances may shadow public addresses"
                );
            }
            println!("{}", vpc.item.id);
        }
        VpcCommand::CreateDefault => {
            let response = env.call(Action::CreateDefaultVpc)?;
            let Response::NewVpc { vpc, .. } = response else {
                return Err(unexpected(&response));
            };
            println!("{}", vpc.item.id);
        }
        VpcCommand::List(filter) => {
            list::<Vpc>(
                env,
                Action::ListVpcs {
                    filters: filter.filters()?,
                },
                &[
                    "ID",
                    "NAME",
                    "CIDR",
                    "DEFAULT",
                    "MAIN ROUTE TABLE",
                    "DEFAULT GROUP",
                ],
                |v| {
                    vec![
                        v.item.id.clone(),
                        name_of(v),
                        v.item.cidr.to_string(),
                        if v.item.is_default { "yes" } else { "no" }.to_owned(),
                        v.item.main_route_table.clone(),
                        v.item.default_security_group.clone(),
                    ]
                },
            )?;
        }
        VpcCommand::Describe { vpc } => describe::<Vpc>(env, Action::DescribeVpc { vpc })?,
        VpcCommand::Delete { vpc } => change::<Vpc>(env, Action::DeleteVpc { vpc })?,
    }
    Ok(())
}

//! `gureum subnet`: slices of a VPC's block.

use clap::Subcommand;

use gureum::cloud::api::Action;
use gureum::cloud::vpc::subnet::Subnet;
use gureum::net::cidr::Ipv4Cidr;

use super::cloud::{CliError, Env, FilterArgs, NameArgs, change, describe, list, name_of};

/// Subnets: a bridge in their VPC holding the router (.1) address.
#[derive(Debug, Subcommand)]
pub enum SubnetCommand {
    /// Create a subnet inside a VPC's block, overlapping no other subnet.
    Create {
        /// The VPC: ID or Name tag.
        #[arg(long)]
        vpc: String,
        /// Its block, e.g. 10.0.1.0/24 (/16 to /28).
        #[arg(long)]
        cidr: Ipv4Cidr,
        /// Availability zone [default: local-1a, this host].
        #[arg(long)]
        zone: Option<String>,
        #[command(flatten)]
        name: NameArgs,
    },
    /// List subnets.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one subnet.
    Describe { subnet: String },
    /// Delete a subnet with no instances.
    #[command(visible_alias = "rm")]
    Delete { subnet: String },
}

pub fn run(env: &Env, command: SubnetCommand) -> Result<(), CliError> {
    match command {
        SubnetCommand::Create {
            vpc,
            cidr,
            zone,
            name,
        } => {
            let tags = name.tags()?;
            change::<Subnet>(
                env,
                Action::CreateSubnet {
                    vpc,
                    cidr,
                    zone,
                    tags,
                },
            )?;
        }
        SubnetCommand::List(filter) => {
            list::<Subnet>(
                env,
                Action::ListSubnets {
                    filters: filter.filters()?,
                },
                &["ID", "NAME", "VPC", "CIDR", "ZONE", "ROUTER"],
                |s| {
                    vec![
                        s.item.id.clone(),
                        name_of(s),
                        s.item.vpc_id.clone(),
                        s.item.cidr.to_string(),
                        s.item.availability_zone.clone(),
                        s.item.router.to_string(),
                    ]
                },
            )?;
        }
        SubnetCommand::Describe { subnet } => {
            describe::<Subnet>(env, Action::DescribeSubnet { subnet })?;
        }
        SubnetCommand::Delete { subnet } => change::<Subnet>(env, Action::DeleteSubnet { subnet })?,
    }
    Ok(())
}

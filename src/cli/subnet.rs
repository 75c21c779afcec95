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
    /// Change whether later launches into it get a public address.
    Modify {
        subnet: String,
        /// Give instances launched into it a public address from the pool
        /// (EC2's MapPublicIpOnLaunch; the default subnet's default).
        #[arg(long, required_unless_present = "no_map_public_ip_on_launch")]
        map_public_ip_on_launch: bool,
        /// Give them none unless `run --associate-public-ip-address`
        /// asks (created subnets' default).
        #[arg(long, conflicts_with = "map_public_ip_on_launch")]
        no_map_public_ip_on_launch: bool,
    },
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
                &["ID", "NAME", "VPC", "CIDR", "ZONE", "ROUTER", "PUBLIC IP"],
                |s| {
                    vec![
                        s.item.id.clone(),
                        name_of(s),
                        s.item.vpc_id.clone(),
                        s.item.cidr.to_string(),
                        s.item.availability_zone.clone(),
                        s.item.router.to_string(),
                        if s.item.map_public_ip_on_launch {
                            "on launch"
                        } else {
                            "-"
                        }
                        .to_owned(),
                    ]
                },
            )?;
        }
        SubnetCommand::Describe { subnet } => {
            describe::<Subnet>(env, Action::DescribeSubnet { subnet })?;
        }
        SubnetCommand::Delete { subnet } => change::<Subnet>(env, Action::DeleteSubnet { subnet })?,
        SubnetCommand::Modify {
            subnet,
            map_public_ip_on_launch,
            ..
        } => change::<Subnet>(
            env,
            Action::SetMapPublicIpOnLaunch {
                subnet,
                on: map_public_ip_on_launch,
            },
        )?,
    }
    Ok(())
}

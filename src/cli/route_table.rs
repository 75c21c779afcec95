//! `gureum route-table`: which subnets reach the internet gateway.

use clap::Subcommand;

use gureum::cloud::api::Action;
use gureum::cloud::vpc::route_table::RouteTable;
use gureum::net::cidr::Ipv4Cidr;

use super::cloud::{CliError, Env, FilterArgs, NameArgs, change, describe, list, name_of};

/// Route tables: a subnet whose table routes 0.0.0.0/0 to an internet
/// gateway is public.
#[derive(Debug, Subcommand)]
pub enum RouteTableCommand {
    /// Create a custom route table (only the local route).
    Create {
        /// The VPC: ID or Name tag.
        #[arg(long)]
        vpc: String,
        #[command(flatten)]
        name: NameArgs,
    },
    /// List route tables.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one route table with its routes and subnets.
    Describe { table: String },
    /// Delete a custom route table no subnet is associated with.
    #[command(visible_alias = "rm")]
    Delete { table: String },
    /// Associate a subnet with the table (instead of the one it follows).
    Associate {
        table: String,
        #[arg(long)]
        subnet: String,
    },
    /// Take a subnet off the table: it follows the main table again.
    Disassociate {
        table: String,
        #[arg(long)]
        subnet: String,
    },
    /// Add a route: 0.0.0.0/0 to an attached internet gateway.
    CreateRoute {
        table: String,
        #[arg(long)]
        destination: Ipv4Cidr,
        /// The internet gateway (igw-…).
        #[arg(long)]
        gateway: String,
    },
    /// Delete a route.
    DeleteRoute {
        table: String,
        #[arg(long)]
        destination: Ipv4Cidr,
    },
}

pub fn run(env: &Env, command: RouteTableCommand) -> Result<(), CliError> {
    let action = match command {
        RouteTableCommand::Create { vpc, name } => Action::CreateRouteTable {
            vpc,
            tags: name.tags()?,
        },
        RouteTableCommand::List(filter) => {
            list::<RouteTable>(
                env,
                Action::ListRouteTables {
                    filters: filter.filters()?,
                },
                &["ID", "NAME", "VPC", "MAIN", "ROUTES", "SUBNETS"],
                |t| {
                    let routes: Vec<String> = t
                        .item
                        .routes
                        .iter()
                        .map(|r| format!("{}->{}", r.destination, r.target))
                        .collect();
                    vec![
                        t.item.id.clone(),
                        name_of(t),
                        t.item.vpc_id.clone(),
                        if t.item.main { "yes" } else { "no" }.into(),
                        routes.join(","),
                        t.item.subnets.join(","),
                    ]
                },
            )?;
            return Ok(());
        }
        RouteTableCommand::Describe { table } => {
            return describe::<RouteTable>(env, Action::DescribeRouteTable { table });
        }
        RouteTableCommand::Delete { table } => Action::DeleteRouteTable { table },
        RouteTableCommand::Associate { table, subnet } => {
            Action::AssociateRouteTable { table, subnet }
        }
        RouteTableCommand::Disassociate { table, subnet } => {
            Action::DisassociateRouteTable { table, subnet }
        }
        RouteTableCommand::CreateRoute {
            table,
            destination,
            gateway,
        } => Action::CreateRoute {
            table,
            destination,
            gateway,
        },
        RouteTableCommand::DeleteRoute { table, destination } => {
            Action::DeleteRoute { table, destination }
        }
    };
    change::<RouteTable>(env, action)
}

//! `gureum route-table`: which subnets reach the internet gateway.

use clap::Subcommand;

use gureum::cloud::vpc::route_table::{self, RouteTable};
use gureum::net::cidr::Ipv4Cidr;

use super::cloud::{CliError, Env, FilterArgs, NameArgs, describe_tagged, list, name_of, print_id};

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
    let mut store = env.store()?;
    let changed = match command {
        RouteTableCommand::Create { vpc, name } => {
            route_table::create(&mut store, &vpc, &name.tags()?)?
        }
        RouteTableCommand::List(filter) => {
            list::<RouteTable>(
                env,
                &mut store,
                &filter,
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
            return describe_tagged::<RouteTable>(env, &mut store, &table);
        }
        RouteTableCommand::Delete { table } => route_table::delete(&mut store, &table)?,
        RouteTableCommand::Associate { table, subnet } => {
            route_table::associate(&mut store, &env.net()?, &table, &subnet)?
        }
        RouteTableCommand::Disassociate { table, subnet } => {
            route_table::disassociate(&mut store, &env.net()?, &table, &subnet)?
        }
        RouteTableCommand::CreateRoute {
            table,
            destination,
            gateway,
        } => route_table::create_route(&mut store, &env.net()?, &table, destination, &gateway)?,
        RouteTableCommand::DeleteRoute { table, destination } => {
            route_table::delete_route(&mut store, &env.net()?, &table, destination)?
        }
    };
    print_id(&changed);
    Ok(())
}

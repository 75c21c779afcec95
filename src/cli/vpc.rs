//! `gureum vpc`: virtual private clouds.

use clap::Subcommand;

use gureum::cloud::vpc::network::{self, Vpc};
use gureum::net::cidr::Ipv4Cidr;

use super::cloud::{CliError, Env, FilterArgs, NameArgs, describe_tagged, list, name_of, print_id};

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
    let mut store = env.store()?;
    match command {
        VpcCommand::Create { cidr, name } => {
            let created = network::create(&mut store, &env.net()?, cidr, &name.tags()?)?;
            if created.not_private {
                eprintln!(
                    "gureum: warning: {cidr} is not in an RFC 1918 private range (10.0.0.0/8, \
                     172.16.0.0/12, 192.168.0.0/16); instances may shadow public addresses"
                );
            }
            print_id(&created.vpc);
        }
        VpcCommand::List(filter) => {
            list::<Vpc>(
                env,
                &mut store,
                &filter,
                &["ID", "NAME", "CIDR", "MAIN ROUTE TABLE", "DEFAULT GROUP"],
                |v| {
                    vec![
                        v.item.id.clone(),
                        name_of(v),
                        v.item.cidr.to_string(),
                        v.item.main_route_table.clone(),
                        v.item.default_security_group.clone(),
                    ]
                },
            )?;
        }
        VpcCommand::Describe { vpc } => describe_tagged::<Vpc>(env, &mut store, &vpc)?,
        VpcCommand::Delete { vpc } => print_id(&network::delete(&mut store, &env.net()?, &vpc)?),
    }
    Ok(())
}

//! `gureum eip`: elastic IPs.

use clap::Subcommand;

use gureum::cloud::api::Action;
use gureum::cloud::vpc::elastic_ip::ElasticIp;

use super::cloud::{CliError, Env, FilterArgs, NameArgs, change, describe, list, name_of};
use super::output::Format;

/// Elastic IPs: static public addresses, held (and costing) until released.
#[derive(Debug, Subcommand)]
pub enum EipCommand {
    /// Allocate an address from the public pool.
    Allocate {
        #[command(flatten)]
        name: NameArgs,
    },
    /// Map an elastic IP to an instance in a VPC with an internet gateway.
    Associate {
        /// ID, Name tag or address.
        eip: String,
        #[arg(long)]
        instance: String,
    },
    /// Take an elastic IP off its instance (it stays held).
    Disassociate { eip: String },
    /// Give an unassociated elastic IP back to the pool.
    Release { eip: String },
    /// List elastic IPs; unassociated ones are marked as held.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one elastic IP.
    Describe { eip: String },
}

/// What `list` says of an elastic IP without an instance.
const HELD: &str = "held, unassociated";

pub fn run(env: &Env, command: EipCommand) -> Result<(), CliError> {
    let action = match command {
        EipCommand::Allocate { name } => Action::AllocateAddress { tags: name.tags()? },
        EipCommand::Associate { eip, instance } => Action::AssociateAddress { eip, instance },
        EipCommand::Disassociate { eip } => Action::DisassociateAddress { eip },
        EipCommand::Release { eip } => Action::ReleaseAddress { eip },
        EipCommand::List(filter) => {
            let eips = list::<ElasticIp>(
                env,
                Action::ListAddresses {
                    filters: filter.filters()?,
                },
                &["ID", "NAME", "ADDRESS", "INSTANCE"],
                |e| {
                    vec![
                        e.item.id.clone(),
                        name_of(e),
                        e.item.public_ip.to_string(),
                        e.item.instance_id.clone().unwrap_or_else(|| HELD.into()),
                    ]
                },
            )?;
            let held = eips.iter().filter(|e| e.item.instance_id.is_none()).count();
            if held > 0 && env.format == Format::Table {
                eprintln!(
                    "gureum: {held} elastic IP(s) are {HELD}: like EC2's, they keep costing \
                     until released (`gureum eip release ID`)"
                );
            }
            return Ok(());
        }
        EipCommand::Describe { eip } => {
            return describe::<ElasticIp>(env, Action::DescribeAddress { eip });
        }
    };
    change::<ElasticIp>(env, action)
}

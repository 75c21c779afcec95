//! `gureum igw`: internet gateways.

use clap::Subcommand;

use gureum::cloud::api::Action;
use gureum::cloud::vpc::gateway::InternetGateway;

use super::cloud::{CliError, Env, FilterArgs, NameArgs, change, describe, list, name_of};

/// Internet gateways: a VPC's door to the public side, with source NAT.
#[derive(Debug, Subcommand)]
pub enum IgwCommand {
    /// Create a detached internet gateway.
    Create {
        #[command(flatten)]
        name: NameArgs,
    },
    /// Attach a gateway to a VPC (one per VPC); it gets a public address.
    Attach {
        igw: String,
        #[arg(long)]
        vpc: String,
    },
    /// Detach a gateway from its VPC (no route may go through it).
    Detach { igw: String },
    /// Delete a detached gateway.
    #[command(visible_alias = "rm")]
    Delete { igw: String },
    /// List internet gateways.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one internet gateway.
    Describe { igw: String },
}

pub fn run(env: &Env, command: IgwCommand) -> Result<(), CliError> {
    let action = match command {
        IgwCommand::Create { name } => Action::CreateInternetGateway { tags: name.tags()? },
        IgwCommand::Attach { igw, vpc } => Action::AttachInternetGateway { igw, vpc },
        IgwCommand::Detach { igw } => Action::DetachInternetGateway { igw },
        IgwCommand::Delete { igw } => Action::DeleteInternetGateway { igw },
        IgwCommand::List(filter) => {
            list::<InternetGateway>(
                env,
                Action::ListInternetGateways {
                    filters: filter.filters()?,
                },
                &["ID", "NAME", "VPC", "PUBLIC IP"],
                |g| {
                    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                    vec![
                        g.item.id.clone(),
                        name_of(g),
                        or_dash(g.item.vpc_id.clone()),
                        or_dash(g.item.public_ip.map(|a| a.to_string())),
                    ]
                },
            )?;
            return Ok(());
        }
        IgwCommand::Describe { igw } => {
            return describe::<InternetGateway>(env, Action::DescribeInternetGateway { igw });
        }
    };
    change::<InternetGateway>(env, action)
}

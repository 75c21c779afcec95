//! `gureum igw`: internet gateways.

use clap::Subcommand;

use gureum::cloud::vpc::gateway::{self, InternetGateway};

use super::cloud::{CliError, Env, FilterArgs, NameArgs, describe_tagged, list, name_of, print_id};

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
    let mut store = env.store()?;
    let changed = match command {
        IgwCommand::Create { name } => gateway::create(&mut store, &name.tags()?)?,
        IgwCommand::Attach { igw, vpc } => gateway::attach(&mut store, &env.net()?, &igw, &vpc)?,
        IgwCommand::Detach { igw } => gateway::detach(&mut store, &env.net()?, &igw)?,
        IgwCommand::Delete { igw } => gateway::delete(&mut store, &igw)?,
        IgwCommand::List(filter) => {
            list::<InternetGateway>(
                env,
                &mut store,
                &filter,
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
            return describe_tagged::<InternetGateway>(env, &mut store, &igw);
        }
    };
    print_id(&changed);
    Ok(())
}

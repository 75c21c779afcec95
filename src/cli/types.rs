//! `gureum types`: the instance types this host runs.

use clap::{Args, Subcommand};

use gureum::cloud::api::{Action, Response};

use super::cloud::{CliError, Env, unexpected};
use super::output::{self, Format};

/// Instance types and their vCPUs and memory.
#[derive(Debug, Args)]
pub struct TypesArgs {
    #[command(subcommand)]
    command: Option<TypesCommand>,
}

#[derive(Debug, Subcommand)]
enum TypesCommand {
    /// List instance types (the default).
    #[command(visible_alias = "ls")]
    List,
}

pub fn run(env: &Env, args: &TypesArgs) -> Result<(), CliError> {
    // `list` is the only view; the subcommand is there for symmetry
    // with the other nouns.
    let (None | Some(TypesCommand::List)) = args.command;
    let response = env.call(Action::ListInstanceTypes)?;
    let Response::InstanceTypes(types) = response else {
        return Err(unexpected(&response));
    };
    match env.format {
        Format::Json => output::json(&types)?,
        Format::Table => output::table(
            &["TYPE", "VCPUS", "MEMORY-MIB"],
            &types
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.vcpus.to_string(),
                        t.memory_mib.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

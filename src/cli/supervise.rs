//! `gureum supervise ID` (hidden): the supervisor process `gureum run`
//! and `gureum instance start` start for each instance.

use clap::Args;

use gureum::cloud::supervisor;

use super::cloud::{CliError, Env};

/// Run and watch an instance's VMM until it stops for good.
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    instance: String,
}

pub fn run(env: &Env, args: &SuperviseArgs) -> Result<(), CliError> {
    Ok(supervisor::run(&env.ctx, &args.instance)?)
}

//! `gureum target-group`: instances and a port behind a load balancer,
//! with a health check.

use clap::{Args, Subcommand};

use gureum::cloud::api::{Action, Tagged};
use gureum::cloud::elb::target_group::{HealthCheckRequest, TargetGroup};
use gureum::cloud::elb::{TargetGroupRequest, TargetRef};

use super::cloud::{CliError, Env, FilterArgs, TagArgs, change, describe, list};
use super::output::{self, Format};

/// Target groups: instances (and a port each) a load balancer's listener
/// sends flows to, the healthy ones only.
#[derive(Debug, Subcommand)]
pub enum TargetGroupCommand {
    /// Create a target group in a VPC.
    Create(CreateArgs),
    /// Register instances (running or stopped, with a port in the VPC).
    Register(TargetsArgs),
    /// Deregister targets: they drain for the group's delay, then go.
    Deregister(TargetsArgs),
    /// List target groups.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one target group.
    Describe { target_group: String },
    /// Each target's health (initial, healthy, unhealthy, draining, unused).
    Health { target_group: String },
    /// Delete a target group no listener uses.
    #[command(visible_alias = "rm")]
    Delete { target_group: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Its name: 1 to 32 letters, digits and '-', unique.
    #[arg(long)]
    name: String,
    /// The VPC: ID or Name tag.
    #[arg(long)]
    vpc: String,
    /// tcp or udp (network load balancers), http (application ones).
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// The port targets receive on (a target may have its own).
    #[arg(long)]
    port: u16,
    /// tcp (a connection) or http (a GET wanting 200-399) [default: the
    /// group's protocol, tcp for udp].
    #[arg(long)]
    health_protocol: Option<String>,
    /// The port checks go to [default: the target's].
    #[arg(long)]
    health_port: Option<u16>,
    /// The path of an HTTP check [default: /].
    #[arg(long)]
    health_path: Option<String>,
    /// Seconds between checks, 1-300 [default: 30].
    #[arg(long)]
    health_interval: Option<u32>,
    /// Seconds a check may take, 1-120, at most the interval [default: 10].
    #[arg(long)]
    health_timeout: Option<u32>,
    /// Consecutive passes that make a target healthy, 2-10 [default: 5].
    #[arg(long)]
    healthy_threshold: Option<u32>,
    /// Consecutive failures that make it unhealthy, 2-10 [default: 2].
    #[arg(long)]
    unhealthy_threshold: Option<u32>,
    /// Seconds a deregistered target drains, 0-3600 [default: 300].
    #[arg(long)]
    deregistration_delay: Option<u32>,
    #[command(flatten)]
    tags: TagArgs,
}

#[derive(Debug, Args)]
pub struct TargetsArgs {
    target_group: String,
    /// An instance (ID or Name tag), with its own port after ':' [default:
    /// the group's] (repeatable).
    #[arg(long = "target", value_name = "INSTANCE[:PORT]", required = true, value_parser = parse_target)]
    targets: Vec<TargetRef>,
}

fn parse_target(text: &str) -> Result<TargetRef, String> {
    match text.rsplit_once(':') {
        Some((instance, port)) => Ok(TargetRef {
            instance: instance.to_owned(),
            port: Some(
                port.parse()
                    .map_err(|_| format!("'{port}' is not a port: write INSTANCE:80"))?,
            ),
        }),
        None => Ok(TargetRef {
            instance: text.to_owned(),
            port: None,
        }),
    }
}

pub fn run(env: &Env, command: TargetGroupCommand) -> Result<(), CliError> {
    match command {
        TargetGroupCommand::Create(args) => {
            let request = TargetGroupRequest {
                name: args.name,
                vpc: args.vpc,
                protocol: args.protocol,
                port: args.port,
                health_check: HealthCheckRequest {
                    protocol: args.health_protocol,
                    port: args.health_port,
                    path: args.health_path,
                    interval_secs: args.health_interval,
                    timeout_secs: args.health_timeout,
                    healthy_threshold: args.healthy_threshold,
                    unhealthy_threshold: args.unhealthy_threshold,
                },
                deregistration_delay_secs: args.deregistration_delay,
                tags: args.tags.parse()?,
            };
            change::<TargetGroup>(env, Action::CreateTargetGroup { request })
        }
        TargetGroupCommand::Register(args) => change::<TargetGroup>(
            env,
            Action::RegisterTargets {
                target_group: args.target_group,
                targets: args.targets,
            },
        ),
        TargetGroupCommand::Deregister(args) => change::<TargetGroup>(
            env,
            Action::DeregisterTargets {
                target_group: args.target_group,
                targets: args.targets,
            },
        ),
        TargetGroupCommand::List(filter) => {
            list::<TargetGroup>(
                env,
                Action::ListTargetGroups {
                    filters: filter.filters()?,
                },
                &["ID", "NAME", "VPC", "PROTOCOL", "PORT", "TARGETS"],
                |g| {
                    vec![
                        g.item.id.clone(),
                        g.item.name.clone(),
                        g.item.vpc_id.clone(),
                        g.item.protocol.to_string(),
                        g.item.port.to_string(),
                        g.item.targets.len().to_string(),
                    ]
                },
            )?;
            Ok(())
        }
        TargetGroupCommand::Describe { target_group } => {
            describe::<TargetGroup>(env, Action::DescribeTargetGroup { target_group })
        }
        TargetGroupCommand::Health { target_group } => health(env, target_group),
        TargetGroupCommand::Delete { target_group } => {
            change::<TargetGroup>(env, Action::DeleteTargetGroup { target_group })
        }
    }
}

/// Prints each target's health: a table, or the targets as JSON.
fn health(env: &Env, target_group: String) -> Result<(), CliError> {
    let groups: Vec<Tagged<TargetGroup>> =
        env.records(Action::DescribeTargetGroup { target_group })?;
    let targets: Vec<_> = groups.into_iter().flat_map(|g| g.item.targets).collect();
    match env.format {
        Format::Json => output::json(&targets)?,
        Format::Table => output::table(
            &["INSTANCE", "PORT", "STATE", "REASON", "DESCRIPTION"],
            &targets
                .iter()
                .map(|t| {
                    vec![
                        t.instance_id.clone(),
                        t.port.to_string(),
                        t.state.to_string(),
                        t.reason.clone().unwrap_or_else(|| "-".into()),
                        t.description.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

//! `gureum asg`: Auto Scaling groups, kept at their size by the daemon.

use clap::{Args, Subcommand};

use gureum::cloud::api::Action;
use gureum::cloud::autoscaling::group::AutoScalingGroup;
use gureum::cloud::autoscaling::{GroupRequest, GroupUpdate};
use gureum::cloud::instance::Instance;

use super::cloud::{CliError, Env, FilterArgs, TagArgs, change, describe, list};

/// Auto Scaling groups: instances launched from a launch template into
/// one or more subnets, kept at the desired capacity by the daemon
/// (`gureum daemon`), replaced when they stop, crash or (health check
/// type ELB) fail their target groups' checks.
#[derive(Debug, Subcommand)]
pub enum AsgCommand {
    /// Create a group; the daemon launches its instances.
    Create(CreateArgs),
    /// List groups.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one group with its instances.
    Describe { group: String },
    /// Change a group's template, subnets, sizes or health checks.
    Update(UpdateArgs),
    /// Set how many instances the group keeps (within min and max).
    SetDesiredCapacity {
        group: String,
        #[arg(long)]
        desired: u32,
    },
    /// Protect instances from scale-in (or lift it with --off).
    SetProtection {
        group: String,
        /// An instance of the group: ID or Name tag (repeatable).
        #[arg(long = "instance", required = true)]
        instances: Vec<String>,
        /// Lift the protection.
        #[arg(long)]
        off: bool,
    },
    /// Terminate an instance of a group: replaced, unless --decrement
    /// lowers the desired capacity with it.
    TerminateInstance {
        instance: String,
        #[arg(long)]
        decrement: bool,
        /// Seconds the guest gets to shut down before its VMM is killed.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Attach target groups: the group's instances are registered.
    AttachTargetGroups(TargetGroupsArgs),
    /// Detach target groups: the group's instances are deregistered.
    DetachTargetGroups(TargetGroupsArgs),
    /// Add (or replace) a target-tracking policy on average CPU
    /// utilization: the daemon sets the desired capacity that brings it
    /// to the target.
    PutPolicy {
        group: String,
        /// The policy's name.
        #[arg(long)]
        name: String,
        /// The average CPU utilization to keep, in per cent (1-100).
        #[arg(long)]
        target_cpu: u16,
        /// Only ever scale out.
        #[arg(long)]
        disable_scale_in: bool,
    },
    /// Remove a scaling policy.
    DeletePolicy {
        group: String,
        #[arg(long)]
        name: String,
    },
    /// Delete a group; one with instances only with --force-delete.
    #[command(visible_alias = "rm")]
    Delete {
        group: String,
        /// Terminate its instances too (as AWS's ForceDelete).
        #[arg(long)]
        force_delete: bool,
        /// Seconds each guest gets to shut down before its VMM is killed.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Its name: unique, without ':'.
    #[arg(long)]
    name: String,
    /// The launch template: ID or name.
    #[arg(long)]
    template: String,
    /// The template's version: $Default, $Latest or 1.
    #[arg(long)]
    template_version: Option<String>,
    /// A subnet (ID or Name tag) to launch into, all of one VPC (repeatable).
    #[arg(long = "subnet", required = true)]
    subnets: Vec<String>,
    #[arg(long)]
    min: u32,
    #[arg(long)]
    max: u32,
    /// [default: the minimum]
    #[arg(long)]
    desired: Option<u32>,
    /// A target group (ID, name or ARN) its instances join (repeatable).
    #[arg(long = "target-group")]
    target_groups: Vec<String>,
    /// EC2 (the instance's state) or ELB (also its target health) [default: EC2].
    #[arg(long)]
    health_check_type: Option<String>,
    /// Seconds a new instance has before its health counts [default: 0].
    #[arg(long)]
    health_check_grace_period: Option<u32>,
    /// New instances start protected from scale-in.
    #[arg(long)]
    new_instances_protected: bool,
    #[command(flatten)]
    tags: TagArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    group: String,
    #[arg(long)]
    template: Option<String>,
    #[arg(long)]
    template_version: Option<String>,
    /// The subnets, replacing the group's (repeatable).
    #[arg(long = "subnet")]
    subnets: Vec<String>,
    #[arg(long)]
    min: Option<u32>,
    #[arg(long)]
    max: Option<u32>,
    #[arg(long)]
    desired: Option<u32>,
    #[arg(long)]
    health_check_type: Option<String>,
    #[arg(long)]
    health_check_grace_period: Option<u32>,
    /// Whether new instances start protected from scale-in.
    #[arg(long)]
    new_instances_protected: Option<bool>,
}

#[derive(Debug, Args)]
pub struct TargetGroupsArgs {
    group: String,
    /// A target group: ID, name or ARN (repeatable).
    #[arg(long = "target-group", required = true)]
    target_groups: Vec<String>,
}

pub fn run(env: &Env, command: AsgCommand) -> Result<(), CliError> {
    match command {
        AsgCommand::Create(args) => {
            let request = GroupRequest {
                name: args.name,
                launch_template: args.template,
                launch_template_version: args.template_version,
                subnets: args.subnets,
                min_size: args.min,
                max_size: args.max,
                desired_capacity: args.desired,
                target_groups: args.target_groups,
                health_check_type: args.health_check_type,
                health_check_grace_secs: args.health_check_grace_period,
                new_instances_protected: args.new_instances_protected,
                tags: args.tags.parse()?,
            };
            change::<AutoScalingGroup>(env, Action::CreateAutoScalingGroup { request })
        }
        AsgCommand::List(filter) => {
            list::<AutoScalingGroup>(
                env,
                Action::ListAutoScalingGroups {
                    filters: filter.filters()?,
                },
                &[
                    "ID",
                    "NAME",
                    "TEMPLATE",
                    "MIN",
                    "DESIRED",
                    "MAX",
                    "INSTANCES",
                    "HEALTH",
                ],
                |g| {
                    let g = &g.item;
                    vec![
                        g.id.clone(),
                        g.name.clone(),
                        g.launch_template_name.clone(),
                        g.min_size.to_string(),
                        g.desired_capacity.to_string(),
                        g.max_size.to_string(),
                        g.instances.len().to_string(),
                        g.health_check_type.to_string(),
                    ]
                },
            )?;
            Ok(())
        }
        AsgCommand::Describe { group } => {
            describe::<AutoScalingGroup>(env, Action::DescribeAutoScalingGroup { group })
        }
        AsgCommand::Update(args) => {
            let update = GroupUpdate {
                launch_template: args.template,
                launch_template_version: args.template_version,
                subnets: (!args.subnets.is_empty()).then_some(args.subnets),
                min_size: args.min,
                max_size: args.max,
                desired_capacity: args.desired,
                health_check_type: args.health_check_type,
                health_check_grace_secs: args.health_check_grace_period,
                new_instances_protected: args.new_instances_protected,
            };
            change::<AutoScalingGroup>(
                env,
                Action::UpdateAutoScalingGroup {
                    group: args.group,
                    change: update,
                },
            )
        }
        AsgCommand::SetDesiredCapacity { group, desired } => {
            change::<AutoScalingGroup>(env, Action::SetDesiredCapacity { group, desired })
        }
        AsgCommand::SetProtection {
            group,
            instances,
            off,
        } => change::<AutoScalingGroup>(
            env,
            Action::SetInstanceProtection {
                group,
                instances,
                protected: !off,
            },
        ),
        AsgCommand::TerminateInstance {
            instance,
            decrement,
            timeout,
        } => change::<Instance>(
            env,
            Action::TerminateInstanceInAutoScalingGroup {
                instance,
                decrement,
                timeout_secs: timeout,
            },
        ),
        AsgCommand::PutPolicy {
            group,
            name,
            target_cpu,
            disable_scale_in,
        } => change::<AutoScalingGroup>(
            env,
            Action::PutScalingPolicy {
                group,
                name,
                target_cpu,
                disable_scale_in,
            },
        ),
        AsgCommand::DeletePolicy { group, name } => {
            change::<AutoScalingGroup>(env, Action::DeleteScalingPolicy { group, name })
        }
        AsgCommand::AttachTargetGroups(args) => target_groups(env, args, true),
        AsgCommand::DetachTargetGroups(args) => target_groups(env, args, false),
        AsgCommand::Delete {
            group,
            force_delete,
            timeout,
        } => change::<AutoScalingGroup>(
            env,
            Action::DeleteAutoScalingGroup {
                group,
                force: force_delete,
                timeout_secs: timeout,
            },
        ),
    }
}

fn target_groups(env: &Env, args: TargetGroupsArgs, attach: bool) -> Result<(), CliError> {
    change::<AutoScalingGroup>(
        env,
        Action::ChangeAutoScalingTargetGroups {
            group: args.group,
            target_groups: args.target_groups,
            attach,
        },
    )
}

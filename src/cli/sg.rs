//! `gureum sg`: security groups.

use clap::{Args, Subcommand};

use gureum::cloud::api::Action;
use gureum::cloud::vpc::security_group::{Direction, RuleRequest, SecurityGroup};
use gureum::net::cidr::Ipv4Cidr;
use gureum::net::nft::security_group::Protocol;

use super::cloud::{CliError, Env, FilterArgs, TagArgs, change, describe, list};

/// Security groups: stateful allow-only firewalls on instances.
#[derive(Debug, Subcommand)]
pub enum SgCommand {
    /// Create a group: no inbound, all outbound allowed.
    Create {
        /// The VPC: ID or Name tag.
        #[arg(long)]
        vpc: String,
        /// The group's name, unique in its VPC (also its Name tag).
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// List security groups.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one group with its rules.
    Describe { group: String },
    /// Delete a group no instance is in and no rule names.
    #[command(visible_alias = "rm")]
    Delete { group: String },
    /// Allow inbound traffic.
    AuthorizeIngress(RuleArgs),
    /// Allow outbound traffic.
    AuthorizeEgress(RuleArgs),
    /// Remove an inbound rule.
    RevokeIngress(RuleArgs),
    /// Remove an outbound rule (revoking the default allow-all denies
    /// everything outbound).
    RevokeEgress(RuleArgs),
}

/// One rule: protocol, ports, and whom it is about.
#[derive(Debug, Args)]
pub struct RuleArgs {
    group: String,
    /// tcp, udp, icmp or all.
    #[arg(long, value_parser = parse_protocol)]
    protocol: Protocol,
    /// A port or range for tcp and udp: 22 or 8000-8100 [default: all].
    #[arg(long, value_name = "PORT[-PORT]")]
    port: Option<String>,
    /// The peer's block.
    #[arg(
        long,
        required_unless_present = "source_group",
        conflicts_with = "source_group"
    )]
    cidr: Option<Ipv4Cidr>,
    /// The peer group: its members' addresses.
    #[arg(long, value_name = "SG")]
    source_group: Option<String>,
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    serde_json::from_value(serde_json::Value::String(text.to_lowercase()))
        .map_err(|_| "expected tcp, udp, icmp or all".into())
}

pub fn run(env: &Env, command: SgCommand) -> Result<(), CliError> {
    let (args, direction, add) = match command {
        SgCommand::Create {
            vpc,
            name,
            description,
            tags,
        } => {
            let tags = tags.named(&name)?;
            return change::<SecurityGroup>(
                env,
                Action::CreateSecurityGroup {
                    vpc,
                    name,
                    description,
                    tags,
                },
            );
        }
        SgCommand::List(filter) => {
            list::<SecurityGroup>(
                env,
                Action::ListSecurityGroups {
                    filters: filter.filters()?,
                },
                &["ID", "NAME", "VPC", "INBOUND", "OUTBOUND", "DESCRIPTION"],
                |g| {
                    vec![
                        g.item.id.clone(),
                        g.item.group_name.clone(),
                        g.item.vpc_id.clone(),
                        g.item.inbound.len().to_string(),
                        g.item.outbound.len().to_string(),
                        g.item.description.clone(),
                    ]
                },
            )?;
            return Ok(());
        }
        SgCommand::Describe { group } => {
            return describe::<SecurityGroup>(env, Action::DescribeSecurityGroup { group });
        }
        SgCommand::Delete { group } => {
            return change::<SecurityGroup>(env, Action::DeleteSecurityGroup { group });
        }
        SgCommand::AuthorizeIngress(rule) => (rule, Direction::Ingress, true),
        SgCommand::AuthorizeEgress(rule) => (rule, Direction::Egress, true),
        SgCommand::RevokeIngress(rule) => (rule, Direction::Ingress, false),
        SgCommand::RevokeEgress(rule) => (rule, Direction::Egress, false),
    };
    let group = args.group;
    let rule = RuleRequest {
        protocol: args.protocol,
        ports: args.port,
        cidr: args.cidr,
        source_group: args.source_group,
    };
    let action = if add {
        Action::AuthorizeSecurityGroupRule {
            group,
            direction,
            rule,
        }
    } else {
        Action::RevokeSecurityGroupRule {
            group,
            direction,
            rule,
        }
    };
    change::<SecurityGroup>(env, action)
}

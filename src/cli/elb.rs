//! `gureum elb`: network and application load balancers, their
//! listeners and an application balancer's listener rules.

use clap::{Args, Subcommand};
use serde::Serialize;

use gureum::cloud::api::{Action, Tagged};
use gureum::cloud::elb::load_balancer::{BalancerType, LoadBalancer, Scheme};
use gureum::cloud::elb::rule::Condition;
use gureum::cloud::elb::{BalancerRequest, ListenerRuleRequest};

use super::cloud::{CliError, Env, FilterArgs, TagArgs, change, describe, list};
use super::output::{self, Format};

/// Load balancers: an address in each of their subnets (and one from the
/// public pool when internet-facing) whose listeners spread new flows
/// (network) or HTTP requests (application, by rules) over a target
/// group's healthy targets.
#[derive(Debug, Subcommand)]
pub enum ElbCommand {
    /// Create a load balancer.
    Create {
        /// Its name: 1 to 32 letters, digits and '-', unique.
        #[arg(long)]
        name: String,
        /// A subnet (ID or Name tag), one per availability zone (repeatable).
        #[arg(long = "subnet", required = true)]
        subnets: Vec<String>,
        /// A security group of its ports (repeatable) [default: the VPC's default].
        #[arg(long = "sg")]
        security_groups: Vec<String>,
        /// internal, or internet-facing (an address from the public pool).
        #[arg(long, default_value = "internal", value_parser = parse_scheme)]
        scheme: Scheme,
        /// network (L4 flows) or application (an HTTP proxy with rules).
        #[arg(long = "type", default_value = "network", value_parser = parse_type)]
        balancer_type: BalancerType,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// List load balancers.
    #[command(visible_alias = "ls")]
    List(FilterArgs),
    /// Show one load balancer with its addresses and listeners.
    Describe { load_balancer: String },
    /// Delete a load balancer and its listeners.
    #[command(visible_alias = "rm")]
    Delete { load_balancer: String },
    /// Listeners: a protocol and port whose flows go to a target group.
    #[command(subcommand)]
    Listener(ListenerCommand),
    /// An application load balancer's listener rules: requests matching
    /// a rule's path and host patterns go to its target group.
    #[command(subcommand)]
    Rule(RuleCommand),
}

#[derive(Debug, Subcommand)]
pub enum ListenerCommand {
    /// Send flows (or requests no rule takes) to a port of the load
    /// balancer to a target group.
    Create {
        load_balancer: String,
        /// tcp or udp (network), http (application) [default: tcp, or http
        /// on an application load balancer].
        #[arg(long)]
        protocol: Option<String>,
        #[arg(long)]
        port: u16,
        /// The target group: ID or name.
        #[arg(long)]
        target_group: String,
    },
    /// Remove a listener, named by its port, ID or ARN.
    #[command(visible_alias = "rm")]
    Delete {
        load_balancer: String,
        listener: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule to a listener; prints the rule's ID.
    Create {
        load_balancer: String,
        /// The listener: its port, ID or ARN.
        #[arg(long)]
        listener: String,
        /// 1 to 50000, unique in the listener; the lowest matching goes first.
        #[arg(long)]
        priority: u32,
        #[command(flatten)]
        conditions: ConditionArgs,
        /// Where matching requests go: a target group's ID or name.
        #[arg(long)]
        target_group: String,
    },
    /// List the rules of every listener, by priority, with their defaults.
    #[command(visible_alias = "ls")]
    List { load_balancer: String },
    /// Change a rule's conditions (any given replace all of them), target
    /// group or priority.
    Modify {
        load_balancer: String,
        /// Its ID or ARN.
        rule: String,
        #[command(flatten)]
        conditions: ConditionArgs,
        #[arg(long)]
        target_group: Option<String>,
        /// Its new priority.
        #[arg(long)]
        priority: Option<u32>,
    },
    /// Remove a rule, named by its ID or ARN.
    #[command(visible_alias = "rm")]
    Delete { load_balancer: String, rule: String },
}

/// A rule's conditions: every given field must match, any of its values.
#[derive(Debug, Args)]
pub struct ConditionArgs {
    /// A path pattern, `*` and `?` wildcards, case-sensitive (repeatable).
    #[arg(long = "path")]
    paths: Vec<String>,
    /// A host pattern, `*` and `?` wildcards, any case (repeatable).
    #[arg(long = "host")]
    hosts: Vec<String>,
}

impl ConditionArgs {
    fn request(self, target_group: Option<String>) -> ListenerRuleRequest {
        ListenerRuleRequest {
            paths: self.paths,
            hosts: self.hosts,
            target_group,
        }
    }
}

fn parse_scheme(text: &str) -> Result<Scheme, String> {
    Scheme::parse(text).map_err(|e| e.to_string())
}

fn parse_type(text: &str) -> Result<BalancerType, String> {
    BalancerType::parse(text).map_err(|e| e.to_string())
}

/// One rule as `elb rule list` shows it.
#[derive(Debug, Serialize)]
struct ShownRule {
    listener_port: u16,
    id: String,
    arn: String,
    /// A number, or "default".
    priority: String,
    conditions: Vec<Condition>,
    target_group_id: String,
}

/// Every rule of `balancer`'s listeners, by port and priority, each
/// listener's default last.
fn shown_rules(balancer: &LoadBalancer) -> Vec<ShownRule> {
    let mut shown = Vec::new();
    for listener in &balancer.listeners {
        let mut rules: Vec<_> = listener.rules.iter().collect();
        rules.sort_by_key(|r| r.priority);
        shown.extend(rules.into_iter().map(|r| ShownRule {
            listener_port: listener.port,
            id: r.id.clone(),
            arn: r.arn.clone(),
            priority: r.priority.to_string(),
            conditions: r.conditions.clone(),
            target_group_id: r.target_group_id.clone(),
        }));
        shown.push(ShownRule {
            listener_port: listener.port,
            id: "default".into(),
            arn: listener.default_rule_arn(),
            priority: "default".into(),
            conditions: Vec::new(),
            target_group_id: listener.target_group_id.clone(),
        });
    }
    shown
}

fn one_balancer(env: &Env, action: Action) -> Result<Tagged<LoadBalancer>, CliError> {
    env.records::<LoadBalancer>(action)?
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Unexpected("no load balancer".into()))
}

fn rule_command(env: &Env, command: RuleCommand) -> Result<(), CliError> {
    match command {
        RuleCommand::Create {
            load_balancer,
            listener,
            priority,
            conditions,
            target_group,
        } => {
            let made = one_balancer(
                env,
                Action::CreateRule {
                    load_balancer,
                    listener: listener.clone(),
                    priority,
                    request: conditions.request(Some(target_group)),
                },
            )?;
            // The new rule has that priority, unique in its listener.
            let port = made
                .item
                .listeners
                .iter()
                .find(|l| l.id == listener || l.arn == listener || l.port.to_string() == listener)
                .map(|l| l.port);
            for rule in shown_rules(&made.item) {
                if Some(rule.listener_port) == port && rule.priority == priority.to_string() {
                    println!("{}", rule.id);
                }
            }
            Ok(())
        }
        RuleCommand::List { load_balancer } => {
            let found = one_balancer(env, Action::DescribeLoadBalancer { load_balancer })?;
            let rules = shown_rules(&found.item);
            match env.format {
                Format::Json => output::json(&rules)?,
                Format::Table => output::table(
                    &["PORT", "RULE", "PRIORITY", "CONDITIONS", "TARGET GROUP"],
                    &rules
                        .iter()
                        .map(|r| {
                            let conditions: Vec<String> = r
                                .conditions
                                .iter()
                                .map(|c| format!("{}={}", c.field.as_str(), c.values.join(",")))
                                .collect();
                            vec![
                                r.listener_port.to_string(),
                                r.id.clone(),
                                r.priority.clone(),
                                if conditions.is_empty() {
                                    "-".into()
                                } else {
                                    conditions.join(" ")
                                },
                                r.target_group_id.clone(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
        RuleCommand::Modify {
            load_balancer,
            rule,
            conditions,
            target_group,
            priority,
        } => {
            let request = conditions.request(target_group);
            if !request.paths.is_empty()
                || !request.hosts.is_empty()
                || request.target_group.is_some()
            {
                change::<LoadBalancer>(
                    env,
                    Action::ModifyRule {
                        load_balancer: load_balancer.clone(),
                        rule: rule.clone(),
                        request,
                    },
                )?;
            }
            if let Some(priority) = priority {
                change::<LoadBalancer>(
                    env,
                    Action::SetRulePriorities {
                        load_balancer,
                        priorities: vec![(rule, priority)],
                    },
                )?;
            }
            Ok(())
        }
        RuleCommand::Delete {
            load_balancer,
            rule,
        } => change::<LoadBalancer>(
            env,
            Action::DeleteRule {
                load_balancer,
                rule,
            },
        ),
    }
}

pub fn run(env: &Env, command: ElbCommand) -> Result<(), CliError> {
    match command {
        ElbCommand::Create {
            name,
            subnets,
            security_groups,
            scheme,
            balancer_type,
            tags,
        } => {
            let request = BalancerRequest {
                name,
                subnets,
                security_groups,
                scheme,
                balancer_type,
                tags: tags.parse()?,
            };
            change::<LoadBalancer>(env, Action::CreateLoadBalancer { request })
        }
        ElbCommand::List(filter) => {
            list::<LoadBalancer>(
                env,
                Action::ListLoadBalancers {
                    filters: filter.filters()?,
                },
                &[
                    "ID",
                    "NAME",
                    "TYPE",
                    "SCHEME",
                    "VPC",
                    "ADDRESSES",
                    "LISTENERS",
                ],
                |b| {
                    let addresses: Vec<String> = b
                        .item
                        .ports
                        .iter()
                        .map(|p| p.private_ip.to_string())
                        .chain(b.item.public_ip.map(|a| a.to_string()))
                        .collect();
                    let listeners: Vec<String> = b
                        .item
                        .listeners
                        .iter()
                        .map(|l| format!("{}:{}", l.protocol, l.port))
                        .collect();
                    vec![
                        b.item.id.clone(),
                        b.item.name.clone(),
                        b.item.balancer_type.as_str().into(),
                        match b.item.scheme {
                            Scheme::Internal => "internal".into(),
                            Scheme::InternetFacing => "internet-facing".into(),
                        },
                        b.item.vpc_id.clone(),
                        addresses.join(","),
                        if listeners.is_empty() {
                            "-".into()
                        } else {
                            listeners.join(",")
                        },
                    ]
                },
            )?;
            Ok(())
        }
        ElbCommand::Describe { load_balancer } => {
            describe::<LoadBalancer>(env, Action::DescribeLoadBalancer { load_balancer })
        }
        ElbCommand::Delete { load_balancer } => {
            change::<LoadBalancer>(env, Action::DeleteLoadBalancer { load_balancer })
        }
        ElbCommand::Listener(ListenerCommand::Create {
            load_balancer,
            protocol,
            port,
            target_group,
        }) => change::<LoadBalancer>(
            env,
            Action::CreateListener {
                load_balancer,
                protocol,
                port,
                target_group,
            },
        ),
        ElbCommand::Listener(ListenerCommand::Delete {
            load_balancer,
            listener,
        }) => change::<LoadBalancer>(
            env,
            Action::DeleteListener {
                load_balancer,
                listener,
            },
        ),
        ElbCommand::Rule(command) => rule_command(env, command),
    }
}

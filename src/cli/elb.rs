//! `gureum elb`: network load balancers and their listeners.

use clap::Subcommand;

use gureum::cloud::api::Action;
use gureum::cloud::elb::BalancerRequest;
use gureum::cloud::elb::load_balancer::{LoadBalancer, Scheme};

use super::cloud::{CliError, Env, FilterArgs, TagArgs, change, describe, list};

/// Network load balancers: an address in each of their subnets (and one
/// from the public pool when internet-facing) whose listeners spread new
/// flows over a target group's healthy targets.
#[derive(Debug, Subcommand)]
pub enum ElbCommand {
    /// Create a network load balancer.
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
}

#[derive(Debug, Subcommand)]
pub enum ListenerCommand {
    /// Send flows to a port of the load balancer to a target group.
    Create {
        load_balancer: String,
        /// tcp or udp (the target group's).
        #[arg(long, default_value = "tcp")]
        protocol: String,
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

fn parse_scheme(text: &str) -> Result<Scheme, String> {
    Scheme::parse(text).map_err(|e| e.to_string())
}

pub fn run(env: &Env, command: ElbCommand) -> Result<(), CliError> {
    match command {
        ElbCommand::Create {
            name,
            subnets,
            security_groups,
            scheme,
            tags,
        } => {
            let request = BalancerRequest {
                name,
                subnets,
                security_groups,
                scheme,
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
                &["ID", "NAME", "SCHEME", "VPC", "ADDRESSES", "LISTENERS"],
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
    }
}

//! Load balancers as stored: a network or application load balancer in
//! some of a VPC's subnets (a port in each), with security groups, a
//! scheme, and its listeners (an application one's with rules).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cloud::ids::Kind;
use crate::cloud::store::Resource;
use crate::cloud::vpc::InVpc;
use crate::host::mac::MacAddr;
use crate::net::elb;
use crate::net::port::Port;

use super::rule::Rule;
use super::target_group::TrafficProtocol;

/// Who reaches a load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Its private addresses only, from inside the VPC.
    Internal,
    /// Also an address from the public pool, through the VPC's internet
    /// gateway.
    InternetFacing,
}

impl Scheme {
    pub fn parse(text: &str) -> Result<Self, super::Error> {
        match text {
            "internal" => Ok(Self::Internal),
            "internet-facing" => Ok(Self::InternetFacing),
            _ => Err(super::Error::Scheme(text.to_owned())),
        }
    }
}

/// The kind of load balancer (ELBv2's `Type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerType {
    /// L4: flows translated in the VPC's datapath (`net::elb`).
    #[default]
    Network,
    /// L7: HTTP requests proxied by the daemon from the balancer's
    /// namespace (`daemon::proxy`), by listener rules.
    Application,
}

impl BalancerType {
    pub fn parse(text: &str) -> Result<Self, super::Error> {
        match text {
            "network" => Ok(Self::Network),
            "application" => Ok(Self::Application),
            _ => Err(super::Error::BalancerType(text.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Application => "application",
        }
    }

    /// What its ARNs say of it: `loadbalancer/net/…`, `listener/app/…`.
    pub fn arn_part(self) -> &'static str {
        match self {
            Self::Network => "net",
            Self::Application => "app",
        }
    }
}

/// The load balancer's place in one subnet: a port like an instance's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancerPort {
    pub subnet_id: String,
    pub private_ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Its link in the VPC namespace.
    pub link: String,
}

/// A listener: flows (or, on an application balancer, requests no rule
/// takes) to `port` go to target group `target_group_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// 16 hex digits, the last part of its ARN.
    pub id: String,
    pub arn: String,
    pub protocol: TrafficProtocol,
    pub port: u16,
    pub target_group_id: String,
    /// An application balancer's listener rules, in no particular order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Listener {
    /// The target groups it forwards to: its default's and its rules'.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.target_group_id.as_str())
            .chain(self.rules.iter().map(|r| r.target_group_id.as_str()))
    }

    /// The ARN of its rule `hex`: `listener-rule/…/LISTENER/HEX`.
    pub fn rule_arn(&self, hex: &str) -> String {
        format!(
            "{}/{hex}",
            self.arn.replacen(":listener/", ":listener-rule/", 1)
        )
    }

    /// The ARN of its default rule (ELBv2's DescribeRules lists it).
    pub fn default_rule_arn(&self) -> String {
        self.rule_arn("default")
    }
}

/// A load balancer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub dns_name: String,
    #[serde(rename = "type", default)]
    pub balancer_type: BalancerType,
    pub scheme: Scheme,
    pub vpc_id: String,
    /// The network namespace its addresses and health checks live in.
    pub netns: String,
    pub ports: Vec<BalancerPort>,
    pub security_groups: Vec<String>,
    /// Its public address, when internet-facing.
    pub public_ip: Option<Ipv4Addr>,
    pub listeners: Vec<Listener>,
    pub created: String,
}

impl Resource for LoadBalancer {
    const KIND: Kind = Kind::LoadBalancer;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl InVpc for LoadBalancer {
    fn vpc_id(&self) -> Option<&str> {
        Some(&self.vpc_id)
    }
}

impl LoadBalancer {
    /// Its ports as the VPC's realisation takes them.
    pub fn realised_ports(&self) -> Vec<Port> {
        self.ports
            .iter()
            .enumerate()
            .map(|(index, port)| Port {
                id: format!("{}-{index}", self.id),
                link: port.link.clone(),
                subnet: port.subnet_id.clone(),
                mac: port.mac,
                ip: port.private_ip,
                groups: self.security_groups.clone(),
                source_dest_check: true,
            })
            .collect()
    }

    /// Whether a listener (or one of its rules) sends to target group
    /// `group`.
    pub fn uses(&self, group: &str) -> bool {
        self.listeners
            .iter()
            .any(|l| l.groups().any(|g| g == group))
    }

    /// Its port in `subnet` number `index`, for a new balancer.
    pub fn port(id: &str, index: usize, subnet: &str, address: Ipv4Addr) -> BalancerPort {
        BalancerPort {
            subnet_id: subnet.to_owned(),
            private_ip: address,
            mac: elb::mac(id, index),
            link: elb::link_name(id, index),
        }
    }
}

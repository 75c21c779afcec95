//! Load balancers as stored: a network load balancer in some of a VPC's
//! subnets (a port in each), with security groups, a scheme, and its
//! listeners.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cloud::ids::Kind;
use crate::cloud::store::Resource;
use crate::cloud::vpc::InVpc;
use crate::host::mac::MacAddr;
use crate::net::elb;
use crate::net::port::Port;

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

/// The kind of load balancer (ELBv2's `Type`): network only, for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerType {
    Network,
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

/// A listener: flows to `port` go to target group `target_group_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// 16 hex digits, the last part of its ARN.
    pub id: String,
    pub arn: String,
    pub protocol: TrafficProtocol,
    pub port: u16,
    pub target_group_id: String,
}

/// A load balancer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub dns_name: String,
    #[serde(rename = "type")]
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

    /// Whether a listener sends flows to target group `group`.
    pub fn uses(&self, group: &str) -> bool {
        self.listeners.iter().any(|l| l.target_group_id == group)
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

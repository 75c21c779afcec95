//! An instance's place in a VPC: its subnet, private address, MAC, groups
//! and the tap that is its port on the subnet's bridge.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cloud::instance::{Instance, State};
use crate::cloud::store::{self, Store, Tx};
use crate::cloud::{self, lookup};
use crate::host::mac::MacAddr;
use crate::host::netns::Netns;
use crate::net::cidr;
use crate::net::port::Port;
use crate::vmm::devices::virtio::net::Tap;

use super::elastic_ip::ElasticIp;
use super::gateway::{InternetGateway, public_addresses};
use super::network::Vpc;
use super::public::NetConfig;
use super::security_group::SecurityGroup;
use super::subnet::Subnet;
use super::{Error, realise, same_vpc};

/// Where an instance is in a VPC, as stored in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub vpc_id: String,
    pub subnet_id: String,
    pub private_ip: Ipv4Addr,
    pub mac: MacAddr,
    /// The persistent tap in the VPC namespace.
    pub tap: String,
    pub security_groups: Vec<String>,
    pub source_dest_check: bool,
    /// The elastic IP associated with it, kept with the eip's record.
    #[serde(default)]
    pub elastic_ip: Option<Ipv4Addr>,
    /// Whether it has a public address from the pool whenever it is not
    /// stopped and has no elastic IP (EC2's AssociatePublicIpAddress,
    /// from its subnet's MapPublicIpOnLaunch unless the launch said):
    /// decided at launch.
    #[serde(default)]
    pub auto_public_ip: bool,
    /// That address now: given at launch and start (and when its elastic
    /// IP is taken off), released at stop and terminate (and when an
    /// elastic IP is associated), each in the change that does so.
    #[serde(default)]
    pub public_ip: Option<Ipv4Addr>,
}

impl Placement {
    /// The public address it is reached at: its elastic IP, or the one it
    /// was given (EC2's PublicIpAddress).
    pub fn public_address(&self) -> Option<Ipv4Addr> {
        self.elastic_ip.or(self.public_ip)
    }

    /// Gives it an address from the pool if it should have one and has
    /// none; says whether it did. None is given in a VPC without an
    /// internet gateway: there the address would be realised nowhere
    /// (it is a 1:1 mapping at the gateway); the next start gives one
    /// once a gateway is attached.
    pub fn give_public_ip(
        &mut self,
        tx: &Tx<'_>,
        config: &NetConfig,
    ) -> Result<bool, cloud::Error> {
        if !self.auto_public_ip || self.public_address().is_some() {
            return Ok(false);
        }
        if super::in_vpc::<InternetGateway>(tx, &self.vpc_id)?.is_empty() {
            return Ok(false);
        }
        self.public_ip = Some(config.allocate(&public_addresses(tx)?)?);
        Ok(true)
    }

    /// The port instance `id` is, as the realisation takes it.
    pub fn port(&self, id: &str) -> Port {
        Port {
            id: id.to_owned(),
            link: self.tap.clone(),
            subnet: self.subnet_id.clone(),
            mac: self.mac,
            ip: self.private_ip,
            groups: self.security_groups.clone(),
            source_dest_check: self.source_dest_check,
        }
    }
}

/// The instances with a port in VPC `vpc`, with their placements. A
/// placement is cleared when its port is removed (`release`, at
/// terminate), so this is what Linux holds.
pub fn instances_in(tx: &Tx<'_>, vpc: &str) -> Result<Vec<(String, Placement)>, store::Error> {
    Ok(tx
        .list::<Instance>()?
        .into_iter()
        .filter_map(|i| Some((i.id, i.placement?)))
        .filter(|(_, p)| p.vpc_id == vpc)
        .collect())
}

/// The place in a VPC a launch asks for (`--subnet`, `--sg`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// The subnet: ID or Name tag [default: the default VPC's default
    /// subnet, made on first use (`super::default`)].
    pub subnet: Option<String>,
    /// Security groups (ID or Name tag) [default: the VPC's default one].
    pub groups: Vec<String>,
    /// A chosen free address [default: the lowest free one].
    pub private_ip: Option<Ipv4Addr>,
    pub source_dest_check: bool,
    /// A public address from the pool, or none [default: as the subnet's
    /// MapPublicIpOnLaunch says].
    #[serde(default)]
    pub associate_public_ip: Option<bool>,
}

impl Default for PlacementRequest {
    /// The default subnet, its VPC's default group, the lowest free
    /// address: where EC2 puts a launch that names no network.
    fn default() -> Self {
        Self {
            subnet: None,
            groups: Vec::new(),
            private_ip: None,
            source_dest_check: true,
            associate_public_ip: None,
        }
    }
}

/// Where an instance was placed, and what its guest needs to know.
#[derive(Debug, Clone)]
pub struct Placed {
    pub placement: Placement,
    /// The VPC namespace the tap is in.
    pub netns: String,
    pub prefix_len: u8,
    pub router: Ipv4Addr,
}

/// What every instance tap's name starts with.
pub const TAP_PREFIX: &str = "t-";

/// The tap of instance `id`: "t-" and the end of its ID, to fit an
/// interface name; unique in its VPC (13 random hex digits).
pub fn tap_name(id: &str) -> String {
    let tail = id.get(id.len().saturating_sub(13)..).unwrap_or(id);
    format!("{TAP_PREFIX}{tail}")
}

/// Places instance `id` in subnet `subnet` (ID or Name tag; the request's
/// own is resolved by the launch): picks its address, its public address
/// from `config`'s pool if it gets one, and its tap's name, in the
/// records of `tx`. The tap (persistent: it is the instance's port
/// until terminate, over stops and starts) is made and filtered when the
/// VPC is converged after the commit, before any VMM opens it.
pub fn place(
    tx: &Tx<'_>,
    id: &str,
    mac: MacAddr,
    subnet: &str,
    request: &PlacementRequest,
    config: &NetConfig,
) -> Result<Placed, cloud::Error> {
    let subnet: Subnet = lookup::find_tagged(tx, subnet, |_| true)?;
    let vpc: Vpc = lookup::find(tx, &subnet.vpc_id)?;
    let mut groups = groups_in(tx, &vpc.id, &request.groups)?;
    if groups.is_empty() {
        groups.push(vpc.default_security_group.clone());
    }
    let mut used: BTreeSet<Ipv4Addr> = instances_in(tx, &vpc.id)?
        .into_iter()
        .map(|(_, p)| p.private_ip)
        .collect();
    // Load balancers' ports hold addresses of the subnet too.
    used.extend(crate::cloud::elb::addresses_in(tx, &vpc.id)?);
    let ip = cidr::allocate(subnet.cidr, &used, request.private_ip).map_err(Error::from)?;
    let mut placement = Placement {
        vpc_id: vpc.id.clone(),
        subnet_id: subnet.id.clone(),
        private_ip: ip,
        mac,
        tap: tap_name(id),
        security_groups: groups,
        source_dest_check: request.source_dest_check,
        elastic_ip: None,
        auto_public_ip: request
            .associate_public_ip
            .unwrap_or(subnet.map_public_ip_on_launch),
        public_ip: None,
    };
    // Asked for in so many words, an address that cannot be given is an
    // error; the subnet's default just gives none without a gateway.
    if !placement.give_public_ip(tx, config)? && request.associate_public_ip == Some(true) {
        return Err(Error::NoGatewayForPublicIp { vpc: vpc.id }.into());
    }
    Ok(Placed {
        placement,
        netns: vpc.netns,
        prefix_len: subnet.cidr.prefix(),
        router: subnet.router,
    })
}

/// The IDs of security groups `references` (ID, group name in VPC `vpc`
/// as EC2's GroupName is, so `default` is the VPC's own, or Name tag), in
/// order, each once; every one must be a group of VPC `vpc`.
pub(crate) fn groups_in(
    tx: &Tx<'_>,
    vpc: &str,
    references: &[String],
) -> Result<Vec<String>, cloud::Error> {
    let in_this_vpc = super::in_vpc::<SecurityGroup>(tx, vpc)?;
    let mut groups = Vec::new();
    for reference in references {
        let group = match in_this_vpc.iter().find(|g| g.group_name == *reference) {
            Some(named) => named.clone(),
            None => lookup::find_tagged(tx, reference, |g: &SecurityGroup| g.vpc_id == vpc)?,
        };
        same_vpc("security group", &group.id, &group.vpc_id, vpc)?;
        if !groups.contains(&group.id) {
            groups.push(group.id);
        }
    }
    Ok(groups)
}

/// Makes persistent tap `name` in the VPC's namespace `netns`.
pub fn make_tap(netns: &Netns, name: &str) -> Result<(), Error> {
    netns
        .run(|| Tap::open(name)?.set_persistent(true))?
        .map_err(Error::Tap)
}

/// Takes a terminated instance out of its VPC: its elastic IP off it and
/// its placement cleared; converging the VPC then removes its port and
/// tap.
pub fn release(store: &mut Store, config: &NetConfig, id: &str) -> Result<(), cloud::Error> {
    realise::change(store, config, |tx| {
        let Some(mut instance) = tx.get::<Instance>(id)? else {
            return Ok(((), Vec::new()));
        };
        let Some(placement) = instance.placement.take() else {
            return Ok(((), Vec::new()));
        };
        for mut eip in tx.list::<ElasticIp>()? {
            if eip.instance_id.as_deref() == Some(id) {
                eip.instance_id = None;
                tx.update(&eip)?;
            }
        }
        crate::cloud::elb::forget_instance(tx, id)?;
        tx.update(&instance)?;
        Ok(((), vec![placement.vpc_id]))
    })
}

/// What `gureum instance modify` changes; `None` keeps what is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortChange {
    /// The security groups (ID or Name tag) that replace the instance's,
    /// as AWS's `--groups` does.
    pub groups: Option<Vec<String>>,
    pub source_dest_check: Option<bool>,
}

/// Changes the security groups and source/destination check of instance
/// `reference`, running or stopped: its record and its VPC's firewall
/// together, or neither. The port is filtered anew at once.
pub fn modify(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    change: &PortChange,
) -> Result<Instance, cloud::Error> {
    realise::change(store, config, |tx| {
        let mut instance = lookup::find_instance(tx, reference)?;
        if matches!(instance.state, State::ShuttingDown | State::Terminated) {
            return Err(cloud::Error::LeavingVpc {
                id: instance.id,
                state: instance.state,
            });
        }
        let id = instance.id.clone();
        let Some(placement) = instance.placement.as_mut() else {
            return Err(Error::NotInSubnet {
                instance: id,
                what: "security groups and the source/destination check belong to a VPC port",
            }
            .into());
        };
        let groups = match &change.groups {
            Some(references) => Some(groups_in(tx, &placement.vpc_id, references)?),
            None => None,
        };
        if let Some(groups) = groups {
            placement.security_groups = groups;
        }
        if let Some(on) = change.source_dest_check {
            placement.source_dest_check = on;
        }
        let vpc = placement.vpc_id.clone();
        tx.update(&instance)?;
        Ok((instance, vec![vpc]))
    })
}

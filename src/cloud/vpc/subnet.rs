//! Subnets: a block of their VPC's, realised as a bridge holding the
//! router address (.1); the first four and the last address are reserved.

use serde::{Deserialize, Serialize};

use crate::cloud::ids::{self, Kind};
use crate::cloud::store::{Store, Tx};
use crate::cloud::tags::Tags;
use crate::cloud::{self, lookup};
use crate::net::cidr::{self, Ipv4Cidr};
use crate::net::port::Port;

use super::network::Vpc;
use super::port;
use super::public::NetConfig;
use super::route_table;
use super::{Error, realise};

/// The zone of this host: one host is one zone.
pub const DEFAULT_ZONE: &str = "local-1a";

/// A subnet as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: Ipv4Cidr,
    pub availability_zone: String,
    /// The subnet's router, the instances' gateway (the .1).
    pub router: std::net::Ipv4Addr,
    /// How many addresses instances can hold in it.
    pub capacity: u32,
    pub created: String,
    /// The default VPC's subnet of its zone, where launches that name no
    /// subnet go (EC2's DefaultForAz).
    #[serde(default)]
    pub default_for_az: bool,
    /// Whether its instances get a public address from the pool at launch
    /// unless the launch says otherwise (EC2's MapPublicIpOnLaunch): true
    /// in the default subnet, false in created ones.
    #[serde(default)]
    pub map_public_ip_on_launch: bool,
}

vpc_record!(Subnet, Kind::Subnet, in_vpc);

impl Subnet {
    /// A new subnet `block` of VPC `vpc`, not yet stored.
    pub fn new(vpc: &str, block: Ipv4Cidr, zone: &str) -> Result<Self, cloud::Error> {
        let router = cidr::router(block).ok_or(Error::Cidr(cidr::Error::Full {
            subnet: block,
            capacity: 0,
        }))?;
        Ok(Self {
            id: ids::new_id(Kind::Subnet)?,
            vpc_id: vpc.to_owned(),
            cidr: block,
            availability_zone: zone.to_owned(),
            router,
            capacity: cidr::capacity(block),
            created: cloud::time::now(),
            default_for_az: false,
            map_public_ip_on_launch: false,
        })
    }
}

/// Creates a subnet in a VPC: inside its block, overlapping no sibling.
pub fn create(
    store: &mut Store,
    config: &NetConfig,
    vpc: &str,
    block: Ipv4Cidr,
    zone: Option<&str>,
    tags: &Tags,
) -> Result<Subnet, cloud::Error> {
    if let Some(zone) = zone {
        cloud::names::check_zone(zone)?;
    }
    realise::change(store, config, |tx| {
        let vpc: Vpc = lookup::find_tagged(tx, vpc, |_| true)?;
        let siblings: Vec<Subnet> = super::in_vpc(tx, &vpc.id)?;
        cidr::check_subnet(block, vpc.cidr, siblings.iter().map(|s| &s.cidr))
            .map_err(Error::from)?;
        let subnet = Subnet::new(&vpc.id, block, zone.unwrap_or(DEFAULT_ZONE))?;
        tx.insert(&subnet, tags)?;
        // It follows the main table, which may make it public.
        realise::check(tx, &vpc.id)?;
        Ok((subnet, vec![vpc.id]))
    })
}

/// Sets whether launches into subnet `reference` give their instances a
/// public address (EC2's ModifySubnetAttribute MapPublicIpOnLaunch).
/// Only later launches follow it; Linux holds nothing of it.
pub fn set_map_public_ip_on_launch(
    store: &mut Store,
    reference: &str,
    on: bool,
) -> Result<Subnet, cloud::Error> {
    store.write(|tx| {
        let mut subnet: Subnet = lookup::find_tagged(tx, reference, |_| true)?;
        subnet.map_public_ip_on_launch = on;
        tx.update(&subnet)?;
        Ok(subnet)
    })
}

/// Deletes a subnet no instance is in.
pub fn delete(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
) -> Result<Subnet, cloud::Error> {
    realise::change(store, config, |tx| {
        let subnet: Subnet = lookup::find_tagged(tx, reference, |_| true)?;
        let instances: Vec<String> = port::instances_in(tx, &subnet.vpc_id)?
            .into_iter()
            .filter(|(_, placement)| placement.subnet_id == subnet.id)
            .map(|(id, _)| id)
            .collect();
        if !instances.is_empty() {
            return Err(Error::InUse {
                noun: "subnet",
                id: subnet.id.clone(),
                what: format!("instances {}", instances.join(", ")),
                fix: "terminate them first".to_owned(),
            }
            .into());
        }
        let balancers = crate::cloud::elb::users_of(tx, &subnet.vpc_id, &subnet.id)?;
        if !balancers.is_empty() {
            return Err(Error::InUse {
                noun: "subnet",
                id: subnet.id.clone(),
                what: format!("load balancers {}", balancers.join(", ")),
                fix: "`gureum elb delete` them first".to_owned(),
            }
            .into());
        }
        let groups = crate::cloud::autoscaling::users_of(tx, &subnet.id)?;
        if !groups.is_empty() {
            return Err(Error::InUse {
                noun: "subnet",
                id: subnet.id.clone(),
                what: format!("Auto Scaling groups {}", groups.join(", ")),
                fix: "`gureum asg update --subnet` or `gureum asg delete` them first".to_owned(),
            }
            .into());
        }
        route_table::unassociate(tx, &subnet.vpc_id, &subnet.id, None)?;
        tx.delete(&subnet.id)?;
        let vpc = subnet.vpc_id.clone();
        Ok((subnet, vec![vpc]))
    })
}

/// The ports of the instances in VPC `vpc`, as the realisation takes them.
pub fn ports_in(tx: &Tx<'_>, vpc: &str) -> Result<Vec<Port>, cloud::Error> {
    Ok(port::instances_in(tx, vpc)?
        .into_iter()
        .map(|(id, placement)| placement.port(&id))
        .collect())
}

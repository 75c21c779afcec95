//! Internet gateways: attached to one VPC, a veth pair from its namespace
//! to the public one, whose address (from the public pool) is what the
//! VPC's outbound traffic is translated to.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cloud::ids::{self, Kind};
use crate::cloud::instance::Instance;
use crate::cloud::store::{Store, Tx};
use crate::cloud::tags::Tags;
use crate::cloud::{self, lookup};

use super::elastic_ip::ElasticIp;
use super::network::Vpc;
use super::public::NetConfig;
use super::route_table::RouteTable;
use super::{Error, InVpc, in_vpc, realise};

/// An internet gateway as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGateway {
    pub id: String,
    /// The VPC it is attached to.
    pub vpc_id: Option<String>,
    /// Its NAT address while attached.
    pub public_ip: Option<Ipv4Addr>,
    pub created: String,
}

vpc_record!(InternetGateway, Kind::InternetGateway);

impl InVpc for InternetGateway {
    fn vpc_id(&self) -> Option<&str> {
        self.vpc_id.as_deref()
    }
}

/// Creates a detached internet gateway.
pub fn create(store: &mut Store, tags: &Tags) -> Result<InternetGateway, cloud::Error> {
    let igw = InternetGateway {
        id: ids::new_id(Kind::InternetGateway)?,
        vpc_id: None,
        public_ip: None,
        created: cloud::time::now(),
    };
    store.write(|tx| tx.insert(&igw, tags))?;
    Ok(igw)
}

/// The public addresses in use: gateways', elastic IPs', those
/// instances were given, and load balancers'.
pub fn public_addresses(tx: &Tx<'_>) -> Result<BTreeSet<Ipv4Addr>, cloud::Error> {
    let gateways = tx.list::<InternetGateway>()?.into_iter();
    let eips = tx.list::<ElasticIp>()?.into_iter();
    let instances = tx.list::<Instance>()?.into_iter();
    Ok(gateways
        .filter_map(|g| g.public_ip)
        .chain(eips.map(|e| e.public_ip))
        .chain(instances.filter_map(|i| i.placement?.public_ip))
        .chain(crate::cloud::elb::public_addresses(tx)?)
        .collect())
}

/// Attaches a gateway to a VPC that has none.
pub fn attach(
    store: &mut Store,
    config: &NetConfig,
    igw: &str,
    vpc: &str,
) -> Result<InternetGateway, cloud::Error> {
    realise::change(store, config, |tx| {
        let mut igw: InternetGateway = lookup::find_tagged(tx, igw, |_| true)?;
        let vpc: Vpc = lookup::find_tagged(tx, vpc, |_| true)?;
        if let Some(attached) = &igw.vpc_id {
            return Err(Error::GatewayAlreadyAttached {
                igw: igw.id,
                vpc: attached.clone(),
            }
            .into());
        }
        if let Some(other) = in_vpc::<InternetGateway>(tx, &vpc.id)?.first() {
            return Err(Error::VpcHasGateway {
                vpc: vpc.id,
                igw: other.id.clone(),
            }
            .into());
        }
        let address = config.allocate(&public_addresses(tx)?)?;
        igw.vpc_id = Some(vpc.id.clone());
        igw.public_ip = Some(address);
        tx.update(&igw)?;
        Ok((igw, vec![vpc.id]))
    })
}

/// Detaches a gateway from its VPC; no route may go through it.
pub fn detach(
    store: &mut Store,
    config: &NetConfig,
    igw: &str,
) -> Result<InternetGateway, cloud::Error> {
    realise::change(store, config, |tx| {
        let mut igw: InternetGateway = lookup::find_tagged(tx, igw, |_| true)?;
        let (Some(vpc), Some(_)) = (igw.vpc_id.clone(), igw.public_ip) else {
            return Err(Error::GatewayDetached { igw: igw.id }.into());
        };
        let routing: Vec<String> = in_vpc::<RouteTable>(tx, &vpc)?
            .into_iter()
            .filter(|t| t.routes.iter().any(|r| r.target == igw.id))
            .map(|t| t.id)
            .collect();
        if !routing.is_empty() {
            return Err(Error::InUse {
                noun: "internet gateway",
                id: igw.id.clone(),
                what: format!("routes to it in route tables {}", routing.join(", ")),
                fix: "`gureum route-table delete-route TABLE --destination 0.0.0.0/0` first"
                    .to_owned(),
            }
            .into());
        }
        // As EC2's "has some mapped public address(es)".
        let mapped: Vec<String> = super::port::instances_in(tx, &vpc)?
            .into_iter()
            .filter_map(|(id, placement)| Some(format!("{} ({id})", placement.public_address()?)))
            .collect();
        if !mapped.is_empty() {
            return Err(Error::InUse {
                noun: "internet gateway",
                id: igw.id.clone(),
                what: format!("public addresses {} mapped through it", mapped.join(", ")),
                fix: "`gureum eip disassociate` elastic IPs, and stop or terminate instances \
                      that were given an address, first"
                    .to_owned(),
            }
            .into());
        }
        let facing: Vec<String> =
            in_vpc::<crate::cloud::elb::load_balancer::LoadBalancer>(tx, &vpc)?
                .into_iter()
                .filter(|b| b.public_ip.is_some())
                .map(|b| b.id)
                .collect();
        if !facing.is_empty() {
            return Err(Error::InUse {
                noun: "internet gateway",
                id: igw.id.clone(),
                what: format!("internet-facing load balancers {}", facing.join(", ")),
                fix: "`gureum elb delete` them first".to_owned(),
            }
            .into());
        }
        igw.vpc_id = None;
        igw.public_ip = None;
        tx.update(&igw)?;
        Ok((igw, vec![vpc]))
    })
}

/// Deletes a detached gateway.
pub fn delete(store: &mut Store, reference: &str) -> Result<InternetGateway, cloud::Error> {
    store.write(|tx| {
        let igw: InternetGateway = lookup::find_tagged(tx, reference, |_| true)?;
        if let Some(vpc) = &igw.vpc_id {
            return Err(Error::InUse {
                noun: "internet gateway",
                id: igw.id.clone(),
                what: format!("VPC {vpc} attached"),
                fix: format!("`gureum igw detach {}` first", igw.id),
            }
            .into());
        }
        tx.delete(&igw.id)?;
        Ok(igw)
    })
}

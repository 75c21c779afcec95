//! What the instance metadata service (IMDS, 169.254.169.254) knows of
//! one instance, read from the store, and the tree it serves
//! (`tree`). The daemon serves it (`daemon::metadata`); the instance is
//! the one whose port has the connection's source address.

pub mod tree;

use std::net::Ipv4Addr;

use super::instance::Instance;
use super::key_pair::KeyPair;
use super::store::Tx;
use super::tags::Tags;
use super::vpc::network::Vpc;
use super::vpc::port::{self, Placement};
use super::vpc::security_group::SecurityGroup;
use super::vpc::subnet::Subnet;
use super::{Error, iam};
use crate::net::cidr::Ipv4Cidr;
use crate::net::dnsmasq::{self, DOMAIN};

/// Where every instance finds its metadata service, as on EC2.
pub use crate::net::vpc::METADATA_ADDRESS as ADDRESS;

/// An instance's private DNS name, as the VPC resolver answers it:
/// `ip-10-0-1-10.ec2.internal`.
pub fn private_name(address: Ipv4Addr) -> String {
    format!("{}.{DOMAIN}", dnsmasq::private_name(address))
}

/// Everything the tree of one instance is made from.
#[derive(Debug, Clone)]
pub struct Facts {
    pub instance: Instance,
    pub tags: Tags,
    pub placement: Placement,
    /// Its key pair's name and OpenSSH public key, if it has one (and the
    /// pair still exists).
    pub key: Option<(String, String)>,
    pub subnet_cidr: Ipv4Cidr,
    pub vpc_cidr: Ipv4Cidr,
    /// Its security groups' names, in the order of their IDs.
    pub group_names: Vec<String>,
    pub account_id: String,
    pub region: String,
}

/// The facts of the instance whose port in VPC `vpc` has `address`, if
/// there is one.
pub fn facts(tx: &Tx<'_>, vpc: &str, address: Ipv4Addr) -> Result<Option<Facts>, Error> {
    let Some((id, placement)) = port::instances_in(tx, vpc)?
        .into_iter()
        .find(|(_, p)| p.private_ip == address)
    else {
        return Ok(None);
    };
    let Some(instance) = tx.get::<Instance>(&id)? else {
        return Ok(None);
    };
    let key = match &instance.key_name {
        Some(name) => tx.by_name::<KeyPair>(name)?.map(|k| (k.name, k.public_key)),
        None => None,
    };
    let subnet_cidr = match tx.get::<Subnet>(&placement.subnet_id)? {
        Some(subnet) => subnet.cidr,
        None => Ipv4Cidr::host(placement.private_ip),
    };
    let vpc_cidr = match tx.get::<Vpc>(vpc)? {
        Some(vpc) => vpc.cidr,
        None => subnet_cidr,
    };
    let mut group_names = Vec::new();
    for group in &placement.security_groups {
        if let Some(g) = tx.get::<SecurityGroup>(group)? {
            group_names.push(g.group_name);
        }
    }
    Ok(Some(Facts {
        tags: tx.tags(&id)?,
        key,
        subnet_cidr,
        vpc_cidr,
        group_names,
        account_id: iam::tables::account_id(tx)?,
        region: iam::arn::REGION.to_owned(),
        instance,
        placement,
    }))
}

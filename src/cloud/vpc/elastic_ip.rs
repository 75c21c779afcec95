//! Elastic IPs: public addresses from the pool, held until released
//! (they keep costing while held, even unassociated), mapped 1:1 to an
//! instance's private address at its VPC's internet gateway.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cloud::ids::{self, Kind};
use crate::cloud::store::Store;
use crate::cloud::tags::Tags;
use crate::cloud::{self, lookup};

use super::gateway::public_addresses;
use super::public::NetConfig;
use super::{Error, realise};

/// An elastic IP as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElasticIp {
    pub id: String,
    pub public_ip: Ipv4Addr,
    pub instance_id: Option<String>,
    pub created: String,
}

vpc_record!(ElasticIp, Kind::ElasticIp);

/// Finds an elastic IP by ID, Name tag or its address.
fn find(tx: &cloud::store::Tx<'_>, reference: &str) -> Result<ElasticIp, cloud::Error> {
    if let Ok(address) = reference.parse::<Ipv4Addr>() {
        if let Some(eip) = tx
            .list::<ElasticIp>()?
            .into_iter()
            .find(|e| e.public_ip == address)
        {
            return Ok(eip);
        }
    }
    lookup::find_tagged(tx, reference, |_| true)
}

/// Allocates the next free address of the pool.
pub fn allocate(
    store: &mut Store,
    config: &NetConfig,
    tags: &Tags,
) -> Result<ElasticIp, cloud::Error> {
    let id = ids::new_id(Kind::ElasticIp)?;
    store.write(|tx| {
        let eip = ElasticIp {
            id,
            public_ip: config.allocate(&public_addresses(tx)?)?,
            instance_id: None,
            created: cloud::time::now(),
        };
        tx.insert(&eip, tags)?;
        Ok(eip)
    })
}

/// Releases an unassociated elastic IP back to the pool.
pub fn release(store: &mut Store, reference: &str) -> Result<ElasticIp, cloud::Error> {
    store.write(|tx| {
        let eip = find(tx, reference)?;
        if let Some(instance) = eip.instance_id {
            return Err(Error::Associated {
                id: eip.id,
                instance,
            }
            .into());
        }
        tx.delete(&eip.id)?;
        Ok(eip)
    })
}

/// Associates an elastic IP with an instance in a VPC with a gateway.
pub fn associate(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
    instance: &str,
) -> Result<ElasticIp, cloud::Error> {
    realise::change(store, config, |tx| {
        let mut eip = find(tx, reference)?;
        let mut instance = lookup::find_instance(tx, instance)?;
        if let Some(other) = eip.instance_id {
            return Err(Error::Associated {
                id: eip.id,
                instance: other,
            }
            .into());
        }
        let Some(placement) = instance.placement.as_mut() else {
            return Err(Error::NotInSubnet {
                instance: instance.id,
                what: "an elastic IP maps to an instance's private address",
            }
            .into());
        };
        if let Some(other) = placement.elastic_ip {
            return Err(Error::InUse {
                noun: "instance",
                id: instance.id.clone(),
                what: format!("elastic IP {other}"),
                fix: "disassociate it first".into(),
            }
            .into());
        }
        placement.elastic_ip = Some(eip.public_ip);
        // As EC2's: the address it was given goes back to the pool.
        placement.public_ip = None;
        let vpc = placement.vpc_id.clone();
        eip.instance_id = Some(instance.id.clone());
        tx.update(&eip)?;
        tx.update(&instance)?;
        realise::check(tx, &vpc)?;
        Ok((eip, vec![vpc]))
    })
}

/// Takes an elastic IP off its instance; it stays allocated (and held).
pub fn disassociate(
    store: &mut Store,
    config: &NetConfig,
    reference: &str,
) -> Result<ElasticIp, cloud::Error> {
    realise::change(store, config, |tx| {
        let mut eip = find(tx, reference)?;
        let Some(instance) = eip.instance_id.take() else {
            return Err(Error::NotAssociatedEip { id: eip.id }.into());
        };
        let mut record = tx.get::<cloud::instance::Instance>(&instance)?;
        tx.update(&eip)?;
        let mut touched = Vec::new();
        if let Some(record) = record.as_mut() {
            let holds = record.state.holds_public_ip();
            if let Some(placement) = record.placement.as_mut() {
                placement.elastic_ip = None;
                // As EC2's: one that had an address from the pool gets a
                // new one (a stopped one at its start).
                if holds {
                    placement.give_public_ip(tx, config)?;
                }
                touched.push(placement.vpc_id.clone());
            }
            tx.update(record)?;
        }
        Ok((eip, touched))
    })
}

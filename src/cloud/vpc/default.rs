//! The default VPC, as every EC2 account has one: 172.31.0.0/16 with a
//! default subnet (172.31.0.0/20) in this host's zone, an internet
//! gateway attached and the main route table routing 0.0.0.0/0 to it.
//! A launch that names no network makes it on first use; once made, the
//! store keeps that fact, so that a deleted default VPC stays deleted
//! (launches then say how to make one, as EC2 does) until `gureum vpc
//! create-default` (EC2's CreateDefaultVpc) makes a new one.

use crate::cloud::store::{Store, Tx};
use crate::cloud::tags::Tags;
use crate::cloud::{self, ids};
use crate::net::cidr;

use super::gateway::{self, InternetGateway};
use super::network::{NewVpc, Vpc};
use super::public::NetConfig;
use super::route_table::Route;
use super::subnet::{DEFAULT_ZONE, Subnet};
use super::{Error, in_vpc, realise};

/// The store's fact naming the default VPC made last: set once one is
/// made, kept when it is deleted.
const MADE: &str = "default_vpc";

/// The default VPC, if there is one.
fn find(tx: &Tx<'_>) -> Result<Option<Vpc>, cloud::Error> {
    Ok(tx.list::<Vpc>()?.into_iter().find(|vpc| vpc.is_default))
}

/// Stores a new default VPC with its subnet, gateway and route, and the
/// fact that it was made; returns it and its subnet. Linux follows when
/// the change is converged.
fn insert(tx: &Tx<'_>, config: &NetConfig) -> Result<(Vpc, Subnet), cloud::Error> {
    let mut new = NewVpc::new(config, cidr::DEFAULT_VPC, true)?;
    let mut subnet = Subnet::new(&new.vpc.id, cidr::DEFAULT_SUBNET, DEFAULT_ZONE)?;
    subnet.default_for_az = true;
    let igw = InternetGateway {
        id: ids::new_id(ids::Kind::InternetGateway)?,
        vpc_id: Some(new.vpc.id.clone()),
        public_ip: Some(config.allocate(&gateway::public_addresses(tx)?)?),
        created: cloud::time::now(),
    };
    new.main_route_table.routes.push(Route {
        destination: cidr::ANY,
        target: igw.id.clone(),
    });
    // As AWS shows them: none has a Name tag.
    new.insert(tx, &Tags::new())?;
    tx.insert(&subnet, &Tags::new())?;
    tx.insert(&igw, &Tags::new())?;
    tx.set_fact(MADE, &new.vpc.id)?;
    Ok((new.vpc, subnet))
}

/// Makes a default VPC when there is none (`gureum vpc create-default`),
/// also after the last one was deleted.
pub fn create(store: &mut Store, config: &NetConfig) -> Result<Vpc, cloud::Error> {
    realise::change(store, config, |tx| {
        if let Some(vpc) = find(tx)? {
            return Err(Error::DefaultVpcExists { vpc: vpc.id }.into());
        }
        let (vpc, _) = insert(tx, config)?;
        let id = vpc.id.clone();
        Ok((vpc, vec![id]))
    })
}

/// The default subnet a launch that names none goes to: the default
/// VPC's, made with it on first use. A default VPC that was deleted is not
/// made again.
pub fn subnet_for_launch(store: &mut Store, config: &NetConfig) -> Result<String, cloud::Error> {
    // Every launch after the first finds it in a read, with no change to
    // converge.
    if let Some(subnet) = store.read(default_subnet)? {
        return Ok(subnet);
    }
    realise::change(store, config, |tx| {
        // Another launch may have made it since the read: this write
        // transaction sees every one before it.
        if let Some(subnet) = default_subnet(tx)? {
            return Ok((subnet, Vec::new()));
        }
        let (vpc, subnet) = insert(tx, config)?;
        Ok((subnet.id, vec![vpc.id]))
    })
}

/// The default subnet of the default VPC; none if neither was made yet;
/// an error saying what to do if the default VPC was deleted or has no
/// default subnet left.
fn default_subnet(tx: &Tx<'_>) -> Result<Option<String>, cloud::Error> {
    let Some(vpc) = find(tx)? else {
        return match tx.fact(MADE)? {
            Some(vpc) => Err(Error::NoDefaultVpc { deleted: vpc }.into()),
            None => Ok(None),
        };
    };
    in_vpc::<Subnet>(tx, &vpc.id)?
        .into_iter()
        .find(|s| s.default_for_az)
        .map(|s| Some(s.id))
        .ok_or_else(|| Error::NoDefaultSubnet { vpc: vpc.id }.into())
}

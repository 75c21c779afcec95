//! The default VPC, as every EC2 account has one: 172.31.0.0/16 with a
//! default subnet (172.31.0.0/20) in this host's zone that gives its
//! instances public addresses (MapPublicIpOnLaunch), an internet gateway
//! attached and the main route table routing 0.0.0.0/0 to it.
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
    subnet.map_public_ip_on_launch = true;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::net::Ipv4Addr;

    use super::*;
    use crate::cloud::instance::State;
    use crate::cloud::instance::tests::instance;
    use crate::cloud::vpc::port::{self, PlacementRequest};
    use crate::host::mac::MacAddr;

    /// Places instance `id` in the default subnet as a launch does, and
    /// stores it pending.
    fn launched(
        tx: &Tx<'_>,
        config: &NetConfig,
        subnet: &str,
        id: &str,
        request: &PlacementRequest,
    ) -> crate::cloud::instance::Instance {
        let mut i = instance(State::Pending);
        i.id = id.to_owned();
        i.placement = Some(
            port::place(tx, id, MacAddr([2, 0, 0, 0, 0, 1]), subnet, request, config)
                .unwrap()
                .placement,
        );
        tx.insert(&i, &Tags::new()).unwrap();
        i
    }

    /// Runs `check` in a write of a new store, with the default pool.
    fn in_a_store(check: impl FnOnce(&Tx<'_>, &NetConfig) -> Result<(), cloud::Error>) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("gureum.db")).unwrap();
        let config = NetConfig::new(None, None, None).unwrap();
        store.write(|tx| check(tx, &config)).unwrap();
    }

    #[test]
    fn the_default_subnet_gives_each_instance_its_own_public_address_until_it_stops() {
        in_a_store(|tx, config| {
            let (vpc, subnet) = insert(tx, config)?;
            assert!(subnet.map_public_ip_on_launch);
            // The gateway took .2; launches take the next free ones.
            let a = launched(tx, config, &subnet.id, "i-a", &PlacementRequest::default());
            let b = launched(tx, config, &subnet.id, "i-b", &PlacementRequest::default());
            let none = PlacementRequest {
                associate_public_ip: Some(false),
                ..PlacementRequest::default()
            };
            let c = launched(tx, config, &subnet.id, "i-c", &none);
            let public = |i: &crate::cloud::instance::Instance| {
                i.placement.as_ref().and_then(|p| p.public_address())
            };
            assert_eq!(public(&a), Some(Ipv4Addr::new(203, 0, 113, 3)));
            assert_eq!(public(&b), Some(Ipv4Addr::new(203, 0, 113, 4)));
            assert_eq!(public(&c), None);
            // Mapped 1:1 at the gateway as elastic IPs are.
            let spec = super::realise::spec(tx, &vpc)?;
            assert_eq!(
                spec.elastic,
                [
                    (Ipv4Addr::new(203, 0, 113, 3), "i-a".to_owned()),
                    (Ipv4Addr::new(203, 0, 113, 4), "i-b".to_owned()),
                ]
            );
            spec.check().unwrap();
            // Stopped: its address goes back to the pool in the same
            // change, and the next one given is that one.
            let mut a = a;
            a.transition(State::Stopping, None).unwrap();
            assert_eq!(public(&a), Some(Ipv4Addr::new(203, 0, 113, 3)));
            a.transition(State::Stopped, None).unwrap();
            assert_eq!(public(&a), None);
            tx.update(&a)?;
            assert_eq!(super::realise::spec(tx, &vpc)?.elastic.len(), 1);
            let d = launched(tx, config, &subnet.id, "i-d", &PlacementRequest::default());
            assert_eq!(public(&d), Some(Ipv4Addr::new(203, 0, 113, 3)));
            // Started again: a new one, never one in use.
            a.transition(State::Pending, None).unwrap();
            let placement = a.placement.as_mut().unwrap();
            assert!(placement.give_public_ip(tx, config)?);
            assert_eq!(placement.public_ip, Some(Ipv4Addr::new(203, 0, 113, 5)));
            // Given already: nothing more.
            assert!(!placement.give_public_ip(tx, config)?);
            Ok(())
        });
    }

    #[test]
    fn a_created_subnet_gives_none_unless_asked_and_asking_needs_a_gateway() {
        in_a_store(|tx, config| {
            let new = NewVpc::new(config, cidr::DEFAULT_VPC, false)?;
            let subnet = Subnet::new(&new.vpc.id, cidr::DEFAULT_SUBNET, DEFAULT_ZONE)?;
            assert!(!subnet.map_public_ip_on_launch);
            new.insert(tx, &Tags::new())?;
            tx.insert(&subnet, &Tags::new())?;
            let plain = launched(tx, config, &subnet.id, "i-a", &PlacementRequest::default());
            assert_eq!(plain.placement.unwrap().public_ip, None);
            let asked = PlacementRequest {
                associate_public_ip: Some(true),
                ..PlacementRequest::default()
            };
            let refused = port::place(
                tx,
                "i-b",
                MacAddr([2, 0, 0, 0, 0, 2]),
                &subnet.id,
                &asked,
                config,
            );
            assert!(
                matches!(
                    refused,
                    Err(cloud::Error::Vpc(Error::NoGatewayForPublicIp { .. }))
                ),
                "{refused:?}"
            );
            Ok(())
        });
    }
}
